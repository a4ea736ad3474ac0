package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/operator"
	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/queue"
)

func TestHappyPathCarriesChatID(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	m1 := newMsg("ci-failures", "octo/repo", "CI failed on octo/repo (main)")
	m2 := newMsg("ci-failures", "octo/repo", "CI failed again on octo/repo")
	other := newMsg("ci-failures", "octo/other", "CI failed on octo/other")
	h.enqueue(m1, m2)
	h.enqueue(other)
	h.settled()

	reqs := h.chatRequests()
	if len(reqs) != 3 {
		t.Fatalf("requests = %d, want 3", len(reqs))
	}
	byKey := map[string]fake.Request{}
	for _, r := range reqs {
		byKey[r.IdempotencyKey] = r
		if got, ok := r.Header["X-Response-Format"]; ok { // the stream is the API's default
			t.Errorf("x-response-format = %q sent", got)
		}
	}
	r1, r2, r3 := byKey[m1.ID], byKey[m2.ID], byKey[other.ID]
	if r1.ChatID != "" || r1.AssignedChatID == "" {
		t.Fatalf("first message: sent id %q, assigned %q; want a new chat", r1.ChatID, r1.AssignedChatID)
	}
	if r2.ChatID != r1.AssignedChatID {
		t.Errorf("second message went to chat %q, want the first's %q", r2.ChatID, r1.AssignedChatID)
	}
	if r2.Seq < r1.Seq {
		t.Errorf("second message arrived before the first")
	}
	if r3.ChatID != "" || r3.AssignedChatID == r1.AssignedChatID {
		t.Errorf("another conversation must start its own chat, got sent %q assigned %q", r3.ChatID, r3.AssignedChatID)
	}
	if got := h.fake.Chats()[r1.AssignedChatID]; !slices.Equal(got, []string{m1.Prompt, m2.Prompt}) {
		t.Errorf("chat holds %q", got)
	}
	st := h.chat("ci-failures", "octo/repo")
	if st.ChatID != r1.AssignedChatID || st.Messages != 2 || st.StartedAt.IsZero() || st.Revision == 0 {
		t.Errorf("stored chat = %+v", st)
	}
	if got := h.attempts("ci-failures", "delivered"); got != 3 {
		t.Errorf("delivered attempts = %v, want 3", got)
	}
	if n := testutil.CollectAndCount(h.m.DeliveryLatency); n == 0 {
		t.Errorf("delivery latency not observed")
	}
	if n := testutil.CollectAndCount(h.m.DispatchDuration); n == 0 {
		t.Errorf("dispatch duration not observed")
	}
	if p, _ := h.d.Paused(); p {
		t.Errorf("paused after a happy path")
	}
	h.checkLeaseGuard()
}

