package dispatch_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
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

// BenchmarkDispatch drains b.N queued messages over 1,000 conversations
// into an instant fake Operator, through the real client and a bbolt
// queue, and reports messages per second.
func BenchmarkDispatch(b *testing.B) {
	for _, conc := range []int{8, 64} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			benchDispatch(b, conc, 1000)
		})
	}
}

func benchDispatch(b *testing.B, concurrency, convs int) {
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
	const batch = 1000
	for i := 0; i < b.N; i += batch {
		var msgs []queue.Message
		for j := i; j < min(i+batch, b.N); j++ {
			msgs = append(msgs, newMsg("bench", fmt.Sprintf("c%04d", j%convs), fmt.Sprintf("message %d", j)))
		}
		if _, err := st.Enqueue(ctx, queue.Batch{Messages: msgs}); err != nil {
			b.Fatal(err)
		}
	}
	m := metrics.New(prometheus.NewRegistry())
	s := defaultSettings()
	s.Concurrency = concurrency
	d := dispatch.New(st, st, client, s, dispatch.Options{Metrics: m})
	delivered := m.DispatchAttempts.WithLabelValues("bench", "delivered")

	b.ResetTimer()
	start := time.Now()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	for testutil.ToFloat64(delivered) < float64(b.N) {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}
