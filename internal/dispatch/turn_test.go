package dispatch_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/queue/natsq"
	"github.com/relayd/relayd/internal/queue/natsq/natstest"
)

// turnHarness is a harness whose store forms turns by policy.
func turnHarness(t *testing.T, p queue.TurnPolicy, rs dispatch.RouteSettings) *harness {
	t.Helper()
	h := newHarness(t)
	_ = h.store.Close()
	h.turns = func(string) queue.TurnPolicy { return p }
	h.openStore()
	h.settings.Routes = map[string]dispatch.RouteSettings{"r": rs}
	return h
}

func histogram(t *testing.T, h *harness, route string) (count uint64, sum float64) {
	t.Helper()
	var m dto.Metric
	if err := h.m.TurnEvents.WithLabelValues(route).(interface{ Write(*dto.Metric) error }).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

func TestTurnCoalescesDueMessages(t *testing.T) {
	h := turnHarness(t, queue.TurnPolicy{MaxEvents: 20}, dispatch.RouteSettings{})
	var want []string
	var batch []queue.Message
	for i := range 5 {
		p := fmt.Sprintf("job %d failed", i)
		want = append(want, p)
		batch = append(batch, newMsg("r", "acme/app", p))
	}
	// One batch: stored together, so all are due when the dispatcher starts.
	h.enqueue(batch...)
	h.start()
	h.settled()
	reqs := h.chatRequests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want one turn", len(reqs))
	}
	if got, w := reqs[0].Text, "5 events:\n"+strings.Join(want, "\n---\n"); got != w {
		t.Fatalf("turn text\n%q\nwant\n%q", got, w)
	}
	if n := testutil.ToFloat64(h.m.Turns.WithLabelValues("r")); n != 1 {
		t.Errorf("relayd_turns_total = %v, want 1", n)
	}
	if c, s := histogram(t, h, "r"); c != 1 || s != 5 {
		t.Errorf("relayd_turn_events count %d sum %v, want 1 and 5", c, s)
	}
}

func TestTurnOfOneIsThePromptAlone(t *testing.T) {
	h := turnHarness(t, queue.TurnPolicy{MaxEvents: 20}, dispatch.RouteSettings{})
	m := newMsg("r", "acme/app", "only one")
	h.enqueue(m)
	h.start()
	h.settled()
	reqs := h.chatRequests()
	if len(reqs) != 1 || reqs[0].Text != "only one" || reqs[0].IdempotencyKey != m.ID {
		t.Fatalf("requests %+v, want the prompt alone with the message id as key", reqs)
	}
}

func TestTurnBatchTemplate(t *testing.T) {
	batch := func(conv string, ms []queue.Message) (string, error) {
		var b strings.Builder
		fmt.Fprintf(&b, "%d on %s:", len(ms), conv)
		for _, m := range ms {
			b.WriteString(" [" + m.Prompt + "]")
		}
		return b.String(), nil
	}
	h := turnHarness(t, queue.TurnPolicy{MaxEvents: 20}, dispatch.RouteSettings{Batch: batch})
	h.enqueue(newMsg("r", "acme/app", "a"), newMsg("r", "acme/app", "b"))
	h.start()
	h.settled()
	reqs := h.chatRequests()
	if len(reqs) != 1 || reqs[0].Text != "2 on acme/app: [a] [b]" {
		t.Fatalf("requests %+v, want one rendered by the batch template", reqs)
	}
}

func TestTurnBudget(t *testing.T) {
	const budget = 64
	h := turnHarness(t, queue.TurnPolicy{MaxEvents: 20, Fits: dispatch.TurnFits(nil, budget)}, dispatch.RouteSettings{})
	var batch []queue.Message
	for i := range 6 {
		batch = append(batch, newMsg("r", "c", fmt.Sprintf("event %02d: %s", i, strings.Repeat("x", 10))))
	}
	h.enqueue(batch...)
	h.start()
	h.settled()
	reqs := h.chatRequests()
	if len(reqs) < 2 {
		t.Fatalf("%d requests, want the budget to split the turn", len(reqs))
	}
	events := 0
	for _, r := range reqs {
		if len(r.Text) > budget {
			t.Errorf("turn of %d bytes over the budget %d: %q", len(r.Text), budget, r.Text)
		}
		events += max(strings.Count(r.Text, "event "), 0)
	}
	if events != 6 {
		t.Errorf("%d events sent, want 6", events)
	}
}

