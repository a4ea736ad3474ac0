package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/queue"
)

// adminClient calls a running daemon's admin API.
type adminClient struct {
	base  string
	token string
	http  *http.Client
}

type adminFlags struct {
	config *string
	admin  *string
	token  *string
}

func addAdminFlags(fs *flag.FlagSet) adminFlags {
	return adminFlags{
		config: configFlag(fs),
		admin:  fs.String("admin", "", "admin API base URL (default: from server.admin_listen in the config)"),
		token:  fs.String("token", "", "admin token (default: server.admin_token from the config, or $RELAYD_ADMIN_TOKEN)"),
	}
}

func (f adminFlags) client(lookupEnv func(string) (string, bool)) (*adminClient, error) {
	c := &adminClient{base: trimSlash(*f.admin), token: *f.token, http: &http.Client{Timeout: 30 * time.Second}}
	if c.token == "" {
		c.token, _ = lookupEnv("RELAYD_ADMIN_TOKEN")
	}
	if c.base == "" || c.token == "" {
		// Only the admin address and token are needed here: a variable the
		// daemon needs (a webhook secret) may be unset in this shell.
		cfg, err := config.LoadWith(*f.config, config.Options{Dev: true, Lookup: lookupEnv, Unset: "unset"})
		if err != nil {
			if c.base == "" {
				return nil, fmt.Errorf("%w (or pass --admin URL)", err)
			}
		} else {
			if c.base == "" {
				c.base = listenURL(cfg.Server.AdminListen)
			}
			if c.token == "" {
				c.token = string(cfg.Server.AdminToken)
			}
		}
	}
	return c, nil
}

// newRequest builds a request to the admin API that carries the admin
// token, with a JSON body when in is non-nil.
func (c *adminClient) newRequest(ctx context.Context, method, path string, in any) (*http.Request, error) {
	var reqBody io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		reqBody = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, reqBody)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// do sends a request and decodes a JSON answer into out (when non-nil).
func (c *adminClient) do(ctx context.Context, method, path string, out any) error {
	return c.send(ctx, method, path, nil, out)
}

