package dispatch

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relayd/relayd/internal/metrics"
	"github.com/relayd/relayd/internal/operator"
	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/queue/boltq"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A reload that keeps the concurrency says nothing about it.
func TestConcurrencyChangeLoggedOnlyWhenChanged(t *testing.T) {
	api := httptest.NewServer(fake.New(fake.Options{}))
	defer api.Close()
	st, err := boltq.Open(context.Background(), filepath.Join(t.TempDir(), "q.db"), boltq.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	logs := &lockedBuffer{}
	s := Settings{Concurrency: 2, Retry: Retry{Initial: time.Millisecond, Max: time.Millisecond, MaxAttempts: 1}, DrainTimeout: time.Second}
	d := New(st, st, operator.New(operator.Options{BaseURL: api.URL, APIKey: "ck_live_x"}), s, Options{
		Logger: slog.New(slog.NewJSONHandler(logs, nil)), Metrics: metrics.New(prometheus.NewRegistry()),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitLog := func(what string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(logs.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("no log line with %s:\n%s", what, logs.String())
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitLog(`"msg":"dispatch started"`)
	d.Apply(s) // same concurrency
	// The run loop takes resize signals one at a time: once this one is
	// taken, the next is handled after it.
	for len(d.resize) > 0 {
		time.Sleep(time.Millisecond)
	}
	s.Concurrency = 3
	d.Apply(s)
	waitLog(`"concurrency":3`)
	if n := strings.Count(logs.String(), "dispatch concurrency changed"); n != 1 {
		t.Errorf("%d concurrency-changed lines, want 1 (for 2 → 3):\n%s", n, logs.String())
	}
}
