package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/relayd/relayd/internal/event"
	"github.com/relayd/relayd/internal/history"
	"github.com/relayd/relayd/internal/route"
	"github.com/relayd/relayd/internal/verify"
)

// Errors of Replay and DryRun callers branch on.
var (
	ErrUnknownSource = errors.New("ingest: the event's source is not in the current config")
	ErrUnknownRoute  = errors.New("ingest: no such route in the current config")
	ErrNotReplayable = errors.New("ingest: only accepted events keep a body to replay")
)

// ReplayError is a replay the pipeline refused, with the answer a webhook
// would have had (503 queue_full, 400 invalid_body, …).
type ReplayError struct {
	Status        int
	Code, Message string
}

func (e *ReplayError) Error() string { return "ingest: replay: " + e.Code + ": " + e.Message }

// HTTPStatus is the status a webhook would have been answered with.
func (e *ReplayError) HTTPStatus() int { return e.Status }

func addSpec(m map[string]route.Spec, rs route.Spec) map[string]route.Spec {
	if m == nil {
		m = make(map[string]route.Spec)
	}
	m[rs.Name] = rs
	return m
}

func (t *Table) sourceNamed(name string) *Source {
	for _, s := range t.sources {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// storedHeader rebuilds a request's header from a record's.
func storedHeader(h map[string]string) http.Header {
	hdr := make(http.Header, len(h))
	for k, v := range h {
		hdr.Set(k, v)
	}
	return hdr
}

// Replay runs a stored event through the current config as a new delivery
// with id delivery: routed, queued and recorded like a webhook, without
// verification (it was verified when it came) and without dedupe. It
// returns the routes that took it.
func (h *Handler) Replay(ctx context.Context, rec history.Record, delivery string) ([]string, error) {
	if rec.Kind != history.Accepted {
		return nil, ErrNotReplayable
	}
	t := h.table.Load()
	src := t.sourceNamed(rec.Source)
	if src == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownSource, rec.Source)
	}
	rep, herr := h.pipeline(ctx, src, storedHeader(rec.Headers), rec.Body, verify.Result{}, h.o.Now(), "replay", delivery)
	if herr != nil {
		return nil, &ReplayError{Status: herr.status, Code: herr.code, Message: herr.msg}
	}
	if a, ok := rep.body.(answerWithRoutes); ok {
		return a.Routes, nil
	}
	return nil, nil
}

// DryRun renders stored events through the current config's route, with
// the filter and template replaced when given: whether it matches, the
// conversation key and the turn as it would be sent, or the error. Nothing
// is sent or stored.
func (h *Handler) DryRun(_ context.Context, routeName, template, filter string, recs []history.Record) ([]history.Trial, error) {
	t := h.table.Load()
	spec, ok := t.routeSpecs[routeName]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownRoute, routeName)
	}
	if template != "" {
		spec.Template = template
	}
	if filter != "" {
		spec.Filter = filter
	}
	r, err := route.Compile(spec)
	if err != nil {
		return nil, err
	}
	src := t.sourceNamed(spec.Source)
	out := make([]history.Trial, 0, len(recs))
	for _, rec := range recs {
		out = append(out, h.trial(src, r, rec)...)
	}
	return out, nil
}

func (h *Handler) trial(src *Source, r *route.Route, rec history.Record) []history.Trial {
	base := history.Trial{Event: rec.ID, Delivery: rec.Delivery}
	fail := func(msg string) []history.Trial {
		base.Error = msg
		return []history.Trial{base}
	}
	switch {
	case rec.Kind != history.Accepted:
		return fail("a " + rec.Kind + " request keeps no body to render")
	case src == nil || rec.Source != src.Name:
		return fail(fmt.Sprintf("the event came from source %q; the route takes %q", rec.Source, r.Source))
	}
	hdr := storedHeader(rec.Headers)
	items, err := src.parser.Parse(hdr, rec.Body)
	if err != nil {
		return fail(err.Error())
	}
	headers := flattenHeaders(hdr, src.hidden)
	var out []history.Trial
	for i, it := range items {
		tr := base
		ev := event.Event{Source: src.Name, Event: it.Event, Delivery: it.Delivery, Headers: headers,
			Body: it.Body, Raw: rec.Body, ReceivedAt: rec.ReceivedAt, Extra: it.Extra}
		if ev.Delivery == "" {
			ev.Delivery = rec.Delivery
			if len(items) > 1 {
				ev.Delivery += "/" + strconv.Itoa(i)
			}
		}
		tr.Delivery = ev.Delivery
		env := ev.Env()
		matched, err := r.Match(env)
		switch {
		case err != nil:
			tr.Error = err.Error()
		case matched:
			tr.Matched = true
			if key, err := r.ConversationKey(env); err == nil {
				tr.Conversation = key
			}
			p, err := r.Prompt(env)
			if err != nil {
				tr.Error = err.Error()
			} else {
				tr.Turn = p.Text
			}
		}
		out = append(out, tr)
	}
	return out
}

// RouteSource is the source a route of the current config takes.
func (h *Handler) RouteSource(name string) (string, bool) {
	spec, ok := h.table.Load().routeSpecs[name]
	return spec.Source, ok
}
