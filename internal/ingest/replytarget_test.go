package ingest_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/daemon"
	"github.com/relayd/relayd/internal/ingest"
	"github.com/relayd/relayd/internal/queue/boltq"
)

// A route that comments on GitHub keeps each event's target (pull request
// or commit) on its message; a route that does not keeps none.
func TestReplyTargetKept(t *testing.T) {
	cfg, err := config.Parse([]byte(`
operator: {api_key: ck_live_x}
sources:
  - {name: gh, path: /hooks/gh, verify: {type: none}}
routes:
  - name: comments
    source: gh
    template: 'x'
    reply: [{type: github_comment, token: ghp_x}]
  - name: plain
    source: gh
    template: 'y'
`), t.TempDir(), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	table, err := daemon.CompileIngest(cfg)
	if err != nil {
		t.Fatal(err)
	}
	store, err := boltq.Open(context.Background(), filepath.Join(t.TempDir(), "q.db"), boltq.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ingest.New(table, ingest.Options{Store: store, Logger: slog.New(slog.DiscardHandler)}).Echo())
	t.Cleanup(func() { srv.Close(); store.Close() })

	const sha = "3484a3fb816e0859fd6e1cea078d76385ff50625"
	for _, body := range []string{
		`{"repository":{"full_name":"acme/app","id":1},"pull_request":{"number":12}}`,
		`{"repository":{"full_name":"acme/app","id":1},"workflow_run":{"head_sha":"` + sha + `","pull_requests":[]}}`,
		`{"repository":{"full_name":"acme/app"}}`,
	} {
		resp, err := http.Post(srv.URL+"/hooks/gh", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	r := &rig{store: store}
	type tgt struct {
		repo string
		num  int64
		sha  string
	}
	got := map[string][]tgt{}
	for _, m := range r.drain(t) {
		got[m.Route] = append(got[m.Route], tgt{m.ReplyRepo, m.ReplyNumber, m.ReplySHA})
	}
	want := []tgt{{"acme/app", 12, ""}, {"acme/app", 0, sha}, {}}
	if len(got["comments"]) != 3 {
		t.Fatalf("comments route: %+v", got["comments"])
	}
	for i, w := range want {
		if got["comments"][i] != w {
			t.Errorf("event %d: target %+v, want %+v", i, got["comments"][i], w)
		}
	}
	for _, g := range got["plain"] {
		if g != (tgt{}) {
			t.Errorf("route without github_comment kept a target: %+v", g)
		}
	}
	if len(got["plain"]) != 3 {
		t.Errorf("plain route: %d messages, want 3", len(got["plain"]))
	}
}
