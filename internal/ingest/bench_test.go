package ingest_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/daemon"
	"github.com/relayd/relayd/internal/ingest"
	"github.com/relayd/relayd/internal/metrics"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/queue/boltq"
	"github.com/relayd/relayd/internal/samples"
)

// benchConfig is one GitHub source and a route that takes push events, as
// the load harness in bench/ configures relayd.
const benchConfig = `
storage: {path: unused}
operator: {api_key: ck_live_x}
sources:
  - name: github
    path: /hooks/github
    verify: {type: github, secrets: ["` + ghSecret + `"]}
routes:
  - name: pushes
    source: github
    filter: 'event == "push" && body.repository.full_name != ""'
    conversation: 'body.repository.full_name'
    template: |
      Push {{ .delivery }} to {{ .body.repository.full_name }} ({{ .body.ref }}) by {{ .body.pusher.name }}.
      Compare: {{ .body.compare | truncate 200 }}
`

// discardStore accepts every batch without storing it, to measure the
// handler's own cost.
type discardStore struct{}

func (discardStore) Enqueue(context.Context, queue.Batch) (bool, error) { return false, nil }

var _ ingest.Store = discardStore{}

func benchHandler(b *testing.B, store ingest.Store) *echo.Echo {
	b.Helper()
	return benchHandlerWith(b, store, nil)
}

// benchHandlerWith is benchHandler keeping the history in rec (nil: none).
func benchHandlerWith(b *testing.B, store ingest.Store, rec ingest.Recorder) *echo.Echo {
	b.Helper()
	cfg, err := config.Parse([]byte(benchConfig), b.TempDir(), func(string) (string, bool) { return "", false })
	if err != nil {
		b.Fatal(err)
	}
	table, err := daemon.CompileIngest(cfg)
	if err != nil {
		b.Fatal(err)
	}
	// Logs formatted as in production, then discarded.
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	h := ingest.New(table, ingest.Options{Store: store, Recorder: rec, Metrics: metrics.New(prometheus.NewRegistry()), Logger: log})
	return h.Echo()
}

func pushRequest(b *testing.B) func(delivery string) *http.Request {
	b.Helper()
	body, err := samples.GitHub("push", "")
	if err != nil {
		b.Fatal(err)
	}
	m := hmac.New(sha256.New, []byte(ghSecret))
	m.Write(body)
	sig := "sha256=" + hex.EncodeToString(m.Sum(nil))
	return func(delivery string) *http.Request {
		req := httptest.NewRequest(http.MethodPost, "/hooks/github", bytes.NewReader(body))
		req.Header = http.Header{
			"Content-Type":        {"application/json"},
			"X-Github-Event":      {"push"},
			"X-Github-Delivery":   {delivery},
			"X-Hub-Signature-256": {sig},
		}
		return req
	}
}

// BenchmarkIngest serves the 7.3 KB signed GitHub push sample through the
// ingest handler (verify, parse, filter, conversation key, render, enqueue,
// 202), with no network in between.
//
//   - handler: a store that keeps nothing, so ns/op and allocs/op are the
//     handler's own cost;
//   - bbolt-serial: one request at a time on a real bbolt file, so every
//     request waits for its own fsync;
//   - bbolt-parallel: 64 requests at once on a real file, sharing fsyncs
//     through group commit; ns/op is wall time per request;
//   - bbolt-parallel-history: the same, keeping the history of every
//     request (headers, body and outcome, in the same log frame).
func BenchmarkIngest(b *testing.B) {
	newReq := pushRequest(b)
	serve := func(b *testing.B, e *echo.Echo, delivery string) {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, newReq(delivery))
		if rec.Code != http.StatusAccepted {
			b.Fatalf("answer %d: %s", rec.Code, rec.Body.String())
		}
	}
	b.Run("handler", func(b *testing.B) {
		e := benchHandler(b, discardStore{})
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			serve(b, e, "d-"+strconv.Itoa(i))
		}
	})
	openStore := func(b *testing.B) *boltq.Store {
		s, err := boltq.Open(context.Background(), filepath.Join(b.TempDir(), "relayd.db"), boltq.Options{DedupeSweepInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	b.Run("bbolt-serial", func(b *testing.B) {
		e := benchHandler(b, openStore(b))
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			serve(b, e, "d-"+strconv.Itoa(i))
		}
	})
	parallel := func(b *testing.B, history bool) {
		s := openStore(b)
		var rec ingest.Recorder
		if history {
			rec = s
		}
		e := benchHandlerWith(b, s, rec)
		var n atomic.Int64
		b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				serve(b, e, "d-"+strconv.FormatInt(n.Add(1), 10))
			}
		})
		b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "req/s")
	}
	b.Run("bbolt-parallel", func(b *testing.B) { parallel(b, false) })
	b.Run("bbolt-parallel-history", func(b *testing.B) { parallel(b, true) })
}
