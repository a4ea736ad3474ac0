package ingest_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/daemon"
	"github.com/relayd/relayd/internal/ingest"
	"github.com/relayd/relayd/internal/metrics"
	"github.com/relayd/relayd/internal/queue/boltq"
)

// An event's prompt longer than max_prompt_bytes is cut at ingest, and the
// supersede key is stored with the message.
func TestPromptCutAndSupersedeKey(t *testing.T) {
	cfg, err := config.Parse([]byte(`
operator: {api_key: ck_live_x}
sources:
  - {name: plain, path: /hooks/plain, body: text, verify: {type: none}}
routes:
  - name: txt
    source: plain
    template: 'text: {{ .body }}'
    supersede: '"k-" + source'
    max_prompt_bytes: 300
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
	m := metrics.New(prometheus.NewRegistry())
	srv := httptest.NewServer(ingest.New(table, ingest.Options{Store: store, Metrics: m, Logger: slog.New(slog.DiscardHandler)}).Echo())
	t.Cleanup(func() { srv.Close(); store.Close() })

	for _, body := range []string{"short", strings.Repeat("é", 400)} {
		resp, err := http.Post(srv.URL+"/hooks/plain", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	r := &rig{store: store}
	msgs := r.drain(t)
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	if msgs[0].Prompt != "text: short" || msgs[0].SupersedeKey != "k-plain" {
		t.Errorf("first message %q key %q", msgs[0].Prompt, msgs[0].SupersedeKey)
	}
	if p := msgs[1].Prompt; len(p) > 300 || !strings.HasSuffix(p, "bytes cut]") {
		t.Errorf("long prompt not cut to the budget: %d bytes, ends %q", len(p), p[max(0, len(p)-30):])
	}
	if n := testutil.ToFloat64(m.PromptsCut.WithLabelValues("txt")); n != 1 {
		t.Errorf("relayd_prompts_cut_total = %v, want 1", n)
	}
}
