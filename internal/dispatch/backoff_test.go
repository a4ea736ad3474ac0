package dispatch_test

import (
	"testing"
	"time"

	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/operator/fake"
)

func TestBackoffFullJitter(t *testing.T) {
	p := dispatch.Retry{Initial: time.Second, Max: 10 * time.Minute, MaxAttempts: 20}
	cases := []struct {
		attempt int
		rnd     float64
		want    time.Duration
	}{
		{1, 0, 0},
		{1, 0.5, 500 * time.Millisecond},
		{2, 0.5, time.Second},
		{3, 0.25, time.Second},
		{4, 1.0 / 8, time.Second},
		{10, 0.5, 256 * time.Second}, // 512s window
		{11, 0.5, 5 * time.Minute},   // 1024s capped at 600s
		{60, 0.5, 5 * time.Minute},   // no overflow
		{1000, 0.5, 5 * time.Minute}, //
		{0, 0.5, 500 * time.Millisecond},
		{1, -1, 0},
	}
	for _, tc := range cases {
		if got := dispatch.Backoff(p, tc.attempt, tc.rnd); got != tc.want {
			t.Errorf("Backoff(attempt %d, rnd %v) = %v, want %v", tc.attempt, tc.rnd, got, tc.want)
		}
	}
	// Full jitter: always within [0, min(max, initial·2^(n-1))).
	for attempt := 1; attempt <= 30; attempt++ {
		window := min(time.Second<<(attempt-1), 10*time.Minute)
		for _, rnd := range []float64{0, 0.001, 0.3, 0.999999, 1} {
			got := dispatch.Backoff(p, attempt, rnd)
			if got < 0 || got >= window {
				t.Errorf("Backoff(attempt %d, rnd %v) = %v, outside [0, %v)", attempt, rnd, got, window)
			}
		}
	}
}

func TestRetryDelay(t *testing.T) {
	p := dispatch.Retry{Initial: time.Second, Max: time.Minute}
	cases := []struct {
		name       string
		attempt    int
		retryAfter time.Duration
		rnd        float64
		want       time.Duration
	}{
		{"backoff without Retry-After", 3, 0, 0.5, 2 * time.Second},
		{"Retry-After exactly, even when the backoff is longer", 10, 2 * time.Second, 0.9, 2 * time.Second},
		{"Retry-After exactly, even when jitter is 0", 1, 2 * time.Second, 0, 2 * time.Second},
		{"Retry-After wins over retry.max", 1, 5 * time.Minute, 0.5, 5 * time.Minute},
		{"absurd Retry-After bounded", 1, 1000 * time.Hour, 0.5, 24 * time.Hour},
	}
	for _, tc := range cases {
		if got := dispatch.RetryDelay(p, tc.attempt, tc.retryAfter, tc.rnd); got != tc.want {
			t.Errorf("%s: RetryDelay = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The injected jitter source drives the delay the store is given.
func TestInjectedJitter(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.settings.Retry = dispatch.Retry{Initial: 400 * time.Millisecond, Max: time.Hour, MaxAttempts: 5}
	h.opts.Rand = func() float64 { return 0.5 } // 200ms for the first retry
	h.fake.FailNext(1, fake.Fault{Status: 503})
	h.start()
	h.enqueue(newMsg("r", "c", "jitter"))
	h.settled()
	reqs := h.chatRequests()
	if len(reqs) != 2 {
		t.Fatalf("requests = %d", len(reqs))
	}
	if d := reqs[1].Start.Sub(reqs[0].Start); d < 200*time.Millisecond {
		t.Errorf("retried after %v, want at least the 200ms the jitter chose", d)
	}
}
