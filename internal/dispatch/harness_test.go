package dispatch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/metrics"
	"github.com/relayd/relayd/internal/operator"
	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/queue/boltq"
)

// apiKey is the key the client sends; the logs must never show it.
const apiKey = "ck_live_dispatch_test_key_6b1f0c"

// waitTimeout is how long a test waits for something that should happen
// in milliseconds: generous, for a loaded 2-core CI machine.
const waitTimeout = 30 * time.Second

// Interfaces the real store must satisfy for the dispatcher.
var (
	_ dispatch.Queue     = (*boltq.Store)(nil)
	_ dispatch.ChatStore = (*boltq.Store)(nil)
	_ dispatch.Chatter   = (*operator.Client)(nil)
)

// harness is a dispatcher wired to the real parts: the fake Operator over
// HTTP on loopback, the real client, and a bbolt store on a temp file.
type harness struct {
	t        testing.TB
	fake     *fake.Server
	srv      *httptest.Server
	client   *operator.Client
	path     string
	store    *boltq.Store
	reg      *prometheus.Registry
	m        *metrics.Metrics
	logs     *syncBuffer
	settings dispatch.Settings
	opts     dispatch.Options
	turns    queue.TurnPolicies // the store's, set before openStore

	d      *dispatch.Dispatcher
	cancel context.CancelFunc
	done   chan error
}

var msgSeq atomic.Int64

func defaultSettings() dispatch.Settings {
	return dispatch.Settings{
		Concurrency:  4,
		RateLimit:    dispatch.RateLimit{}, // unlimited
		Retry:        dispatch.Retry{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond, MaxAttempts: 20},
		DrainTimeout: 10 * time.Second,
	}
}

// newHarness builds everything but does not start the dispatcher; adjust
// h.settings / h.opts first if needed, then call start.
func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{
		t:        t,
		fake:     fake.New(fake.Options{}),
		path:     filepath.Join(t.TempDir(), "relayd.db"),
		logs:     &syncBuffer{},
		settings: defaultSettings(),
	}
	h.srv = httptest.NewServer(h.fake)
	t.Cleanup(h.srv.Close)
	h.client = operator.New(operator.Options{BaseURL: h.srv.URL, APIKey: apiKey, Timeout: 10 * time.Second})
	h.openStore()
	h.newMetrics()
	h.opts = dispatch.Options{
		Logger:       slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ProbeInitial: 20 * time.Millisecond,
		ProbeMax:     200 * time.Millisecond,
	}
	t.Cleanup(func() {
		h.stop()
		if h.store != nil {
			_ = h.store.Close()
		}
	})
	return h
}

func (h *harness) newMetrics() {
	h.reg = prometheus.NewRegistry()
	h.m = metrics.New(h.reg)
}

func (h *harness) openStore() {
	h.t.Helper()
	st, err := boltq.Open(context.Background(), h.path, boltq.Options{Logger: slog.New(slog.DiscardHandler), Turns: h.turns})
	if err != nil {
		h.t.Fatalf("open store: %v", err)
	}
	h.store = st
}

// start runs a new dispatcher on the current store.
func (h *harness) start() {
	h.t.Helper()
	o := h.opts
	o.Metrics = h.m
	h.d = dispatch.New(h.store, h.store, h.client, h.settings, o)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.d.Run(ctx) }()
}

// stop cancels Run and waits for it; it returns Run's error.
func (h *harness) stop() error {
	if h.cancel == nil {
		return nil
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		return err
	case <-time.After(waitTimeout):
		h.t.Fatalf("Run did not return after cancel")
		return nil
	}
}

// restart stops the dispatcher, closes and reopens the store: a process
// restart on the same file.
func (h *harness) restart() {
	h.t.Helper()
	if err := h.stop(); err != nil {
		h.t.Fatalf("stop: %v", err)
	}
	if err := h.store.Close(); err != nil {
		h.t.Fatalf("close store: %v", err)
	}
	h.openStore()
	h.newMetrics()
}

func newMsg(route, conv, text string) queue.Message {
	n := msgSeq.Add(1)
	return queue.Message{
		ID:              fmt.Sprintf("msg-%06d", n),
		Route:           route,
		ConversationKey: conv,
		Prompt:          text,
		Source:          "github",
		Delivery:        fmt.Sprintf("dlv-%06d", n),
		Event:           "workflow_run",
		EnqueuedAt:      time.Now(),
	}
}

func (h *harness) enqueue(msgs ...queue.Message) {
	h.t.Helper()
	if _, err := h.store.Enqueue(context.Background(), queue.Batch{Messages: msgs}); err != nil {
		h.t.Fatalf("enqueue: %v", err)
	}
}

func (h *harness) stats() queue.Stats {
	h.t.Helper()
	s, err := h.store.Stats(context.Background())
	if err != nil {
		h.t.Fatalf("stats: %v", err)
	}
	return s
}

// pending is every message still queued (ready, delayed or leased).
func (h *harness) pending() int {
	s := h.stats()
	return s.Ready + s.Delayed + s.Inflight
}

func (h *harness) dead() []queue.DeadLetter {
	h.t.Helper()
	dl, err := h.store.ListDead(context.Background(), "")
	if err != nil {
		h.t.Fatalf("list dead: %v", err)
	}
	return dl
}

func (h *harness) chat(route, key string) queue.ChatState {
	h.t.Helper()
	st, err := h.store.GetChat(context.Background(), route, key)
	if err != nil {
		h.t.Fatalf("get chat: %v", err)
	}
	return st
}

// waitFor polls cond until it holds, failing the test after waitTimeout.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settled waits until nothing is queued or leased.
func (h *harness) settled() {
	h.t.Helper()
	h.waitFor("the queue to drain", func() bool { return h.pending() == 0 })
}

// chatRequests are the fake's recorded POST /api/chat requests.
func (h *harness) chatRequests() []fake.Request {
	var out []fake.Request
	for _, r := range h.fake.Requests() {
		if r.Method == "POST" {
			out = append(out, r)
		}
	}
	return out
}

func (h *harness) attempts(route, outcome string) float64 {
	return testutil.ToFloat64(h.m.DispatchAttempts.WithLabelValues(route, outcome))
}

func (h *harness) retries(route, reason string) float64 {
	return testutil.ToFloat64(h.m.Retries.WithLabelValues(route, reason))
}

func (h *harness) deadCount(route, reason string) float64 {
	return testutil.ToFloat64(h.m.DeadLetters.WithLabelValues(route, reason))
}

// logRecords decodes the JSON log lines written so far.
func (h *harness) logRecords() []map[string]any {
	h.t.Helper()
	var out []map[string]any
	for line := range bytes.SplitSeq(h.logs.Bytes(), []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			h.t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

func (h *harness) logged(msg string) bool {
	for _, r := range h.logRecords() {
		if r["msg"] == msg {
			return true
		}
	}
	return false
}

// checkLeaseGuard fails the test if the dispatcher ever refused a lease
// because it already held one of the same conversation.
func (h *harness) checkLeaseGuard() {
	h.t.Helper()
	for _, r := range h.logRecords() {
		if msg, _ := r["msg"].(string); strings.Contains(msg, "leased a second message") {
			h.t.Errorf("lease guard fired: %v", r)
			return
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

func ptr[T any](v T) *T { return &v }
