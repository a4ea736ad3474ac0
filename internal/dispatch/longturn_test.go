package dispatch_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/operator"
	"github.com/relayd/relayd/internal/operator/fake"
)

// TestLongTurns: a turn whose answer has begun is delivered, never sent
// again, however it ends; a turn that got no answer is retried with the
// same Idempotency-Key. The fake counts the requests.
func TestLongTurns(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		response   string
		timeout    time.Duration
		turn       fake.Turn
		outcome    string // the dispatch_attempts outcome
		requests   int
		retries    int // retries{timeout}
		chatStored bool
	}{
		{name: "stream never silent for 3x the timeout", timeout: 500 * time.Millisecond,
			turn: fake.Turn{Steps: 30, Every: 50 * time.Millisecond}, outcome: "delivered", requests: 1, chatStored: true},
		{name: "stream cut in the middle", timeout: 10 * time.Second,
			turn: fake.Turn{CutAfter: 5}, outcome: "partial", requests: 1, chatStored: true},
		{name: "stream silent after the status line", timeout: time.Second,
			turn: fake.Turn{Steps: 1, Every: time.Hour}, outcome: "partial", requests: 1, chatStored: true},
		{name: "json answer cut halfway", response: operator.ResponseJSON, timeout: 10 * time.Second,
			turn: fake.Turn{CutAfter: 1}, outcome: "partial", requests: 1},
		// The first attempt was taken by the API before it fell silent; the
		// retry's 409 names the chat, which is stored.
		{name: "server silent before the status line", timeout: 200 * time.Millisecond,
			turn: fake.Turn{Wait: time.Hour}, outcome: "conflict", requests: 2, retries: 1, chatStored: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.client = operator.New(operator.Options{BaseURL: h.srv.URL, APIKey: apiKey, Timeout: tc.timeout, Response: tc.response})
			h.fake.FailNext(1, fake.Fault{Turn: &tc.turn})
			h.start()
			m := newMsg("r", "conv", "deploy three variants and score them")
			h.enqueue(m)
			h.settled()

			reqs := h.chatRequests()
			if len(reqs) != tc.requests {
				t.Fatalf("requests = %d, want %d", len(reqs), tc.requests)
			}
			for _, r := range reqs {
				if r.IdempotencyKey != m.ID {
					t.Errorf("Idempotency-Key = %q, want %q", r.IdempotencyKey, m.ID)
				}
			}
			if got := h.attempts("r", tc.outcome); got != 1 {
				t.Errorf("dispatch_attempts{%s} = %v, want 1", tc.outcome, got)
			}
			if got := h.attempts("r", "retry"); got != float64(tc.retries) {
				t.Errorf("dispatch_attempts{retry} = %v, want %d", got, tc.retries)
			}
			if got := h.retries("r", "timeout"); got != float64(tc.retries) {
				t.Errorf("retries{timeout} = %v, want %d", got, tc.retries)
			}
			if dead := h.dead(); len(dead) != 0 {
				t.Errorf("dead letters = %+v", dead)
			}
			st := h.chat("r", "conv")
			if tc.chatStored != (st.ChatID != "") {
				t.Fatalf("stored chat = %+v, want stored=%v", st, tc.chatStored)
			}
			if tc.chatStored && st.ChatID != reqs[0].AssignedChatID {
				t.Errorf("stored chat %q, the turn landed in %q", st.ChatID, reqs[0].AssignedChatID)
			}
			// Nothing is sent later either: a second message continues the
			// chat, and the first is not among the requests again.
			m2 := newMsg("r", "conv", "and report")
			h.enqueue(m2)
			h.settled()
			reqs = h.chatRequests()
			if len(reqs) != tc.requests+1 || reqs[len(reqs)-1].IdempotencyKey != m2.ID {
				t.Fatalf("after a second message: %d requests, last %+v", len(reqs), reqs[len(reqs)-1])
			}
			if tc.chatStored && reqs[len(reqs)-1].ChatID != st.ChatID {
				t.Errorf("second message sent to %q, want the stored chat %q", reqs[len(reqs)-1].ChatID, st.ChatID)
			}
		})
	}
}

// TestShutdownCutsBegunTurn: a shutdown that cuts a turn whose answer has
// begun still counts it delivered; it is not put back to be sent again.
func TestShutdownCutsBegunTurn(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.settings.DrainTimeout = 50 * time.Millisecond
	answered := make(chan struct{}, 1)
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil {
			answered <- struct{}{}
		}
		return resp, err
	})}
	h.client = operator.New(operator.Options{BaseURL: h.srv.URL, APIKey: apiKey, HTTPClient: hc})
	h.fake.FailNext(1, fake.Fault{Turn: &fake.Turn{Steps: 1, Every: time.Hour}})
	h.start()
	h.enqueue(newMsg("r", "conv", "a long turn"))
	<-answered
	// Run reports no drain timeout: nothing in flight was put back.
	if err := h.stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if got := h.pending(); got != 0 {
		t.Fatalf("queued after shutdown = %d, want 0: a begun turn was put back", got)
	}
	if got := h.attempts("r", "partial"); got != 1 {
		t.Fatalf("dispatch_attempts{partial} = %v, want 1", got)
	}
	if n := len(h.chatRequests()); n != 1 {
		t.Fatalf("requests = %d", n)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