// TestAnswers covers every row of the API's status table for one message.
func TestAnswers(t *testing.T) {
	t.Parallel()
	type want struct {
		delivered   bool   // acked (else dead-lettered)
		outcome     string // the final dispatch_attempts outcome
		requests    int
		retryReason string
		retries     int
		deadReason  string
		deadStatus  int
		deadCode    string
		deadAtt     int  // attempts recorded in the dead letter
		chatStored  bool // a chat id was learned
	}
	cases := []struct {
		name        string
		faults      []fake.Fault
		maxAttempts int
		want        want
	}{
		{name: "200", want: want{delivered: true, outcome: "delivered", requests: 1, chatStored: true}},
		{name: "201", faults: []fake.Fault{{Status: 201}},
			want: want{delivered: true, outcome: "delivered", requests: 1, chatStored: true}},
		{name: "202 without body", faults: []fake.Fault{{Status: 202, NoBody: true}},
			want: want{delivered: true, outcome: "delivered", requests: 1}},
		{name: "409 after an answer was lost", faults: []fake.Fault{{Status: 500, Process: true}},
			want: want{delivered: true, outcome: "conflict", requests: 2, retryReason: "server_error", retries: 1, chatStored: true}},
		{name: "429 without Retry-After", faults: []fake.Fault{{Status: 429}},
			want: want{delivered: true, outcome: "delivered", requests: 2, retryReason: "rate_limited", retries: 1, chatStored: true}},
		{name: "5xx then success", faults: []fake.Fault{{Status: 500}, {Status: 502}, {Status: 503}},
			want: want{delivered: true, outcome: "delivered", requests: 4, retryReason: "server_error", retries: 3, chatStored: true}},
		{name: "network error then success", faults: []fake.Fault{{Drop: true}},
			want: want{delivered: true, outcome: "delivered", requests: 2, retryReason: "network", retries: 1, chatStored: true}},
		{name: "transient:true", faults: []fake.Fault{{Status: 422, Code: "busy", Transient: ptr(true)}},
			want: want{delivered: true, outcome: "delivered", requests: 2, retryReason: "transient", retries: 1, chatStored: true}},
		{name: "transient:false on 4xx", faults: []fake.Fault{{Status: 422, Code: "prompt_rejected", Transient: ptr(false)}},
			want: want{outcome: "dead", requests: 1, deadReason: "permanent", deadStatus: 422, deadCode: "prompt_rejected", deadAtt: 1}},
		{name: "transient:false on 5xx", faults: []fake.Fault{{Status: 503, Code: "plan_disabled", Transient: ptr(false)}},
			want: want{outcome: "dead", requests: 1, deadReason: "permanent", deadStatus: 503, deadCode: "plan_disabled", deadAtt: 1}},
		{name: "other 4xx without transient", faults: []fake.Fault{{Status: 418, Body: `{"code":"teapot","message":"short and stout"}`}},
			want: want{outcome: "dead", requests: 1, deadReason: "permanent", deadStatus: 418, deadCode: "teapot", deadAtt: 1}},
		{name: "400", faults: []fake.Fault{{Status: 400, Code: "invalid_message"}},
			want: want{outcome: "dead", requests: 1, deadReason: "bad_request", deadStatus: 400, deadCode: "invalid_message", deadAtt: 1}},
		{name: "405", faults: []fake.Fault{{Status: 405}},
			want: want{outcome: "dead", requests: 1, deadReason: "method_not_allowed", deadStatus: 405, deadCode: "method_not_allowed", deadAtt: 1}},
		{name: "403", faults: []fake.Fault{{Status: 403}},
			want: want{outcome: "dead", requests: 1, deadReason: "forbidden", deadStatus: 403, deadCode: "forbidden", deadAtt: 1}},
		{name: "404 for a new chat", faults: []fake.Fault{{Status: 404}},
			want: want{outcome: "dead", requests: 1, deadReason: "not_found", deadStatus: 404, deadCode: "not_found", deadAtt: 1}},
		{name: "max attempts", maxAttempts: 3, faults: []fake.Fault{{Status: 503}, {Status: 500}, {Status: 503, Code: "overloaded"}},
			want: want{outcome: "dead", requests: 3, retryReason: "server_error", retries: 2, deadReason: "max_attempts", deadStatus: 503, deadCode: "overloaded", deadAtt: 3}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			if tc.maxAttempts > 0 {
				h.settings.Retry.MaxAttempts = tc.maxAttempts
			}
			for _, f := range tc.faults {
				h.fake.FailNext(1, f)
			}
			h.start()
			m := newMsg("r", "conv", "prompt for "+tc.name)
			h.enqueue(m)
			h.settled()
			w := tc.want

			reqs := h.chatRequests()
			if len(reqs) != w.requests {
				t.Errorf("requests = %d, want %d", len(reqs), w.requests)
			}
			for _, r := range reqs {
				if r.IdempotencyKey != m.ID {
					t.Errorf("Idempotency-Key = %q, want %q", r.IdempotencyKey, m.ID)
				}
			}
			if got := h.attempts("r", w.outcome); got != 1 {
				t.Errorf("dispatch_attempts{%s} = %v, want 1", w.outcome, got)
			}
			if w.retries > 0 {
				if got := h.retries("r", w.retryReason); got != float64(w.retries) {
					t.Errorf("retries{%s} = %v, want %d", w.retryReason, got, w.retries)
				}
			}
			st := h.chat("r", "conv")
			if w.chatStored != (st.ChatID != "") {
				t.Errorf("stored chat = %+v, want stored=%v", st, w.chatStored)
			}
			if w.chatStored {
				if _, ok := h.fake.Chats()[st.ChatID]; !ok {
					t.Errorf("stored chat %q unknown to the API", st.ChatID)
				}
			}
			dead := h.dead()
			if w.delivered {
				if len(dead) != 0 {
					t.Fatalf("dead letters = %+v, want none", dead)
				}
				return
			}
			if len(dead) != 1 {
				t.Fatalf("dead letters = %d, want 1", len(dead))
			}
			dl := dead[0]
			if dl.ID != m.ID || dl.Prompt != m.Prompt || dl.Delivery != m.Delivery {
				t.Errorf("dead letter lost the message: %+v", dl.Message)
			}
			if dl.Failure.Reason != w.deadReason || dl.Failure.Status != w.deadStatus || dl.Failure.Code != w.deadCode {
				t.Errorf("dead failure = %+v, want reason %s status %d code %s", dl.Failure, w.deadReason, w.deadStatus, w.deadCode)
			}
			if dl.Failure.Message == "" || dl.Failure.At.IsZero() || dl.DeadAt.IsZero() {
				t.Errorf("dead letter lacks message or timestamps: %+v", dl)
			}
			if dl.Attempts != w.deadAtt {
				t.Errorf("dead letter attempts = %d, want %d", dl.Attempts, w.deadAtt)
			}
			if got := h.deadCount("r", w.deadReason); got != 1 {
				t.Errorf("dead_letters{%s} = %v, want 1", w.deadReason, got)
			}
			if p, _ := h.d.Paused(); p {
				t.Errorf("one dead letter paused dispatch")
			}
		})
	}
}

