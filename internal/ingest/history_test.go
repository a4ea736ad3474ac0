package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relayd/relayd/internal/history"
	"github.com/relayd/relayd/internal/ingest"
)

const historyConfig = `
storage: {path: unused}
operator: {api_key: ck_live_x}
sources:
  - name: github
    path: /hooks/github
    verify: {type: github, secrets: ["` + ghSecret + `"]}
routes:
  - name: never
    source: github
    filter: 'event == "release"'
    template: 'x'
  - name: bad-filter
    source: github
    filter: 'int(body.n) > 0'
    template: 'x'
  - name: bad-template
    source: github
    template: '{{ truncate .body.n "x" }}'
  - name: ok
    source: github
    filter: 'body.ok == true'
    conversation: 'body.repo'
    template: 'turn for {{ .body.repo }}'
`

func eventOf(t *testing.T, r *rig, delivery string) history.Record {
	t.Helper()
	if err := r.store.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec, err := r.store.Event(context.Background(), delivery)
	if err != nil {
		p, _ := r.store.Events(context.Background(), history.Query{})
		t.Fatalf("event %s: %v; have %+v", delivery, err, p)
	}
	return rec
}

func outcomes(rec history.Record) map[string]history.RouteOutcome {
	m := map[string]history.RouteOutcome{}
	for _, ro := range rec.Routes {
		m[ro.Route] = ro
	}
	return m
}

func TestHistoryOfEveryRequest(t *testing.T) {
	r := newRigFrom(t, historyConfig)
	post := func(body, delivery string, hdr http.Header) reply {
		if hdr == nil {
			hdr = signed(t, "github", []string{ghSecret}, []byte(body), delivery)
			hdr.Set("X-GitHub-Event", "push")
			hdr.Set("X-GitHub-Delivery", delivery)
		}
		hdr.Set("Content-Type", "application/json")
		return r.do(t, http.MethodPost, "/hooks/github", hdr, strings.NewReader(body))
	}

	// One route takes it; the others are filtered or fail, each recorded.
	body := `{"n":"abc","list":[],"ok":true,"repo":"acme/api"}`
	if rep := post(body, "d-1", nil); rep.status != http.StatusAccepted {
		t.Fatalf("status %d: %s", rep.status, rep.raw)
	}
	rec := eventOf(t, r, "d-1")
	if rec.Kind != history.Accepted || rec.Body != body || rec.Event != "push" || rec.Status != 202 {
		t.Fatalf("record %+v", rec)
	}
	for k := range rec.Headers {
		if strings.Contains(k, "signature") {
			t.Errorf("credential header %s recorded", k)
		}
	}
	got := outcomes(rec)
	if got["never"].Outcome != history.Filtered {
		t.Errorf("never: %+v", got["never"])
	}
	if o := got["bad-filter"]; o.Outcome != history.FilterError || o.Error == "" {
		t.Errorf("bad-filter: %+v", o)
	}
	if o := got["bad-template"]; o.Outcome != history.TemplateError || o.Error == "" {
		t.Errorf("bad-template: %+v", o)
	}
	if o := got["ok"]; o.Outcome != history.Queued || o.Turn == "" || !strings.Contains(o.Turn, "acme/api") || o.Conversation != "acme/api" || o.MessageID == "" {
		t.Errorf("ok: %+v", o)
	}
	for _, kind := range []string{"filter", "template"} {
		route := "bad-" + kind
		if v := testutil.ToFloat64(r.m.RouteErrors.WithLabelValues(route, kind)); v != 1 {
			t.Errorf("relayd_route_errors_total{%s,%s} = %v", route, kind, v)
		}
	}

	// No route takes it and some failed: 200 naming them.
	body2 := `{"n":"abc","list":[],"ok":false}`
	rep := post(body2, "d-2", nil)
	if rep.status != http.StatusOK {
		t.Fatalf("status %d: %s", rep.status, rep.raw)
	}
	if errs, _ := rep.body["errors"].([]any); len(errs) != 2 || errs[0] != "bad-filter" || errs[1] != "bad-template" {
		t.Fatalf("errors = %v", rep.body["errors"])
	}
	if rec2 := eventOf(t, r, "d-2"); rec2.Status != 200 || len(rec2.Routes) != 4 || rec2.Body != body2 {
		t.Fatalf("record of an event no route took: %+v", rec2)
	}

	// A duplicate points at the original and keeps no body.
	if rep := post(body, "d-1", nil); rep.status != http.StatusOK {
		t.Fatalf("duplicate status %d", rep.status)
	}
	_ = eventOf(t, r, "d-1") // flushes what is pending
	page, err := r.store.Events(context.Background(), history.Query{Outcome: history.Duplicate})
	if err != nil || len(page.Events) != 1 {
		t.Fatalf("duplicates: %+v %v", page, err)
	}
	if d := page.Events[0]; d.DuplicateOf != rec.ID || d.Delivery != "d-1" {
		t.Fatalf("duplicate record %+v, want duplicate of %s", d, rec.ID)
	}

	// Rejected: no body, with the remote address, status and reason.
	bad := http.Header{"X-Hub-Signature-256": {"sha256=00"}, "X-Github-Delivery": {"d-3"}, "X-Github-Event": {"push"}}
	if rep := post(`{"secret":"do not keep"}`, "", bad); rep.status != http.StatusUnauthorized {
		t.Fatalf("bad signature: %d", rep.status)
	}
	rej := eventOf(t, r, "d-3")
	if rej.Kind != history.Rejected || rej.Status != 401 || rej.Reason != "signature_malformed" || rej.Remote == "" || rej.Body != "" {
		t.Fatalf("rejected record %+v", rej)
	}
	if rep := r.do(t, http.MethodPost, "/hooks/github", http.Header{}, bytes.NewReader(make([]byte, 2<<20))); rep.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("large body: %d", rep.status)
	}
	_ = eventOf(t, r, "d-3")
	page, _ = r.store.Events(context.Background(), history.Query{Outcome: history.Rejected})
	if len(page.Events) != 2 || page.Events[0].Status != 413 {
		t.Fatalf("rejected listing %+v", page.Events)
	}
}

