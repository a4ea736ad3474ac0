package natsq_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/queue/natsq"
	"github.com/relayd/relayd/internal/queue/natsq/natstest"
)

const forever = time.Duration(1<<63 - 1)

var limitT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func openAt(t *testing.T, url string, now func() time.Time) *natsq.Store {
	t.Helper()
	st, err := natsq.Open(context.Background(), natsq.Options{URLs: []string{url}, Now: now, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// Workers of three replicas taking slots at once get every slot of the
// schedule exactly once: the burst at the start, then one per 1/rate. With
// the clock stopped, the schedule does not depend on timing.
func TestRateLimiterSharedByReplicas(t *testing.T) {
	_, url := natstest.RunServer(t)
	clock := func() time.Time { return limitT0 }
	const (
		replicas, workers, each = 3, 4, 10
		perSecond, burst        = 5, 2
	)
	var (
		mu    sync.Mutex
		slots []time.Time
		wg    sync.WaitGroup
	)
	for range replicas {
		lim := openAt(t, url, clock).RateLimiter()
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					at, ok, err := lim.Take(context.Background(), "route/ci failures.ä~", perSecond, burst, forever)
					if err != nil || !ok {
						t.Errorf("take: %v %v", ok, err)
						return
					}
					mu.Lock()
					slots = append(slots, at)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	slices.SortFunc(slots, func(a, b time.Time) int { return a.Compare(b) })
	n := replicas * workers * each
	if len(slots) != n {
		t.Fatalf("%d slots, want %d", len(slots), n)
	}
	for i, at := range slots {
		want := limitT0.Add(time.Duration(max(i-burst+1, 0)) * time.Second / perSecond)
		if !at.Equal(want) {
			t.Fatalf("slot %d at +%v, want +%v (slots: %v)", i, at.Sub(limitT0), want.Sub(limitT0), slots)
		}
	}
	// Scopes are independent.
	at, _, err := openAt(t, url, clock).RateLimiter().Take(context.Background(), "account", perSecond, burst, forever)
	if err != nil || !at.Equal(limitT0) {
		t.Fatalf("account's first slot +%v (%v), want now", at.Sub(limitT0), err)
	}
}

// A hold by one replica (a 429 with Retry-After) makes every replica's
// next slot due after it; a slot past maxWait is not taken.
func TestRateLimiterHold(t *testing.T) {
	_, url := natstest.RunServer(t)
	clock := func() time.Time { return limitT0 }
	a, b := openAt(t, url, clock).RateLimiter(), openAt(t, url, clock).RateLimiter()
	ctx := context.Background()
	until := limitT0.Add(30 * time.Second)
	if err := a.Hold(ctx, "account", 2, 5, until); err != nil {
		t.Fatal(err)
	}
	if at, ok, err := b.Take(ctx, "account", 2, 5, time.Second); err != nil || ok || !at.Equal(until) {
		t.Fatalf("take within a second during the hold: +%v ok %v (%v), want not taken, due +30s", at.Sub(limitT0), ok, err)
	}
	if at, ok, err := b.Take(ctx, "account", 2, 5, forever); err != nil || !ok || !at.Equal(until) {
		t.Fatalf("take during the hold: +%v ok %v (%v), want +30s", at.Sub(limitT0), ok, err)
	}
	// Unlimited scopes cost nothing and are due now.
	if at, ok, err := b.Take(ctx, "account", 0, 1, 0); err != nil || !ok || !at.Equal(limitT0) {
		t.Fatalf("unlimited take: +%v ok %v (%v)", at.Sub(limitT0), ok, err)
	}
}

// With NATS gone a take fails at once with ErrUnavailable (the dispatcher
// then paces on its own), and works again once NATS is back.
func TestRateLimiterUnavailable(t *testing.T) {
	srv, url := natstest.RunServer(t)
	lim := openAt(t, url, time.Now).RateLimiter()
	ctx := context.Background()
	if _, _, err := lim.Take(ctx, "account", 5, 1, forever); err != nil {
		t.Fatal(err)
	}
	natstest.Shutdown(srv)
	if _, _, err := lim.Take(ctx, "account", 5, 1, forever); !errors.Is(err, queue.ErrUnavailable) {
		t.Fatalf("take with NATS down: %v, want ErrUnavailable", err)
	}
	natstest.Restart(t, srv)
	wctx := waitCtx(t)
	for {
		if _, _, err := lim.Take(ctx, "account", 5, 1, forever); err == nil {
			break
		}
		if wctx.Err() != nil {
			t.Fatal("takes do not work again after NATS came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