// A dead-lettered head lets its conversation move on.
func TestDeadHeadConversationMovesOn(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.fake.FailNext(1, fake.Fault{Status: 400})
	h.start()
	m1, m2 := newMsg("r", "c", "first, rejected"), newMsg("r", "c", "second")
	h.enqueue(m1, m2)
	h.settled()
	if len(h.dead()) != 1 || h.dead()[0].ID != m1.ID {
		t.Fatalf("dead = %+v", h.dead())
	}
	if st := h.chat("r", "c"); st.ChatID == "" || !slices.Equal(h.fake.Chats()[st.ChatID], []string{m2.Prompt}) {
		t.Errorf("second message not delivered into a chat: %+v", st)
	}
}

// 429 with Retry-After: 2 is not retried sooner, and holds back every
// conversation of the account for that long.
func TestRateLimitedHonoursRetryAfterAccountWide(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.fake.FailNext(1, fake.Fault{Status: 429, RetryAfter: "2"})
	h.start()
	a := newMsg("r", "a", "conversation a")
	h.enqueue(a)
	h.waitFor("the 429 to be handled", func() bool { return h.retries("r", "rate_limited") == 1 })
	b := newMsg("other-route", "b", "conversation b")
	h.enqueue(b)
	h.settled()

	var first, retry, other fake.Request
	for _, r := range h.chatRequests() {
		switch {
		case r.IdempotencyKey == a.ID && r.Status == 429:
			first = r
		case r.IdempotencyKey == a.ID:
			retry = r
		case r.IdempotencyKey == b.ID:
			other = r
		}
	}
	if first.Seq == 0 || retry.Seq == 0 || other.Seq == 0 {
		t.Fatalf("missing requests: %+v", h.chatRequests())
	}
	if d := retry.Start.Sub(first.Start); d < 2*time.Second {
		t.Errorf("retried %v after a 429 with Retry-After: 2", d)
	}
	if d := other.Start.Sub(first.Start); d < 2*time.Second {
		t.Errorf("another conversation was sent %v after the account's 429 with Retry-After: 2", d)
	}
	if w := testutil.ToFloat64(h.m.RateLimitWait.WithLabelValues("account")); w <= 0 {
		t.Errorf("rate_limit_wait{account} = %v, want > 0", w)
	}
}

func TestChatGoneStartsNewChat(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	m1 := newMsg("r", "c", "first")
	h.enqueue(m1)
	h.settled()
	old := h.chat("r", "c")
	h.fake.ForgetChat(old.ChatID)

	m2 := newMsg("r", "c", "second, after the chat was deleted")
	h.enqueue(m2)
	h.settled()

	reqs := h.chatRequests()
	if len(reqs) != 3 {
		t.Fatalf("requests = %d, want 3 (first, 404, resend)", len(reqs))
	}
	if reqs[1].ChatID != old.ChatID || reqs[1].Status != 404 {
		t.Errorf("second request: sent %q status %d, want %q 404", reqs[1].ChatID, reqs[1].Status, old.ChatID)
	}
	if reqs[2].ChatID != "" || reqs[2].IdempotencyKey != m2.ID || reqs[2].AssignedChatID == "" {
		t.Errorf("resend = %+v, want the same message as a new chat", reqs[2])
	}
	st := h.chat("r", "c")
	if st.ChatID != reqs[2].AssignedChatID || st.Messages != 1 {
		t.Errorf("stored chat = %+v, want the new chat with 1 message", st)
	}
	if got := h.attempts("r", "chat_gone"); got != 1 {
		t.Errorf("dispatch_attempts{chat_gone} = %v, want 1", got)
	}
	if len(h.dead()) != 0 || h.retries("r", "server_error") != 0 {
		t.Errorf("chat gone must neither dead-letter nor retry")
	}
}

