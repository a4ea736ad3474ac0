package natsq

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/queue/natsq/natstest"
)

// forever is a maxWait that takes any slot.
const forever = time.Duration(math.MaxInt64)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestGCRATake(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	type take struct {
		now     time.Duration // after t0
		maxWait time.Duration
		at      time.Duration // want, after t0
		ok      bool
	}
	for _, c := range []struct {
		name      string
		perSecond float64
		burst     int
		tat       time.Time // stored; zero: none
		takes     []take
	}{
		{"burst 1 spaces every slot", 5, 1, time.Time{}, []take{
			{0, forever, 0, true}, {0, forever, ms(200), true}, {0, forever, ms(400), true},
			{ms(500), forever, ms(600), true},
		}},
		{"burst 3 at once, then the rate", 10, 3, time.Time{}, []take{
			{0, forever, 0, true}, {0, forever, 0, true}, {0, forever, 0, true},
			{0, forever, ms(100), true}, {ms(150), forever, ms(200), true},
		}},
		{"an idle scope has its whole burst again", 10, 2, t0.Add(-time.Hour), []take{
			{0, forever, 0, true}, {0, forever, 0, true}, {0, forever, ms(100), true},
		}},
		{"zero burst counts as one", 10, 0, time.Time{}, []take{
			{0, forever, 0, true}, {0, forever, ms(100), true},
		}},
		{"past maxWait nothing is taken", 4, 1, time.Time{}, []take{
			{0, 0, 0, true}, {0, 0, ms(250), false}, {0, ms(100), ms(250), false},
			{0, ms(250), ms(250), true}, {ms(300), 0, ms(500), false},
		}},
		{"a record ahead of now (a hold) delays the first slot", 2, 3, t0.Add(ms(1000) + ms(1000)), []take{
			{0, forever, ms(1000), true}, {0, forever, ms(1500), true},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tat := c.tat
			for i, tk := range c.takes {
				at, next, ok := gcraTake(tat, t0.Add(tk.now), c.perSecond, c.burst, tk.maxWait)
				if !at.Equal(t0.Add(tk.at)) || ok != tk.ok {
					t.Fatalf("take %d: at +%v ok %v, want +%v %v", i, at.Sub(t0), ok, tk.at, tk.ok)
				}
				if ok {
					tat = next
				}
			}
		})
	}
}

// Whatever the arrivals, the slots handed out never exceed burst +
// rate×w in a window of length w.
func TestGCRAWindows(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		perSecond float64
		burst     int
	}{{5, 1}, {5, 3}, {0.5, 2}, {100, 10}} {
		var tat time.Time
		now := t0
		var slots []time.Time
		for range 500 {
			now = now.Add(time.Duration(rnd.Float64() * 3 * float64(time.Second) / c.perSecond))
			at, next, ok := gcraTake(tat, now, c.perSecond, c.burst, forever)
			if !ok || at.Before(now) {
				t.Fatalf("%+v: slot %v before now %v (ok %v)", c, at, now, ok)
			}
			tat = next
			slots = append(slots, at)
		}
		slices.SortFunc(slots, func(a, b time.Time) int { return a.Compare(b) })
		if err := checkWindows(slots, c.perSecond, c.burst); err != "" {
			t.Fatalf("%+v: %s", c, err)
		}
	}
}

// checkWindows checks every window that starts at a slot (the worst ones).
func checkWindows(slots []time.Time, perSecond float64, burst int) string {
	for i := range slots {
		for j := i; j < len(slots); j++ {
			w := slots[j].Sub(slots[i]).Seconds()
			// A nanosecond of rounding per slot is not a request too many.
			if n := j - i + 1; float64(n) > float64(burst)+perSecond*w+1e-6*float64(n) {
				return "too many slots in a window: " + slots[i].String() + " .. " + slots[j].String()
			}
		}
	}
	return ""
}

