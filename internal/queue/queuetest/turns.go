package queuetest

import (
	"slices"
	"time"

	"github.com/relayd/relayd/internal/queue"
)

// TurnSetter is a backend that forms turns by route policy. The suite sets
// TurnPolicies on every backend it opens that has it.
type TurnSetter interface {
	SetTurnPolicies(queue.TurnPolicies)
}

// The routes of the turn cases and their policies.
const (
	routeTurn    = "turn"    // three messages a turn
	routeSup     = "sup"     // one message a turn, superseding
	routeSupTurn = "supturn" // five a turn, superseding
	routeBudget  = "budget"  // a budget that fits two
	routeWait    = "wait"    // coalescing wait of Delay
)

// TurnPolicies are the policies the suite gives a TurnSetter.
func TurnPolicies(route string) queue.TurnPolicy {
	switch route {
	case routeTurn:
		return queue.TurnPolicy{MaxEvents: 3}
	case routeSup:
		return queue.TurnPolicy{Supersede: true}
	case routeSupTurn:
		return queue.TurnPolicy{MaxEvents: 5, Supersede: true}
	case routeBudget:
		return queue.TurnPolicy{MaxEvents: 10, Fits: func(ms []queue.Message) bool { return len(ms) <= 2 }}
	case routeWait:
		return queue.TurnPolicy{MaxEvents: 10, Wait: Delay}
	}
	return queue.TurnPolicy{}
}