func TestConversationReset(t *testing.T) {
	t.Parallel()
	t.Run("messages", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		h.settings.Routes = map[string]dispatch.RouteSettings{"r": {Reset: &dispatch.ConversationReset{Messages: 2}}}
		h.start()
		m1, m2, m3 := newMsg("r", "c", "one"), newMsg("r", "c", "two"), newMsg("r", "c", "three")
		h.enqueue(m1, m2, m3)
		h.settled()
		reqs := h.chatRequests()
		if len(reqs) != 3 {
			t.Fatalf("requests = %d", len(reqs))
		}
		if reqs[1].ChatID != reqs[0].AssignedChatID || reqs[2].ChatID != "" {
			t.Errorf("sent ids %q %q %q, want new, continued, new", reqs[0].ChatID, reqs[1].ChatID, reqs[2].ChatID)
		}
		st := h.chat("r", "c")
		if st.ChatID != reqs[2].AssignedChatID || st.ChatID == reqs[0].AssignedChatID || st.Messages != 1 {
			t.Errorf("stored chat = %+v", st)
		}
	})
	t.Run("after", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		h.settings.Routes = map[string]dispatch.RouteSettings{"r": {Reset: &dispatch.ConversationReset{After: time.Hour}}}
		h.start()
		h.enqueue(newMsg("r", "c", "one"))
		h.settled()
		h.enqueue(newMsg("r", "c", "two, within the hour"))
		h.settled()
		st := h.chat("r", "c")
		if st.Messages != 2 {
			t.Fatalf("stored chat = %+v, want 2 messages in one chat", st)
		}
		// Age the chat past `after`.
		st.StartedAt = time.Now().Add(-2 * time.Hour)
		if err := h.store.PutChat(context.Background(), "r", "c", st); err != nil {
			t.Fatal(err)
		}
		h.enqueue(newMsg("r", "c", "three, a day later"))
		h.settled()
		reqs := h.chatRequests()
		if len(reqs) != 3 || reqs[1].ChatID == "" || reqs[2].ChatID != "" {
			t.Fatalf("requests = %+v, want the third as a new chat", reqs)
		}
		if got := h.chat("r", "c"); got.ChatID != reqs[2].AssignedChatID || got.Messages != 1 || time.Since(got.StartedAt) > time.Minute {
			t.Errorf("stored chat after reset = %+v", got)
		}
	})
}

// A restart in the middle of a backoff keeps the attempts and the next
// attempt time.
func TestRestartMidBackoffKeepsAttempts(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.settings.Retry.MaxAttempts = 2
	h.fake.FailNext(1, fake.Fault{Status: 503, RetryAfter: "2"})
	h.start()
	m := newMsg("r", "c", "survives a restart")
	h.enqueue(m)
	h.waitFor("the retry to be scheduled", func() bool { return h.retries("r", "server_error") == 1 })
	first := h.chatRequests()[0]

	h.restart()

	// The persisted message, leased straight from the reopened store: Next
	// hands it out only once due.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	l, err := h.store.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leasedAt := time.Now()
	got := l.Message()
	if got.ID != m.ID || got.Attempts != 1 || got.LastStatus != 503 {
		t.Fatalf("after restart: id %s attempts %d last status %d, want %s 1 503", got.ID, got.Attempts, got.LastStatus, m.ID)
	}
	if got.NextAttemptAt.Before(first.Start.Add(2 * time.Second)) {
		t.Errorf("next attempt %v is sooner than Retry-After allows (first try %v)", got.NextAttemptAt, first.Start)
	}
	if leasedAt.Before(got.NextAttemptAt) {
		t.Errorf("leased at %v, before its next attempt time %v", leasedAt, got.NextAttemptAt)
	}
	if err := l.Release(ctx, got.NextAttemptAt); err != nil {
		t.Fatal(err)
	}

	// The second failure is the last allowed attempt: attempts were not reset.
	h.fake.FailNext(1, fake.Fault{Status: 503})
	h.start()
	h.settled()
	dead := h.dead()
	if len(dead) != 1 || dead[0].Failure.Reason != "max_attempts" || dead[0].Attempts != 2 {
		t.Fatalf("dead = %+v, want max_attempts after 2 attempts", dead)
	}
	reqs := h.chatRequests()
	if len(reqs) != 2 || reqs[1].Start.Before(got.NextAttemptAt) {
		t.Errorf("requests = %d, second at %v, want 2 with the second not before %v", len(reqs), reqs[len(reqs)-1].Start, got.NextAttemptAt)
	}
}

