package boltq

import (
	"fmt"
	"testing"
)

// A transaction takes every request someone waits on, but logged groups
// only up to applyBudget messages (the first one whatever its size): an
// ack never waits behind a backlog of the log being applied. Logged groups
// keep their order, and a dead letter's replay stays behind them.
func TestTakeGroupPutsWaitersAheadOfLoggedBacklog(t *testing.T) {
	t.Parallel()
	s := &Store{commitQ: newRequests[op]()}
	big := &applyOp{n: applyBudget + 1}
	a1 := &applyOp{n: applyBudget / 4}
	a2 := &applyOp{n: applyBudget / 4}
	a3 := &applyOp{n: 1}
	ack := &leaseOp{kind: leaseAck}
	replay := &deadOp{replay: true}
	chat := &putChatOp{}
	ping := &pingOp{}
	if err := s.commitQ.push(big, a1, ack, replay, a2, chat, a3, ping); err != nil {
		t.Fatal(err)
	}

	for i, tc := range []struct {
		want     []op
		deferred bool
	}{
		{want: []op{big, ack, chat, ping}, deferred: true},
		{want: []op{a1, replay, a2, a3}, deferred: false},
	} {
		got, stop, deferred := s.takeGroup(nil)
		if stop {
			t.Fatalf("take %d: stop on an open queue", i)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) || deferred != tc.deferred {
			t.Errorf("take %d = %v (deferred %v), want %v (deferred %v)", i, got, deferred, tc.want, tc.deferred)
		}
	}
	if n := s.commitQ.len(); n != 0 {
		t.Errorf("%d requests left queued", n)
	}
}
