package dispatch_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/history"
	"github.com/relayd/relayd/internal/metrics"
	"github.com/relayd/relayd/internal/operator"
	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/queue/boltq"
)

// BenchmarkDispatch drains b.N queued messages over 1,000 conversations
// into an instant fake Operator, through the real client and a bbolt
// queue, and reports messages per second and the CPU time per message.
//
// With history, each message is queued as ingest queues an event, its own
// batch with the event's record (a 1 KB body), and the dispatcher records
// its outcome there, as relayd does by default.
func BenchmarkDispatch(b *testing.B) {
	for _, conc := range []int{8, 64} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			benchDispatch(b, conc, 1000, false)
		})
	}
	b.Run("concurrency=64/history", func(b *testing.B) {
		benchDispatch(b, 64, 1000, true)
	})
}

func benchDispatch(b *testing.B, concurrency, convs int, withHistory bool) {
	f := fake.New(fake.Options{MaxRequests: 1})
	srv := httptest.NewServer(f)
	defer srv.Close()
	client := operator.New(operator.Options{BaseURL: srv.URL, APIKey: apiKey})
	st, err := boltq.Open(context.Background(), filepath.Join(b.TempDir(), "relayd.db"), boltq.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()

	ctx := context.Background()
	var batches []queue.Batch
	const batch = 1000
	for i := 0; i < b.N; i += batch {
		var msgs []queue.Message
		for j := i; j < min(i+batch, b.N); j++ {
			msgs = append(msgs, newMsg("bench", fmt.Sprintf("c%04d", j%convs), fmt.Sprintf("message %d", j)))
		}
		if !withHistory {
			batches = append(batches, queue.Batch{Messages: msgs})
			continue
		}
		for _, m := range msgs {
			rec := &history.Record{ID: history.NewID(time.Now()), Delivery: m.Delivery, Source: m.Source, Event: m.Event,
				ReceivedAt: time.Now(), Kind: history.Accepted, Status: 202, Body: strings.Repeat("x", 1024),
				Routes: []history.RouteOutcome{{Route: m.Route, Outcome: history.Queued, Conversation: m.ConversationKey, MessageID: m.ID, QueuedAt: m.EnqueuedAt}}}
			batches = append(batches, queue.Batch{Messages: []queue.Message{m}, History: rec})
		}
	}
	// Queued from many goroutines, as ingest's requests are, so that the
	// log's group commit takes them together.
	var wg sync.WaitGroup
	next := make(chan queue.Batch)
	for range 64 {
		wg.Go(func() {
			for bt := range next {
				if _, err := st.Enqueue(ctx, bt); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for _, bt := range batches {
		next <- bt
	}
	close(next)
	wg.Wait()
	// Timed from when the store has every message in bbolt: the log's
	// backlog is ingest's work, not dispatch's.
	for {
		qs, err := st.Stats(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if qs.Ready+qs.Delayed >= b.N {
			break
		}
		time.Sleep(time.Millisecond)
	}
	m := metrics.New(prometheus.NewRegistry())
	s := defaultSettings()
	s.Concurrency = concurrency
	o := dispatch.Options{Metrics: m}
	if withHistory {
		o.History = st
	}
	d := dispatch.New(st, st, client, s, o)
	delivered := m.DispatchAttempts.WithLabelValues("bench", "delivered")

	b.ResetTimer()
	start, cpu := time.Now(), cpuTime()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	for testutil.ToFloat64(delivered) < float64(b.N) {
		time.Sleep(time.Millisecond)
	}
	elapsed, used := time.Since(start), cpuTime()-cpu
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	// On a shared machine the rate varies with the neighbours' load; the
	// CPU time a message costs (relayd's side and the fake's, one process)
	// varies much less.
	b.ReportMetric(float64(used.Microseconds())/float64(b.N), "cpu-µs/msg")
}