// 401 pauses all dispatch without losing anything, and dispatch resumes by
// itself when the API accepts the key again.
func TestUnauthorizedPausesAndResumes(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.fake.SetKeys([]string{"ck_live_someone_else"})
	h.start()
	var msgs []queue.Message
	for i := range 6 {
		msgs = append(msgs, newMsg("r", fmt.Sprintf("c%d", i%3), fmt.Sprintf("message %d", i)))
	}
	h.enqueue(msgs...)
	h.waitFor("dispatch to pause", func() bool { p, _ := h.d.Paused(); return p })
	_, reason := h.d.Paused()
	if !strings.Contains(reason, "401") {
		t.Errorf("pause reason %q does not name the 401", reason)
	}
	if g := testutil.ToFloat64(h.m.DispatchPaused); g != 1 {
		t.Errorf("relayd_dispatch_paused = %v, want 1", g)
	}
	// Let the prober fail a few times (every 20..200ms).
	time.Sleep(150 * time.Millisecond)
	if n := len(h.chatRequests()); n > h.settings.Concurrency {
		t.Errorf("%d requests sent while paused, want at most one per worker (%d)", n, h.settings.Concurrency)
	}
	if got := h.pending(); got != len(msgs) {
		t.Errorf("queued while paused = %d, want %d", got, len(msgs))
	}
	if len(h.dead()) != 0 {
		t.Errorf("401 dead-lettered messages")
	}
	if got := h.attempts("r", "paused"); got < 1 {
		t.Errorf("dispatch_attempts{paused} = %v", got)
	}

	h.fake.SetKeys([]string{apiKey})
	h.settled()
	if p, _ := h.d.Paused(); p {
		t.Errorf("still paused after the key works again")
	}
	if g := testutil.ToFloat64(h.m.DispatchPaused); g != 0 {
		t.Errorf("relayd_dispatch_paused = %v, want 0", g)
	}
	for i := range 3 {
		st := h.chat("r", fmt.Sprintf("c%d", i))
		want := []string{msgs[i].Prompt, msgs[i+3].Prompt}
		if got := h.fake.Chats()[st.ChatID]; !slices.Equal(got, want) {
			t.Errorf("conversation c%d = %q, want %q", i, got, want)
		}
	}
	// A 401 is not an attempt: every message went through on its first.
	for _, rec := range h.logRecords() {
		if rec["msg"] == "delivered" && rec["attempts"] != float64(1) {
			t.Errorf("delivered after %v counted attempts, want 1", rec["attempts"])
		}
	}
}

// After a reload with a new key, Resume probes at once.
func TestResumeAfterKeyReload(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.client.SetAPIKey("ck_live_revoked")
	h.fake.SetKeys([]string{apiKey})
	// Probes so rare that only Resume can end the pause within the test.
	h.opts.ProbeInitial, h.opts.ProbeMax = time.Hour, time.Hour
	h.start()
	h.enqueue(newMsg("r", "c", "waits for a good key"))
	h.waitFor("dispatch to pause", func() bool { p, _ := h.d.Paused(); return p })

	h.client.SetAPIKey(apiKey) // what a reload does
	h.d.Resume()
	h.settled()
	if p, _ := h.d.Paused(); p {
		t.Errorf("still paused")
	}
	if len(h.dead()) != 0 {
		t.Errorf("dead letters after a 401")
	}
}