func TestSupersededNeverSent(t *testing.T) {
	h := turnHarness(t, queue.TurnPolicy{Supersede: true}, dispatch.RouteSettings{})
	pending, failure, success, other := newMsg("r", "pr/7", "pending"), newMsg("r", "pr/7", "failure"), newMsg("r", "pr/7", "success"), newMsg("r", "pr/7", "lint ok")
	pending.SupersedeKey, failure.SupersedeKey, success.SupersedeKey, other.SupersedeKey = "7/build", "7/build", "7/build", "7/lint"
	h.enqueue(pending, failure, success, other)
	h.start()
	h.settled()
	var got []string
	for _, r := range h.chatRequests() {
		got = append(got, r.Text)
	}
	if strings.Join(got, ",") != "success,lint ok" {
		t.Fatalf("sent %q, want only the newest of each key", got)
	}
	if n := testutil.ToFloat64(h.m.MessagesSuperseded.WithLabelValues("r")); n != 2 {
		t.Errorf("relayd_messages_superseded_total = %v, want 2", n)
	}
}

func TestTurnLimitHoldsAndCoalesces(t *testing.T) {
	const per = 3 * time.Second
	h := turnHarness(t, queue.TurnPolicy{MaxEvents: 20}, dispatch.RouteSettings{TurnLimit: &dispatch.TurnLimit{Turns: 2, Per: per}})
	h.start()
	for i := range 2 {
		h.enqueue(newMsg("r", "loop", fmt.Sprintf("turn %d", i)))
		h.waitFor("a turn", func() bool { return len(h.chatRequests()) == i+1 })
		h.settled()
	}
	// The agent's fix triggers three more events: the window is used up.
	h.enqueue(newMsg("r", "loop", "a"), newMsg("r", "loop", "b"), newMsg("r", "loop", "c"))
	h.waitFor("the limit to hold the conversation", func() bool {
		return testutil.ToFloat64(h.m.TurnsLimited.WithLabelValues("r")) >= 1
	})
	if n := len(h.chatRequests()); n != 2 {
		t.Fatalf("%d requests while limited, want 2", n)
	}
	h.settled()
	reqs := h.chatRequests()
	if len(reqs) != 3 || !strings.HasPrefix(reqs[2].Text, "3 events:") {
		t.Fatalf("requests %d, last %q; want the three held events in one turn", len(reqs), reqs[len(reqs)-1].Text)
	}
	if reqs[2].Start.Sub(reqs[0].Start) < per-100*time.Millisecond {
		t.Errorf("third turn %v after the first, want no sooner than the window %v", reqs[2].Start.Sub(reqs[0].Start), per)
	}
	if st := h.chat("r", "loop"); len(st.Turns) != 2 {
		t.Errorf("chat keeps %d turn times, want the window's 2", len(st.Turns))
	}
}

// A burst across 1,000 conversations: each conversation's events go out
// as one turn.
func TestTurnBurstAcrossConversations(t *testing.T) {
	if testing.Short() {
		t.Skip("burst")
	}
	const convs, each = 1000, 5
	h := turnHarness(t, queue.TurnPolicy{MaxEvents: 20}, dispatch.RouteSettings{})
	h.settings.Concurrency = 8
	var batch []queue.Message
	for c := range convs {
		for e := range each {
			batch = append(batch, newMsg("r", fmt.Sprintf("repo-%04d", c), fmt.Sprintf("job %d", e)))
		}
	}
	h.enqueue(batch...)
	h.start()
	h.settled()
	if n := len(h.chatRequests()); n != convs {
		t.Fatalf("%d requests, want one turn per conversation (%d)", n, convs)
	}
	if c, s := histogram(t, h, "r"); c != convs || s != convs*each {
		t.Fatalf("relayd_turn_events count %d sum %v, want %d and %d", c, s, convs, convs*each)
	}
	h.checkLeaseGuard()
}

// On JetStream a lease may carry only superseded messages (one event a
// turn, and a newer one of its key stored): it is acked, nothing is sent.
func TestSupersededOnlyLeaseOnJetStream(t *testing.T) {
	_, url := natstest.RunServer(t)
	st, err := natsq.Open(context.Background(), natsq.Options{
		URLs: []string{url}, AckWait: 2 * time.Second,
		Turns: func(string) queue.TurnPolicy { return queue.TurnPolicy{Supersede: true} },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	h := newHarness(t)
	a, b, c := newMsg("r", "pr/7", "pending"), newMsg("r", "pr/7", "failure"), newMsg("r", "pr/7", "success")
	a.SupersedeKey, b.SupersedeKey, c.SupersedeKey = "build", "build", "build"
	if _, err := st.Enqueue(context.Background(), queue.Batch{Messages: []queue.Message{a, b, c}}); err != nil {
		t.Fatal(err)
	}
	o := h.opts
	o.Metrics = h.m
	d := dispatch.New(st, st, h.client, h.settings, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	h.waitFor("the superseded messages acked", func() bool {
		return testutil.ToFloat64(h.m.MessagesSuperseded.WithLabelValues("r")) == 2 && len(h.chatRequests()) == 1
	})
	cancel()
	<-done
	if reqs := h.chatRequests(); reqs[0].Text != "success" {
		t.Fatalf("sent %q, want only the newest", reqs[0].Text)
	}
}
