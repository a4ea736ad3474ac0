package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/daemon"
	"github.com/relayd/relayd/internal/verify"
)

// cmdSend signs a payload as one of the config's sources and posts it to
// the running daemon, to try a config end to end.
func cmdSend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("send", stderr)
	path := configFlag(fs)
	source := fs.String("source", "", "source name from the config (required)")
	eventName := fs.String("event", "", "event type (GitHub: the X-GitHub-Event value; default push)")
	action := fs.String("action", "", "sample variant, e.g. completed or opened (GitHub samples)")
	file := fs.String("file", "", "payload file, sent as is (default: a sample in the source's format)")
	target := fs.String("url", "", "relayd base URL (default: from server.listen)")
	delivery := fs.String("delivery", "", "delivery id (send the same one twice to see dedupe; default: a new one)")
	printOnly := fs.Bool("print", false, "print the signed request as a curl command instead of sending it")
	sns := fs.Bool("sns", false, "wrap an S3 sample in an SNS Notification (default when the source verifies sns)")
	var sets stringList
	fs.Var(&sets, "set", "set a JSON field of the event before signing, e.g. workflow_run.conclusion=failure (repeatable)")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	if *source == "" {
		return usageErr("--source is required")
	}
	cfg, err := config.LoadWith(*path, config.Options{Dev: true})
	if err != nil {
		return err
	}
	src, ok := cfg.SourceByName(*source)
	if !ok {
		var names []string
		for _, s := range cfg.Sources {
			names = append(names, s.Name)
		}
		return fmt.Errorf("no source %q in %s (have: %s)", *source, *path, strings.Join(names, ", "))
	}

	id := *delivery
	if id == "" {
		id = newUUID()
		if src.Unwrap == "s3" && !*sns && src.Verify.Type != "sns" {
			id = randomSequencer()
		}
	}
	now := time.Now()
	smp, err := buildSample(src, sendOptions{
		event: *eventName, action: *action, file: *file, delivery: id, sns: *sns, sets: sets,
	}, now)
	if err != nil {
		return err
	}
	hdr, err := verify.Sign(daemon.VerifySpec(src.Verify), smp.body, now, id)
	if err != nil {
		return fmt.Errorf("sign as %s: %w", src.Name, err)
	}
	hdr.Set("Content-Type", smp.contentType)
	for k, v := range smp.headers {
		hdr.Set(k, v)
	}
	hdr.Set("User-Agent", "relayd-send/"+version)
	setSenderHeaders(hdr, src, *eventName, id)

	base := *target
	if base == "" {
		base = listenURL(cfg.Server.Listen)
	}
	url := trimSlash(base) + src.Path
	if *printOnly {
		cmd, err := curlCommand(url, hdr, smp.body)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, cmd)
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(smp.body))
	if err != nil {
		return err
	}
	req.Header = hdr
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("post to %s (is relayd serve running?): %w", url, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	fmt.Fprintf(stdout, "POST %s → %s\n%s\n", url, resp.Status, bytes.TrimSpace(answer))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("relayd answered %s", resp.Status)
	}
	return nil
}

// wellKnownSenders is what each well-known sender sends beside its
// signature: its event header, with the event assumed when --event is not
// given, and its delivery header, if it has one.
var wellKnownSenders = map[string]struct{ event, defaultEvent, delivery string }{
	"github":    {"X-GitHub-Event", "push", "X-GitHub-Delivery"},
	"gitlab":    {"X-Gitlab-Event", "Pipeline Hook", "X-Gitlab-Event-UUID"},
	"buildkite": {"X-Buildkite-Event", "build.finished", ""},
	"circleci":  {"Circleci-Event-Type", "workflow-completed", ""},
	"bitbucket": {"X-Event-Key", "repo:push", "X-Request-UUID"},
	"gitea":     {"X-Gitea-Event", "push", "X-Gitea-Delivery"},
	"forgejo":   {"X-Forgejo-Event", "push", "X-Forgejo-Delivery"},
}

// setSenderHeaders adds the event and delivery headers the source's
// sender would send.
func setSenderHeaders(h http.Header, src *config.Source, event, delivery string) {
	if s, ok := wellKnownSenders[src.Verify.Type]; ok {
		h.Set(s.event, firstNonEmpty(event, s.defaultEvent))
		if s.delivery != "" {
			h.Set(s.delivery, delivery)
		}
	}
	if src.EventHeader != "" && event != "" {
		h.Set(src.EventHeader, event)
	}
	if src.DeliveryHeader != "" {
		h.Set(src.DeliveryHeader, delivery)
	}
}

// applySets sets dotted paths in a JSON object: a value that parses as
// JSON is used as such, anything else as a string.
func applySets(body []byte, sets []string) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("--set needs a JSON object payload: %w", err)
	}
	for _, s := range sets {
		path, raw, ok := strings.Cut(s, "=")
		if !ok || path == "" {
			return nil, usageErr("--set %q: want path=value", s)
		}
		var val any
		if err := json.Unmarshal([]byte(raw), &val); err != nil {
			val = raw
		}
		keys := strings.Split(path, ".")
		m := doc
		for _, k := range keys[:len(keys)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		m[keys[len(keys)-1]] = val
	}
	return json.Marshal(doc)
}

// listenURL turns a listen address into a URL a local client can reach.
func listenURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
