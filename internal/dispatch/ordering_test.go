package dispatch_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/queue"
)

// TestOrderingProperty: many conversations, random API latency and random
// transient failures (including answers lost after the API took the
// message). Every conversation's messages reach the API in enqueue order,
// in one chat, never two requests for a chat at once, nothing lost,
// nothing duplicated.
func TestOrderingProperty(t *testing.T) {
	t.Parallel()
	convs, perConv := 50, 20
	if testing.Short() {
		convs, perConv = 20, 10
	}
	h := newHarness(t)
	h.settings.Concurrency = 8
	h.settings.Retry = dispatch.Retry{
		Initial:     2 * time.Millisecond,
		Max:         20 * time.Millisecond,
		MaxAttempts: 1000, // transient failures must never dead-letter here
	}
	h.fake.SetLatency(0, 20*time.Millisecond)
	h.fake.FailRate(0.2, []fake.Fault{
		{Status: 500},
		{Status: 503, RetryAfter: "0"},
		{Status: 429},
		{Status: 502, Process: true}, // taken, then the answer is lost: the retry gets 409
		{Drop: true},                 // network error
		{Status: 422, Transient: ptr(true)},
	})
	h.start()

	// Enqueued round by round while the dispatcher runs, as webhooks would.
	for i := range perConv {
		var batch []queue.Message
		for c := range convs {
			batch = append(batch, newMsg(fmt.Sprintf("route-%d", c%3), fmt.Sprintf("conv-%02d", c), fmt.Sprintf("conv-%02d msg-%02d", c, i)))
		}
		h.enqueue(batch...)
	}
	h.settled()

	h.checkLeaseGuard()
	if dl := h.dead(); len(dl) != 0 {
		t.Fatalf("%d dead letters, first %+v", len(dl), dl[0].Failure)
	}
	if n := h.fake.Overlaps(); n != 0 {
		if real := realOverlaps(t, h.chatRequests()); real != 0 {
			t.Errorf("the API saw %d overlapping requests for one chat", real)
		}
	}
	chatsOf := map[string][]string{} // conversation -> its chats
	for id, texts := range h.fake.Chats() {
		var conv string
		for i, text := range texts {
			var c, n int
			if _, err := fmt.Sscanf(text, "conv-%d msg-%d", &c, &n); err != nil {
				t.Fatalf("unexpected text %q", text)
			}
			if i == 0 {
				conv = fmt.Sprintf("conv-%02d", c)
			}
			if want := fmt.Sprintf("%s msg-%02d", conv, i); text != want {
				t.Fatalf("chat %s message %d = %q, want %q (order, duplicate or mix-up)", id, i, text, want)
			}
		}
		if len(texts) != perConv {
			t.Errorf("chat %s of %s holds %d messages, want %d", id, conv, len(texts), perConv)
		}
		chatsOf[conv] = append(chatsOf[conv], id)
	}
	if len(chatsOf) != convs {
		t.Errorf("conversations that reached the API = %d, want %d", len(chatsOf), convs)
	}
	for conv, ids := range chatsOf {
		if len(ids) != 1 {
			t.Errorf("%s spread over %d chats", conv, len(ids))
		}
	}
	var delivered, retries float64
	for r := range 3 {
		route := fmt.Sprintf("route-%d", r)
		delivered += h.attempts(route, "delivered") + h.attempts(route, "conflict")
		for _, reason := range []string{"server_error", "rate_limited", "network", "transient"} {
			retries += h.retries(route, reason)
		}
	}
	if delivered != float64(convs*perConv) {
		t.Errorf("delivered = %v, want %d", delivered, convs*perConv)
	}
	if retries == 0 {
		t.Errorf("no retries: the fault injection did not run")
	}
	t.Logf("%d messages, %v retries, %d requests", convs*perConv, retries, len(h.chatRequests()))
}

// realOverlaps recounts the fake's overlaps, leaving out one artifact of the
// fake's bookkeeping: a dropped connection (Drop fault) is closed before the
// fake records the request's end, so the resend of the same message, which
// the client makes only after it saw the connection drop, may be recorded
// as starting before the dropped request "ended". The client's timeout is
// far longer than the fake's latency here, so a dropped request is never
// one the client gave up on while the fake still worked. Any other overlap
// (another message of the chat, or a request that was answered) is real.
func realOverlaps(t *testing.T, reqs []fake.Request) int {
	n := 0
	for i, r := range reqs {
		if !r.Overlapped {
			continue
		}
		artifact := true
		for _, p := range reqs[:i] {
			if p.ChatID != r.ChatID || !p.End.After(r.Start) {
				continue
			}
			if p.Status != 0 || p.IdempotencyKey != r.IdempotencyKey {
				artifact = false
				t.Logf("overlap: seq %d (%s, status %d) started %v before seq %d (%s, status %d) ended",
					r.Seq, r.IdempotencyKey, r.Status, p.End.Sub(r.Start), p.Seq, p.IdempotencyKey, p.Status)
			}
		}
		if !artifact {
			n++
		}
	}
	return n
}
