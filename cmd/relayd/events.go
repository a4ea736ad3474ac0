package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/relayd/relayd/internal/history"
)

func cmdEvents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	a := newAdminCommand("events", stderr)
	outcome := a.fs.String("outcome", "", "only events with a route of this outcome (filtered, queued, delivered, dead, …; or duplicate, rejected)")
	source := a.fs.String("source", "", "only events of this source")
	limit := a.fs.Int("limit", history.DefaultLimit, "events to list")
	before := a.fs.String("before", "", "list the events before this cursor (a listing's next)")
	c, pos, err := a.parse(args, "events list|show|replay")
	if err != nil {
		return err
	}
	switch verb := pos[0]; verb {
	case "list", "ls":
		q := url.Values{}
		for k, v := range map[string]string{"route": *a.route, "outcome": *outcome, "source": *source, "before": *before} {
			if v != "" {
				q.Set(k, v)
			}
		}
		page, err := fillPage(*limit, *before, func(before string, n int) (history.Page, error) {
			q.Set("limit", fmt.Sprint(n))
			q.Del("before")
			if before != "" {
				q.Set("before", before)
			}
			var page history.Page
			err := c.do(ctx, http.MethodGet, "/admin/events?"+q.Encode(), &page)
			return page, err
		})
		if err != nil {
			return err
		}
		if *a.asJSON {
			return printJSON(stdout, page)
		}
		printEvents(stdout, page.Events, time.Now())
		if page.Next != "" {
			fmt.Fprintf(stdout, "more: --before %s\n", page.Next)
		}
		return nil
	case "show":
		if len(pos) != 2 {
			return usageErr("want events show ID")
		}
		var rec history.Record
		if err := c.do(ctx, http.MethodGet, "/admin/events/"+url.PathEscape(pos[1]), &rec); err != nil {
			return err
		}
		return printJSON(stdout, rec)
	case "replay":
		if len(pos) != 2 {
			return usageErr("want events replay ID")
		}
		var out struct {
			Delivery string   `json:"delivery"`
			Routes   []string `json:"routes"`
		}
		if err := c.do(ctx, http.MethodPost, "/admin/events/"+url.PathEscape(pos[1])+"/replay", &out); err != nil {
			return err
		}
		if *a.asJSON {
			return printJSON(stdout, out)
		}
		fmt.Fprintf(stdout, "replayed as %s (routes: %s)\n", out.Delivery, orDash(strings.Join(out.Routes, ", ")))
		return nil
	default:
		return usageErr("unknown events command %q: want list|show|replay", verb)
	}
}

// fillPage asks for pages until it holds limit events or the history's
// end: a filtered listing may come back short with a next, when the
// storage read its window of records without filling the page.
func fillPage(limit int, before string, get func(before string, n int) (history.Page, error)) (history.Page, error) {
	var out history.Page
	for {
		page, err := get(before, limit-len(out.Events))
		if err != nil {
			return out, err
		}
		out.Events = append(out.Events, page.Events...)
		out.Next = page.Next
		if page.Next == "" || len(out.Events) >= limit {
			if out.Events == nil {
				out.Events = []history.Record{}
			}
			return out, nil
		}
		before = page.Next
	}
}

func printEvents(w io.Writer, list []history.Record, now time.Time) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no events")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDELIVERY\tSOURCE\tEVENT\tSTATUS\tROUTES\tAGE")
	for _, r := range list {
		var routes []string
		for _, ro := range r.Routes {
			routes = append(routes, ro.Route+"="+ro.Outcome)
		}
		what := strings.Join(routes, " ")
		switch r.Kind {
		case history.Duplicate:
			what = "duplicate of " + orDash(r.DuplicateOf)
		case history.Rejected:
			what = "rejected: " + r.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, shorten(orDash(r.Delivery), 40), r.Source, orDash(r.Event),
			r.Status, shorten(orDash(what), 60), now.Sub(r.ReceivedAt).Round(time.Second))
	}
	tw.Flush()
}

func cmdDryRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	a := newAdminCommand("dry-run", stderr)
	templateFile := a.fs.String("template-file", "", "render with this template instead of the route's")
	filter := a.fs.String("filter", "", "filter with this expression instead of the route's")
	last := a.fs.Int("last", 0, "the last N events of the route's source")
	var events []string
	a.fs.Func("event", "an event's delivery or record id (repeatable)", func(v string) error {
		events = append(events, v)
		return nil
	})
	// The verb-less command: parse as "dry-run run …" would.
	c, _, err := a.parse(append([]string{"run"}, args...), "dry-run --route R")
	if err != nil {
		return err
	}
	if *a.route == "" {
		return usageErr("want dry-run --route R")
	}
	if (*last > 0) == (len(events) > 0) {
		return usageErr("want --last N or --event ID (one or more), not both")
	}
	req := map[string]any{"route": *a.route, "filter": *filter, "events": events, "last": *last}
	if *templateFile != "" {
		b, err := os.ReadFile(*templateFile)
		if err != nil {
			return err
		}
		req["template"] = string(b)
	}
	var out struct {
		Route   string          `json:"route"`
		Results []history.Trial `json:"results"`
	}
	if err := c.send(ctx, http.MethodPost, "/admin/dry-run", req, &out); err != nil {
		return err
	}
	if *a.asJSON {
		return printJSON(stdout, out)
	}
	for _, tr := range out.Results {
		switch {
		case tr.Error != "":
			fmt.Fprintf(stdout, "== %s (%s): error: %s\n", tr.Delivery, tr.Event, tr.Error)
		case !tr.Matched:
			fmt.Fprintf(stdout, "== %s (%s): filtered\n", tr.Delivery, tr.Event)
		default:
			fmt.Fprintf(stdout, "== %s (%s): conversation %s\n%s\n", tr.Delivery, tr.Event, orDash(tr.Conversation), tr.Turn)
		}
	}
	if len(out.Results) == 0 {
		fmt.Fprintln(stdout, "no events")
	}
	return nil
}