func TestReplayAndDryRun(t *testing.T) {
	r := newRigFrom(t, strings.Replace(historyConfig, "storage: {path: unused}", "storage: {path: unused, max_pending: 3}", 1))
	ctx := context.Background()
	body := `{"n":1,"list":[1],"ok":true,"repo":"acme/api"}`
	hdr := signed(t, "github", []string{ghSecret}, []byte(body), "")
	hdr.Set("X-GitHub-Event", "push")
	hdr.Set("X-GitHub-Delivery", "d-1")
	if rep := r.do(t, http.MethodPost, "/hooks/github", hdr, strings.NewReader(body)); rep.status != http.StatusAccepted {
		t.Fatalf("status %d: %s", rep.status, rep.raw)
	}
	rec := eventOf(t, r, "d-1")

	// The queue is full with its three messages: a replay is refused as a webhook would be.
	_, err := r.h.Replay(ctx, rec, "d-1.replay-1")
	var re *ingest.ReplayError
	if !errors.As(err, &re) || re.HTTPStatus() != http.StatusServiceUnavailable {
		t.Fatalf("replay on a full queue: %v", err)
	}
	if got := r.drain(t); len(got) != 3 {
		t.Fatalf("drained %d", len(got))
	}
	routes, err := r.h.Replay(ctx, rec, "d-1.replay-1")
	if err != nil || len(routes) != 3 {
		t.Fatalf("replay: %v %v", routes, err)
	}
	msgs := r.drain(t)
	if len(msgs) != 3 || msgs[0].Delivery != "d-1.replay-1" {
		t.Fatalf("replayed messages %+v", msgs)
	}
	if again := eventOf(t, r, "d-1.replay-1"); again.Body != body || again.ID == rec.ID {
		t.Fatalf("replay record %+v", again)
	}
	if _, err := r.h.Replay(ctx, history.Record{Kind: history.Rejected}, "x"); !errors.Is(err, ingest.ErrNotReplayable) {
		t.Fatalf("replay of a rejected request: %v", err)
	}

	trials, err := r.h.DryRun(ctx, "ok", "tried {{ .body.repo }}", "body.n == 1", []history.Record{rec, {ID: "r", Kind: history.Rejected}})
	if err != nil || len(trials) != 2 {
		t.Fatalf("dry run: %+v %v", trials, err)
	}
	if tr := trials[0]; !tr.Matched || tr.Conversation != "acme/api" || !strings.Contains(tr.Turn, "tried acme/api") {
		t.Errorf("trial %+v", tr)
	}
	if trials[1].Error == "" {
		t.Errorf("a rejected request rendered: %+v", trials[1])
	}
	if _, err := r.h.DryRun(ctx, "ok", "{{ .body.repo", "", nil); err == nil {
		t.Error("a template that does not compile ran")
	}
	if _, err := r.h.DryRun(ctx, "nope", "", "", nil); !errors.Is(err, ingest.ErrUnknownRoute) {
		t.Errorf("unknown route: %v", err)
	}
	if st, _ := r.store.Stats(ctx); st.Ready+st.Delayed != 0 {
		t.Errorf("a dry run queued something: %+v", st)
	}
}
