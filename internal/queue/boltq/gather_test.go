package boltq

import (
	"testing"
	"time"
)

// Lease endings gather while more leases are in flight, and never keep
// an idle store waiting. The pace is an hour: a wait would not end
// within the test's deadline.
func TestAckGather(t *testing.T) {
	t.Parallel()
	t.Run("idle store: an ack commits at once", func(t *testing.T) {
		t.Parallel()
		s, _ := openTemp(t, Options{ackPace: time.Hour})
		mustEnqueue(t, s, newMsg("m1", "r", "A"))
		settle(t, s)
		if err := mustNext(t, s).Ack(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("two in flight: the first ack waits for the second, one commit", func(t *testing.T) {
		t.Parallel()
		s, _ := openTemp(t, Options{ackPace: time.Hour})
		mustEnqueue(t, s, newMsg("m1", "r", "A"), newMsg("m2", "r", "B"))
		settle(t, s)
		l1, l2 := mustNext(t, s), mustNext(t, s)
		commits := s.commits.Load()
		first := make(chan error, 1)
		go func() { first <- l1.Ack(ctxT(t)) }()
		select {
		case err := <-first:
			t.Fatalf("the first ack committed alone (err %v)", err)
		case <-time.After(50 * time.Millisecond):
		}
		if err := l2.Ack(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		if n := s.commits.Load() - commits; n != 1 {
			t.Errorf("%d commits for the two acks, want 1", n)
		}
	})
	t.Run("close ends the wait", func(t *testing.T) {
		t.Parallel()
		s, _ := openTemp(t, Options{ackPace: time.Hour})
		mustEnqueue(t, s, newMsg("m1", "r", "A"), newMsg("m2", "r", "B"))
		settle(t, s)
		l1, _ := mustNext(t, s), mustNext(t, s)
		first := make(chan error, 1)
		go func() { first <- l1.Ack(ctxT(t)) }()
		for s.commitQ.len() == 0 { // the ack is queued, gathering
			time.Sleep(time.Millisecond)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		<-first // answered, whatever the answer: not held for the pace
	})
}
