package reliability

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/operator/fake"
)

// soakDuration is 30s, or RELAYD_SOAK (a Go duration such as 10m).
func soakDuration(t *testing.T) time.Duration {
	v := os.Getenv("RELAYD_SOAK")
	if v == "" {
		return 30 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 10*time.Second {
		t.Fatalf("RELAYD_SOAK=%q: want a duration of at least 10s, such as 10m", v)
	}
	return d
}

// TestSoak drives steady webhooks through relayd while the fake Operator
// flaps: random 429, 5xx, dropped connections and permanent 400s, random
// latency, and short outages. The child's memory and goroutines must stay
// flat, and in the end every accepted event is either delivered or
// dead-lettered with a reason.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test; RELAYD_SOAK=10m runs the long version")
	}
	dur := soakDuration(t)
	api := newOperator(t)
	api.SetLatency(0, 40*time.Millisecond)
	permanent := false
	api.FailRate(0.15, []fake.Fault{
		{Status: http.StatusTooManyRequests},
		{Status: http.StatusInternalServerError},
		{Status: http.StatusBadGateway},
		{Status: http.StatusServiceUnavailable, RetryAfter: "1"},
		{Drop: true},
		{Status: http.StatusBadRequest, Code: "bad_request", Transient: &permanent},
	})
	cfg := writeConfig(t, settings{db: filepath.Join(t.TempDir(), "data", "relayd.db"), apiURL: api.URL,
		attempts: 6, retryMax: 500 * time.Millisecond})
	d := start(t, cfg)
	s := newSender(256)
	s.target(d)

	ctx, stop := context.WithTimeout(context.Background(), dur)
	defer stop()
	wait := s.run(ctx, 4, 20, "soak", 20*time.Millisecond)

	// Short outages every few seconds.
	flapDone := make(chan struct{})
	go func() {
		defer close(flapDone)
		for {
			select {
			case <-ctx.Done():
				api.SetDown(false)
				return
			case <-time.After(5 * time.Second):
			}
			api.SetDown(true)
			time.Sleep(700 * time.Millisecond)
			api.SetDown(false)
		}
	}()

	type sample struct{ rss, goroutines float64 }
	var samples []sample
	tick := time.NewTicker(time.Second)
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
			r, err := rss(d.pid())
			if err != nil {
				t.Fatalf("reading relayd's memory: %v\n%s", err, d.logTail())
			}
			g, err := d.metric("go_goroutines")
			if err != nil {
				t.Fatalf("reading relayd's goroutines: %v\n%s", err, d.logTail())
			}
			samples = append(samples, sample{float64(r), g})
		}
	}
	tick.Stop()
	wait()
	<-flapDone

	// Let everything settle: no more faults, no latency.
	api.ClearFaults()
	api.SetLatency(0, 0)
	eventually(t, 2*time.Minute, "the queue to drain", func() (bool, string) {
		n, err := d.pending()
		return err == nil && n == 0, fmt.Sprintf("pending %d, %v", n, err)
	})
	dead, err := d.deadLetters()
	if err != nil {
		t.Fatal(err)
	}
	d.stop()

	// Every accepted event was delivered or dead-lettered with a reason.
	accepted := s.acceptedIDs()
	got := api.deliveries()
	deadBy := map[string]string{}
	for _, dl := range dead {
		deadBy[dl.Delivery] = dl.Failure.Reason
		if dl.Failure.Reason == "" {
			t.Errorf("dead letter %s (delivery %s) has no reason", dl.ID, dl.Delivery)
		}
	}
	lost := 0
	for id := range accepted {
		if got[id] == 0 && deadBy[id] == "" {
			lost++
			if lost <= 5 {
				t.Errorf("accepted delivery %s was neither delivered nor dead-lettered", id)
			}
		}
	}
	reasons := map[string]int{}
	for _, r := range deadBy {
		reasons[r]++
	}
	t.Logf("%s over %s; %d delivered, %d dead-lettered %v, %d lost", s.summary(), dur, len(got), len(dead), reasons, lost)
	if len(accepted) == 0 {
		t.Fatal("nothing was accepted")
	}

	// Flat: compare the first and last third of the samples taken after a
	// warm-up quarter, with generous bounds for a noisy machine.
	if len(samples) < 8 {
		t.Fatalf("only %d samples", len(samples))
	}
	rest := samples[len(samples)/4:]
	third := len(rest) / 3
	mean := func(ss []sample, f func(sample) float64) float64 {
		var sum float64
		for _, s := range ss {
			sum += f(s)
		}
		return sum / float64(len(ss))
	}
	byRSS := func(s sample) float64 { return s.rss }
	byG := func(s sample) float64 { return s.goroutines }
	rss0, rss1 := mean(rest[:third], byRSS), mean(rest[len(rest)-third:], byRSS)
	g0, g1 := mean(rest[:third], byG), mean(rest[len(rest)-third:], byG)
	t.Logf("RSS %.1f → %.1f MiB, goroutines %.0f → %.0f (first vs last third after warm-up)", rss0/(1<<20), rss1/(1<<20), g0, g1)
	if limit := math.Max(rss0*1.5, rss0+16<<20); rss1 > limit {
		t.Errorf("RSS grew from %.1f to %.1f MiB", rss0/(1<<20), rss1/(1<<20))
	}
	if limit := g0*1.5 + 50; g1 > limit {
		t.Errorf("goroutines grew from %.0f to %.0f", g0, g1)
	}
}