// send is do with a JSON request body (when in is non-nil).
func (c *adminClient) send(ctx context.Context, method, path string, in, out any) error {
	req, err := c.newRequest(ctx, method, path, in)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("admin API at %s (is relayd serve running?): %w", c.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
			return fmt.Errorf("%s %s: %s: %s", method, path, e.Error.Code, e.Error.Message)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

// adminCommand holds what every dlq and chats call shares.
type adminCommand struct {
	fs     *flag.FlagSet
	flags  adminFlags
	route  *string
	asJSON *bool
	output *string
}

func newAdminCommand(name string, stderr io.Writer) *adminCommand {
	fs := newFlagSet(name, stderr)
	return &adminCommand{
		fs:     fs,
		flags:  addAdminFlags(fs),
		route:  fs.String("route", "", "only this route"),
		asJSON: fs.Bool("json", false, "print JSON (same as -o json)"),
		output: outputFlag(fs),
	}
}

// parse parses args and returns the client and the positional arguments,
// of which there is at least one (the verb).
func (a *adminCommand) parse(args []string, verbs string) (*adminClient, []string, error) {
	pos, err := parseFlags(a.fs, args)
	if err != nil {
		return nil, nil, err
	}
	if len(pos) == 0 {
		return nil, nil, usageErr("want %s", verbs)
	}
	if err := checkOutput(*a.output); err != nil {
		return nil, nil, err
	}
	if *a.output == "json" {
		*a.asJSON = true
	}
	c, err := a.flags.client(lookupEnv)
	return c, pos, err
}

// outputFlag is the -o flag every listing command takes.
func outputFlag(fs *flag.FlagSet) *string {
	p := new(string)
	fs.StringVar(p, "o", "table", "output format: table or json")
	fs.StringVar(p, "output", "table", "output format: table or json")
	return p
}

func checkOutput(o string) error {
	if o != "table" && o != "json" {
		return usageErr("-o %q: use table or json", o)
	}
	return nil
}

// routeQuery is the ?route= filter, or "" for every route.
func (a *adminCommand) routeQuery() string {
	if *a.route == "" {
		return ""
	}
	return "?route=" + url.QueryEscape(*a.route)
}

func cmdDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	a := newAdminCommand("dlq", stderr)
	all := a.fs.Bool("all", false, "replay every dead letter (with --route: every one of that route)")
	c, pos, err := a.parse(args, "dlq list|show|replay|drop")
	if err != nil {
		return err
	}
	switch verb := pos[0]; verb {
	case "list", "ls":
		var out struct {
			DeadLetters []queue.DeadLetter `json:"dead_letters"`
		}
		if err := c.do(ctx, http.MethodGet, "/admin/dlq"+a.routeQuery(), &out); err != nil {
			return err
		}
		if *a.asJSON {
			return printJSON(stdout, out.DeadLetters)
		}
		printDeadLetters(stdout, out.DeadLetters, time.Now())
		return nil
	case "show":
		if len(pos) != 2 {
			return usageErr("want dlq show ID")
		}
		var d json.RawMessage
		if err := c.do(ctx, http.MethodGet, "/admin/dlq/"+url.PathEscape(pos[1]), &d); err != nil {
			return err
		}
		return printJSON(stdout, d)
	case "replay":
		var out struct {
			Replayed int `json:"replayed"`
		}
		switch {
		case *all && len(pos) == 1:
			err = c.do(ctx, http.MethodPost, "/admin/dlq/replay"+a.routeQuery(), &out)
		case !*all && len(pos) == 2:
			err = c.do(ctx, http.MethodPost, "/admin/dlq/"+url.PathEscape(pos[1])+"/replay", &out)
		default:
			return usageErr("want dlq replay ID, or dlq replay --all [--route R]")
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "replayed %d message(s)\n", out.Replayed)
		return nil
	case "drop", "rm":
		if len(pos) != 2 {
			return usageErr("want dlq drop ID")
		}
		var out struct {
			Dropped int `json:"dropped"`
		}
		if err := c.do(ctx, http.MethodDelete, "/admin/dlq/"+url.PathEscape(pos[1]), &out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "dropped %d message(s)\n", out.Dropped)
		return nil
	default:
		return usageErr("unknown dlq command %q: want list|show|replay|drop", verb)
	}
}

func printDeadLetters(w io.Writer, list []queue.DeadLetter, now time.Time) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no dead letters")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tDELIVERY\tROUTE\tCONVERSATION\tATTEMPTS\tSTATUS\tLAST ERROR\tAGE")
	for _, d := range list {
		status := "-"
		if d.Failure.Status != 0 {
			status = fmt.Sprint(d.Failure.Status)
		}
		lastErr := d.Failure.Reason
		if d.Failure.Code != "" {
			lastErr += " (" + d.Failure.Code + ")"
		}
		if d.Failure.Message != "" {
			lastErr += ": " + d.Failure.Message
		}
		kind := "event"
		if d.IsReply() {
			kind = queue.KindReply
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", d.ID, kind, d.Delivery, d.Route, orDash(d.ConversationKey),
			d.Attempts, status, shorten(lastErr, 60), now.Sub(d.DeadAt).Round(time.Second))
	}
	tw.Flush()
}

func cmdChats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	a := newAdminCommand("chats", stderr)
	c, pos, err := a.parse(args, "chats list|reset")
	if err != nil {
		return err
	}
	switch verb := pos[0]; verb {
	case "list", "ls":
		var out struct {
			Chats []queue.Chat `json:"chats"`
		}
		if err := c.do(ctx, http.MethodGet, "/admin/chats"+a.routeQuery(), &out); err != nil {
			return err
		}
		if *a.asJSON {
			return printJSON(stdout, out.Chats)
		}
		if len(out.Chats) == 0 {
			fmt.Fprintln(stdout, "no conversations")
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ROUTE\tCONVERSATION\tCHAT ID\tMESSAGES\tWAITING\tTURN LIMIT\tSTARTED\tUPDATED")
		for _, ch := range out.Chats {
			waiting, limit := "-", "-"
			if ch.Waiting != nil {
				waiting = strconv.Itoa(*ch.Waiting)
			}
			if ch.LimitedUntil != nil {
				limit = "held until " + ch.LimitedUntil.Local().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", ch.Route, orDash(ch.ConversationKey), orDash(ch.ChatID), ch.Messages,
				waiting, limit, timeOrDash(ch.StartedAt), timeOrDash(ch.UpdatedAt))
		}
		return tw.Flush()
	case "reset":
		if len(pos) < 2 || len(pos) > 3 {
			return usageErr("want chats reset ROUTE [KEY]")
		}
		p := "/admin/chats/" + url.PathEscape(pos[1])
		if len(pos) == 3 && pos[2] != "" {
			p += "/" + url.PathEscape(pos[2])
		}
		if err := c.do(ctx, http.MethodDelete, p, nil); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "conversation reset: the next message starts a new chat")
		return nil
	default:
		return usageErr("unknown chats command %q: want list|reset", verb)
	}
}

func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func shorten(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