func TestGCRAHold(t *testing.T) {
	until := t0.Add(10 * time.Second)
	tat := gcraHold(time.Time{}, 5, 3, until)
	at, _, _ := gcraTake(tat, t0, 5, 3, forever)
	if !at.Equal(until) {
		t.Fatalf("first slot after a hold at +%v, want +%v", at.Sub(t0), until.Sub(t0))
	}
	// A hold ending before slots already handed out changes nothing.
	late := t0.Add(time.Hour)
	if got := gcraHold(late, 5, 3, until); !got.Equal(late) {
		t.Fatalf("hold moved the record back to %v", got)
	}
}

func TestLimitKey(t *testing.T) {
	for scope, want := range map[string]string{
		"account":        "account",
		"route/ci":       "route.ci",
		"route/a.b c":    "route.=" + b64.EncodeToString([]byte("a.b c")),
		"route/":         "=" + b64.EncodeToString([]byte("route/")),
		"route/route/ci": "route.=" + b64.EncodeToString([]byte("route/ci")),
		"route/~x":       "route.=" + b64.EncodeToString([]byte("~x")),
	} {
		if got := limitKey(scope); got != want {
			t.Errorf("limitKey(%q) = %q, want %q", scope, got, want)
		}
	}
}

// A replica that writes between another's read and write makes the
// latter's write fail its revision check; it reads again and takes the
// next slot, never the same one.
func TestRateLimiterConflict(t *testing.T) {
	_, url := natstest.RunServer(t)
	ctx := context.Background()
	clock := func() time.Time { return t0 }
	open := func() *Store {
		st, err := Open(ctx, Options{URLs: []string{url}, Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	a, b := open().RateLimiter(), open().RateLimiter()
	calls := 0
	var got time.Time
	err := a.update(ctx, limitKey("account"), func(tat, now time.Time) (time.Time, bool) {
		calls++
		if calls == 1 {
			// The other replica takes the first slot meanwhile.
			if at, ok, err := b.Take(ctx, "account", 5, 1, forever); err != nil || !ok || !at.Equal(t0) {
				t.Fatalf("b: %v %v %v", at, ok, err)
			}
		}
		var next time.Time
		got, next, _ = gcraTake(tat, now, 5, 1, forever)
		return next, true
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Fatalf("f ran %d times, want 2 (one conflict)", calls)
	}
	if want := t0.Add(200 * time.Millisecond); !got.Equal(want) {
		t.Fatalf("slot +%v after the conflict, want +%v", got.Sub(t0), want.Sub(t0))
	}
	// The record holds both takes.
	at, _, err := b.Take(ctx, "account", 5, 1, forever)
	if err != nil || !at.Equal(t0.Add(400*time.Millisecond)) {
		t.Fatalf("third slot +%v (%v), want +400ms", at.Sub(t0), err)
	}
}

// Takes waiting at the same time in one process share a round: a replica
// is not held to one take per round trip to NATS.
func TestRateLimiterRounds(t *testing.T) {
	_, url := natstest.RunServer(t)
	st, err := Open(context.Background(), Options{URLs: []string{url}, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	const workers, each = 32, 20
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, ok, err := st.RateLimiter().Take(context.Background(), "account", 1e6, 1, forever); err != nil || !ok {
					t.Errorf("take: %v %v", ok, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	info, err := st.js.Stream(context.Background(), "KV_"+st.n.stream+"_limits")
	if err != nil {
		t.Fatal(err)
	}
	writes := info.CachedInfo().State.LastSeq
	t.Logf("%d takes in %d writes", workers*each, writes)
	if writes >= workers*each/2 {
		t.Fatalf("%d takes took %d writes, want rounds shared by the takes waiting", workers*each, writes)
	}
	// Every take got its own slot all the same.
	at, _, err := st.RateLimiter().Take(context.Background(), "account", 1e6, 1, forever)
	if want := t0.Add(workers * each * time.Microsecond); err != nil || !at.Equal(want) {
		t.Fatalf("next slot +%v (%v), want +%v", at.Sub(t0), err, want.Sub(t0))
	}
}
