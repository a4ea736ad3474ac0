package dispatch_test

import (
	"testing"
	"time"

	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/operator/fake"
)

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
