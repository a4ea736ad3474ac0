package dispatch

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relayd/relayd/internal/metrics"
	"github.com/relayd/relayd/internal/queue/natsq"
	"github.com/relayd/relayd/internal/queue/natsq/natstest"
)

func count(w *lockedBuffer, s string) int { return strings.Count(w.String(), s) }

// A reload changes the spacing of the shared slots from the next take on.
func TestSharedLimitsReload(t *testing.T) {
	_, url := natstest.RunServer(t)
	t0 := time.Now()
	st, err := natsq.Open(context.Background(), natsq.Options{URLs: []string{url}, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	l := newLimits(Settings{RateLimit: RateLimit{PerSecond: 5, Burst: 1}}, metrics.New(prometheus.NewRegistry()), slog.New(slog.DiscardHandler), st.RateLimiter())
	take := func() time.Duration {
		t.Helper()
		l.mu.RLock()
		rl := l.account
		l.mu.RUnlock()
		at, ok, err := l.take(context.Background(), "account", rl, forever)
		if err != nil || !ok {
			t.Fatalf("take: %v %v", ok, err)
		}
		return at.Sub(t0)
	}
	for i, want := range []time.Duration{0, 200 * time.Millisecond} {
		if got := take(); got != want {
			t.Fatalf("take %d at +%v, want +%v", i, got, want)
		}
	}
	l.apply(Settings{RateLimit: RateLimit{PerSecond: 1, Burst: 1}})
	for i, want := range []time.Duration{400 * time.Millisecond, 1400 * time.Millisecond} {
		if got := take(); got != want {
			t.Fatalf("take %d after the reload at +%v, want +%v", i, got, want)
		}
	}
}

// With the shared limits unreachable a request is paced by the process's
// own buckets instead of waiting for them; that is logged once, and the
// shared limits are used again once they answer.
func TestSharedLimitsFallBack(t *testing.T) {
	srv, url := natstest.RunServer(t)
	st, err := natsq.Open(context.Background(), natsq.Options{URLs: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	logs := &lockedBuffer{}
	s := Settings{
		RateLimit: RateLimit{PerSecond: 1000, Burst: 1},
		Routes:    map[string]RouteSettings{"r": {RateLimit: &RateLimit{PerSecond: 1000, Burst: 1}}},
	}
	l := newLimits(s, metrics.New(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(logs, nil)), st.RateLimiter())
	l.retryAfter = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.wait(ctx, "r", 1); err != nil {
		t.Fatal(err)
	}
	natstest.Shutdown(srv)
	for range 20 {
		if err := l.wait(ctx, "r", 1); err != nil {
			t.Fatalf("wait with NATS down: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // past retryAfter now and then: tried again
	}
	if n := count(logs, "shared rate limits unavailable"); n != 1 {
		t.Fatalf("logged the fallback %d times, want once:\n%s", n, logs.String())
	}
	natstest.Restart(t, srv)
	for count(logs, "shared rate limits available again") == 0 {
		if err := l.wait(ctx, "r", 1); err != nil {
			t.Fatalf("the shared limits did not come back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