func ids(ms []queue.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// drain leases and acks until n messages were covered (sent or
// superseded), returning each lease's messages and every superseded one.
func (s *suite) drain(n int) (turns [][]queue.Message, gone []queue.Message) {
	s.Helper()
	seen := 0
	for seen < n {
		l := s.next()
		ms, sup := l.Messages(), l.Superseded()
		if len(ms) == 0 && len(sup) == 0 {
			s.Fatalf("a lease with no message")
		}
		s.ack(l)
		if len(ms) > 0 {
			turns = append(turns, ms)
		}
		gone = append(gone, sup...)
		seen += len(ms) + len(sup)
	}
	return turns, gone
}

func flat(turns [][]queue.Message) []string {
	var out []string
	for _, t := range turns {
		out = append(out, ids(t)...)
	}
	return out
}

func sizes(turns [][]queue.Message) []int {
	out := make([]int, len(turns))
	for i, t := range turns {
		out[i] = len(t)
	}
	return out
}

func (s *suite) msgs(route, key string, n int) []queue.Message {
	out := make([]queue.Message, n)
	for i := range out {
		out[i] = s.msg(route, key)
	}
	return out
}

// A conversation's due messages go out together, oldest first, at most
// MaxEvents a turn; a backend that does not coalesce sends them one by
// one, in the same order.
func testTurnCoalesces(s *suite) {
	ms := s.msgs(routeTurn, "c", 5)
	s.enqueue(ms...)
	turns, _ := s.drain(5)
	if got, want := flat(turns), ids(ms); !slices.Equal(got, want) {
		s.Fatalf("sent %v, want %v", got, want)
	}
	want := []int{1, 1, 1, 1, 1}
	if s.h.Coalesces {
		want = []int{3, 2}
	}
	if got := sizes(turns); !slices.Equal(got, want) {
		s.Fatalf("turn sizes %v, want %v", got, want)
	}
	s.none("all sent")
}

// Messages that arrive while a turn is in flight go together into the next.
func testTurnArrivalsJoinNext(s *suite) {
	if !s.h.Coalesces {
		s.Skip("the backend sends one message a turn")
	}
	a := s.msg(routeTurn, "c")
	s.enqueue(a)
	l := s.nextID(a.ID)
	b, c := s.msg(routeTurn, "c"), s.msg(routeTurn, "c")
	s.enqueue(b, c)
	s.none("the conversation's turn is in flight")
	s.ack(l)
	l = s.next()
	if got := ids(l.Messages()); !slices.Equal(got, []string{b.ID, c.ID}) {
		s.Fatalf("next turn %v, want [%s %s]", got, b.ID, c.ID)
	}
	s.ack(l)
}

// Retry counts the attempt on every message of the turn and brings them
// back no sooner than asked.
func testTurnRetry(s *suite) {
	ms := s.msgs(routeTurn, "c", 3)
	s.enqueue(ms...)
	l := s.next()
	first := ids(l.Messages())
	at := time.Now().Add(Delay)
	if err := l.Retry(s.ctx(), at, failure(503, "unavailable")); err != nil {
		s.Fatalf("retry: %v", err)
	}
	l = s.next()
	s.notBefore(at, "retried turn leased")
	for _, m := range l.Messages() {
		if slices.Contains(first, m.ID) && m.Attempts != 1 {
			s.Fatalf("message %s has %d attempts after one retry, want 1", m.ID, m.Attempts)
		}
	}
	if got := ids(l.Messages()); !slices.Equal(got, first) {
		s.Fatalf("retried turn %v, want %v again", got, first)
	}
	s.ack(l)
	s.drain(3 - len(first))
}

// Dead moves every message of the turn to the dead letters.
func testTurnDead(s *suite) {
	ms := s.msgs(routeTurn, "c", 3)
	s.enqueue(ms...)
	l := s.next()
	sent := ids(l.Messages())
	s.kill(l, failure(400, "bad_request"))
	dls, err := s.b.ListDead(s.ctx(), routeTurn)
	if err != nil {
		s.Fatalf("list dead: %v", err)
	}
	got := deadIDs(dls)
	slices.Sort(got)
	slices.Sort(sent)
	if !slices.Equal(got, sent) {
		s.Fatalf("dead letters %v, want the turn's %v", got, sent)
	}
}

// A process that dies in the middle of a coalesced turn loses none of it:
// every message is leased again, in order, together or alone.
func testTurnCrashMidway(s *suite) {
	ms := s.msgs(routeTurn, "c", 3)
	s.enqueue(ms...)
	s.next() // dies holding it
	s.restart()
	turns, _ := s.drain(3)
	if got, want := flat(turns), ids(ms); !slices.Equal(got, want) {
		s.Fatalf("after a crash sent %v, want %v", got, want)
	}
	s.restart()
	s.none("acked before the restart")
}

// A message is never sent when a newer one of its route, conversation and
// key was accepted first; an empty key supersedes nothing.
func testSupersede(s *suite) {
	a, b, c, d, e := s.msg(routeSup, "c"), s.msg(routeSup, "c"), s.msg(routeSup, "c"), s.msg(routeSup, "c"), s.msg(routeSup, "other")
	a.SupersedeKey, b.SupersedeKey, c.SupersedeKey, e.SupersedeKey = "k1", "k2", "k1", "k1"
	s.enqueue(a, b, c, d, e)
	turns, gone := s.drain(5)
	sent := flat(turns)
	slices.Sort(sent)
	want := []string{b.ID, c.ID, d.ID, e.ID}
	slices.Sort(want)
	if !slices.Equal(sent, want) {
		s.Fatalf("sent %v, want %v", sent, want)
	}
	if got := ids(gone); !slices.Equal(got, []string{a.ID}) {
		s.Fatalf("superseded %v, want [%s]", got, a.ID)
	}
}

// Superseding holds across a restart, and a superseded message acked does
// not come back.
func testSupersedeAfterRestart(s *suite) {
	a, b := s.msg(routeSup, "c"), s.msg(routeSup, "c")
	a.SupersedeKey, b.SupersedeKey = "k", "k"
	s.enqueue(a, b)
	s.restart()
	turns, gone := s.drain(2)
	if got := flat(turns); !slices.Equal(got, []string{b.ID}) {
		s.Fatalf("sent %v, want only the newer %s", got, b.ID)
	}
	if got := ids(gone); !slices.Equal(got, []string{a.ID}) {
		s.Fatalf("superseded %v, want [%s]", got, a.ID)
	}
	s.restart()
	s.none("everything was acked")
}

// Within a coalesced turn the superseded messages are left out.
func testSupersedeInTurn(s *suite) {
	if !s.h.Coalesces {
		s.Skip("the backend sends one message a turn")
	}
	a, b, c := s.msg(routeSupTurn, "c"), s.msg(routeSupTurn, "c"), s.msg(routeSupTurn, "c")
	a.SupersedeKey, b.SupersedeKey, c.SupersedeKey = "k1", "k2", "k1"
	s.enqueue(a, b, c)
	l := s.next()
	if got := ids(l.Messages()); !slices.Equal(got, []string{b.ID, c.ID}) {
		s.Fatalf("turn %v, want [%s %s]", got, b.ID, c.ID)
	}
	if got := ids(l.Superseded()); !slices.Equal(got, []string{a.ID}) {
		s.Fatalf("superseded %v, want [%s]", got, a.ID)
	}
	// A retried turn keeps leaving it out; Ack then removes it.
	if err := l.Release(s.ctx(), time.Time{}); err != nil {
		s.Fatalf("release: %v", err)
	}
	l = s.next()
	if got := ids(l.Messages()); !slices.Equal(got, []string{b.ID, c.ID}) {
		s.Fatalf("turn after release %v, want [%s %s]", got, b.ID, c.ID)
	}
	s.ack(l)
	s.none("the turn was acked with its superseded message")
}

// A turn stops before the message that would take it over its budget.
func testTurnBudget(s *suite) {
	if !s.h.Coalesces {
		s.Skip("the backend sends one message a turn")
	}
	ms := s.msgs(routeBudget, "c", 5)
	s.enqueue(ms...)
	turns, _ := s.drain(5)
	if got := sizes(turns); !slices.Equal(got, []int{2, 2, 1}) {
		s.Fatalf("turn sizes %v, want [2 2 1]", got)
	}
	if got, want := flat(turns), ids(ms); !slices.Equal(got, want) {
		s.Fatalf("sent %v, want %v", got, want)
	}
}

// A message that starts its conversation is due a wait after it was
// accepted; those arriving meanwhile join its turn.
func testTurnWait(s *suite) {
	if !s.h.Coalesces {
		s.Skip("the backend sends one message a turn")
	}
	a := s.msg(routeWait, "c")
	s.enqueue(a)
	b := s.msg(routeWait, "c")
	s.enqueue(b)
	l := s.next()
	s.notBefore(a.EnqueuedAt.Add(Delay), "waiting turn leased")
	if got := ids(l.Messages()); !slices.Equal(got, []string{a.ID, b.ID}) {
		s.Fatalf("turn %v, want [%s %s]", got, a.ID, b.ID)
	}
	s.ack(l)
}