// 403 on every route pauses dispatch after a few dead letters; a refused
// trial keeps its message; dispatch resumes once a trial is accepted.
func TestForbiddenEverywherePauses(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.settings.Concurrency = 1
	h.fake.FailNext(4, fake.Fault{Status: 403}) // three dead letters, then a refused trial
	var msgs []queue.Message
	for i := range 6 {
		msgs = append(msgs, newMsg([]string{"a", "b"}[i%2], fmt.Sprintf("c%d", i), fmt.Sprintf("m%d", i)))
	}
	h.enqueue(msgs...)
	h.start()
	h.settled()

	dead := h.dead()
	if len(dead) != 3 {
		t.Fatalf("dead letters = %d, want 3 (then the pause keeps the rest)", len(dead))
	}
	for _, dl := range dead {
		if dl.Failure.Reason != "forbidden" || dl.Failure.Status != 403 {
			t.Errorf("dead letter failure = %+v", dl.Failure)
		}
	}
	if !h.logged("dispatch paused: every route is answered 403; probing the API until a trial message is accepted") {
		t.Errorf("no pause logged")
	}
	if got := h.attempts("a", "paused") + h.attempts("b", "paused"); got != 1 {
		t.Errorf("refused trials = %v, want 1", got)
	}
	if got := h.attempts("a", "delivered") + h.attempts("b", "delivered"); got != 3 {
		t.Errorf("delivered = %v, want 3", got)
	}
	if p, _ := h.d.Paused(); p {
		t.Errorf("still paused")
	}
}

// 403 on one route while another route is fine does not pause.
func TestForbiddenOneRouteDoesNotPause(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.settings.Concurrency = 1
	h.start()
	h.enqueue(newMsg("ok", "c", "fine"))
	h.settled()
	h.fake.FailNext(4, fake.Fault{Status: 403})
	for i := range 4 {
		h.enqueue(newMsg("locked", fmt.Sprintf("c%d", i), "refused"))
	}
	h.settled()
	h.enqueue(newMsg("ok", "c", "still fine"))
	h.settled()
	if n := len(h.dead()); n != 4 {
		t.Errorf("dead letters = %d, want 4", n)
	}
	if h.logged("dispatch paused: every route is answered 403; probing the API until a trial message is accepted") {
		t.Errorf("paused although route ok is answered")
	}
	if got := h.attempts("ok", "delivered"); got != 2 {
		t.Errorf("delivered on ok = %v", got)
	}
}

// A conversation stuck in a long backoff blocks nothing else.
func TestNoHeadOfLineBlocking(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.settings.Concurrency = 2
	h.fake.FailNext(1, fake.Fault{Status: 503, RetryAfter: "3600"})
	h.start()
	stuck1, stuck2 := newMsg("r", "stuck", "stuck head"), newMsg("r", "stuck", "behind the stuck head")
	h.enqueue(stuck1, stuck2)
	h.waitFor("the stuck head to back off", func() bool { return h.retries("r", "server_error") == 1 })
	var others []queue.Message
	for i := range 20 {
		others = append(others, newMsg([]string{"r", "r2"}[i%2], fmt.Sprintf("c%d", i%10), fmt.Sprintf("other %d", i)))
	}
	h.enqueue(others...)
	h.waitFor("the other conversations", func() bool {
		return h.attempts("r", "delivered")+h.attempts("r2", "delivered") == float64(len(others))
	})
	h.waitFor("only the stuck conversation's 2 messages left, delayed", func() bool {
		return h.stats() == queue.Stats{Delayed: 2}
	})
	for _, r := range h.chatRequests() {
		if r.IdempotencyKey == stuck2.ID {
			t.Errorf("a message behind a backing-off head was sent")
		}
	}
}

func TestRateLimits(t *testing.T) {
	t.Parallel()
	t.Run("account", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		h.settings.RateLimit = dispatch.RateLimit{PerSecond: 10, Burst: 2}
		h.start()
		const n = 17
		for i := range n {
			h.enqueue(newMsg([]string{"a", "b"}[i%2], fmt.Sprintf("c%d", i), "x"))
		}
		h.settled()
		span := requestSpan(h.chatRequests())
		// n requests from a bucket of 2 refilled at 10/s take at least
		// (n-2)/10 s; allow 10% for clock and scheduling noise.
		if min := time.Duration(float64(n-2) / 10 * 0.9 * float64(time.Second)); span < min {
			t.Errorf("%d requests took %v, want at least %v at 10/s", n, span, min)
		}
		if w := testutil.ToFloat64(h.m.RateLimitWait.WithLabelValues("account")); w <= 0 {
			t.Errorf("rate_limit_wait{account} = %v", w)
		}
	})
	t.Run("route", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		h.settings.Routes = map[string]dispatch.RouteSettings{"slow": {RateLimit: &dispatch.RateLimit{PerSecond: 4, Burst: 1}}}
		h.start()
		const n = 10
		var slow, fast []queue.Message
		for i := range n {
			slow = append(slow, newMsg("slow", fmt.Sprintf("c%d", i), "slow"))
			fast = append(fast, newMsg("fast", fmt.Sprintf("c%d", i), "fast"))
		}
		h.enqueue(slow...)
		h.enqueue(fast...)
		h.settled()
		var sr, fr []fake.Request
		for _, r := range h.chatRequests() {
			if r.Text == "slow" {
				sr = append(sr, r)
			} else {
				fr = append(fr, r)
			}
		}
		if span, min := requestSpan(sr), time.Duration(float64(n-1)/4*0.9*float64(time.Second)); span < min {
			t.Errorf("slow route: %d requests took %v, want at least %v at 4/s", n, span, min)
		}
		// The slow route's backlog must not take every worker: the fast
		// route is done long before the slow one.
		if last := fr[len(fr)-1].Start; !last.Before(sr[len(sr)-1].Start) {
			t.Errorf("fast route finished at %v, after the slow route's last request %v", last, sr[len(sr)-1].Start)
		}
		if w := testutil.ToFloat64(h.m.RateLimitWait.WithLabelValues("route")); w <= 0 {
			t.Errorf("rate_limit_wait{route} = %v", w)
		}
	})
}

func requestSpan(rs []fake.Request) time.Duration {
	if len(rs) < 2 {
		return 0
	}
	first, last := rs[0].Start, rs[0].Start
	for _, r := range rs {
		if r.Start.Before(first) {
			first = r.Start
		}
		if r.Start.After(last) {
			last = r.Start
		}
	}
	return last.Sub(first)
}

// Shutdown: requests in flight finish within the drain timeout; the rest
// stays queued.
func TestShutdownDrainsInFlight(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.settings.Concurrency = 2
	h.fake.SetLatency(300*time.Millisecond, 300*time.Millisecond)
	h.start()
	for i := range 6 {
		h.enqueue(newMsg("r", fmt.Sprintf("c%d", i), "x"))
	}
	h.waitFor("two requests in flight", func() bool { return len(h.chatRequests()) == 2 })
	if err := h.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	reqs := h.chatRequests()
	if len(reqs) != 2 {
		t.Fatalf("requests = %d, want 2", len(reqs))
	}
	for _, r := range reqs {
		if r.Status != 200 {
			t.Errorf("in-flight request ended %d, want it to finish", r.Status)
		}
	}
	if got := h.attempts("r", "delivered"); got != 2 {
		t.Errorf("delivered = %v, want 2", got)
	}
	if got := h.pending(); got != 4 {
		t.Errorf("queued after shutdown = %d, want 4", got)
	}
}

// Past the drain timeout, requests are cancelled and their messages stay
// queued with no attempt counted.
func TestShutdownCancelsAfterDrainTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.settings.Concurrency = 2
	h.settings.DrainTimeout = 100 * time.Millisecond
	h.fake.SetLatency(time.Minute, time.Minute)
	h.start()
	for i := range 4 {
		h.enqueue(newMsg("r", fmt.Sprintf("c%d", i), fmt.Sprintf("m%d", i)))
	}
	h.waitFor("two requests in flight", func() bool { return len(h.chatRequests()) == 2 })
	if err := h.stop(); !errors.Is(err, dispatch.ErrDrainTimeout) {
		t.Fatalf("Run = %v, want ErrDrainTimeout", err)
	}
	if got := h.pending(); got != 4 {
		t.Fatalf("queued after shutdown = %d, want 4", got)
	}

	h.restart()
	h.fake.SetLatency(0, 0)
	h.start()
	h.settled()
	if n := len(h.dead()); n != 0 {
		t.Errorf("dead letters = %d", n)
	}
	if n := len(h.fake.Chats()); n != 4 {
		t.Errorf("chats = %d, want 4 (no duplicates, nothing lost)", n)
	}
	for _, rec := range h.logRecords() {
		if rec["msg"] == "delivered" && rec["attempts"] != float64(1) {
			t.Errorf("a cancelled request was counted as an attempt: %v", rec)
		}
	}
}

// countingChatter wraps the real client to count concurrent requests.
type countingChatter struct {
	dispatch.Chatter
	mu       sync.Mutex
	cur, max int
}

func (c *countingChatter) Chat(ctx context.Context, r operator.ChatRequest) (operator.ChatResponse, error) {
	c.mu.Lock()
	c.cur++
	c.max = max(c.max, c.cur)
	c.mu.Unlock()
	defer func() { c.mu.Lock(); c.cur--; c.mu.Unlock() }()
	return c.Chatter.Chat(ctx, r)
}

func (c *countingChatter) takeMax() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.max
	c.max = c.cur
	return m
}

// Apply resizes the worker pool of a running dispatcher.
func TestApplyConcurrency(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.settings.Concurrency = 1
	h.fake.SetLatency(20*time.Millisecond, 20*time.Millisecond)
	h.start()
	cc := &countingChatter{Chatter: h.client}
	h.d.SetChatter(cc)
	batch := func(tag string, n int) {
		for i := range n {
			h.enqueue(newMsg("r", fmt.Sprintf("%s-%d", tag, i), tag))
		}
		h.settled()
	}
	batch("one", 8)
	if m := cc.takeMax(); m != 1 {
		t.Errorf("max in flight with concurrency 1 = %d", m)
	}
	s := h.settings
	s.Concurrency = 4
	h.d.Apply(s)
	batch("four", 24)
	if m := cc.takeMax(); m < 2 || m > 4 {
		t.Errorf("max in flight with concurrency 4 = %d, want 2..4", m)
	}
	s.Concurrency = 2
	h.d.Apply(s)
	time.Sleep(50 * time.Millisecond) // surplus workers stop once idle
	batch("two", 12)
	if m := cc.takeMax(); m > 2 {
		t.Errorf("max in flight with concurrency 2 = %d", m)
	}
}

// Every log line about a message names it; no line shows the key, and the
// prompt appears only at debug level.
func TestLogs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.fake.FailNext(1, fake.Fault{Status: 500})
	h.fake.FailNext(1, fake.Fault{Status: 400})
	h.start()
	const secretPrompt = "prompt-text-that-must-stay-at-debug"
	h.enqueue(newMsg("r", "a", secretPrompt), newMsg("r", "b", secretPrompt), newMsg("r", "c", secretPrompt))
	h.settled()
	if strings.Contains(string(h.logs.Bytes()), apiKey) {
		t.Fatalf("the API key appears in the logs")
	}
	n := 0
	for _, rec := range h.logRecords() {
		if _, ok := rec["message_id"]; ok {
			n++
			if rec["route"] != "r" || rec["delivery"] == nil || rec["delivery"] == "" {
				t.Errorf("log line lacks route or delivery: %v", rec)
			}
		}
		if rec["level"] != "DEBUG" {
			for k, v := range rec {
				if s, ok := v.(string); ok && strings.Contains(s, secretPrompt) {
					t.Errorf("prompt logged at %v in %q: %v", rec["level"], k, rec)
				}
			}
		}
	}
	if n < 3 {
		t.Errorf("only %d log lines carry a message_id", n)
	}
}

// With a zero drain timeout and nothing in flight, Run stops cleanly.
func TestStopIdleWithZeroDrain(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.settings.DrainTimeout = 0
	h.start()
	h.enqueue(newMsg("r", "c", "x"))
	h.settled()
	if err := h.stop(); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}

func TestRunTwice(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	d := dispatch.New(h.store, h.store, h.client, h.settings, dispatch.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- d.Run(ctx) }()
	}
	// Exactly one of two concurrent Runs is refused at once.
	if err := <-errs; err == nil {
		t.Error("a second concurrent Run must fail")
	}
	cancel()
	if err := <-errs; err != nil {
		t.Errorf("the running Run = %v, want nil", err)
	}
}

// Closing the store under a running dispatcher ends Run with the error.
func TestRunEndsWhenQueueCloses(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	if err := h.store.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-h.done:
		if !errors.Is(err, queue.ErrClosed) {
			t.Errorf("Run = %v, want queue.ErrClosed", err)
		}
		h.cancel()
		h.cancel = nil
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after the queue closed")
	}
	h.store = nil
}
