package natsq_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/queue/natsq"
	"github.com/relayd/relayd/internal/queue/natsq/natstest"
)

// waitHeld waits until s holds want messages.
func waitHeld(t *testing.T, s *natsq.Store, want int) (bodies int) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		held, bodies := s.Held()
		if held == want {
			return bodies
		}
		if time.Now().After(deadline) {
			t.Fatalf("holding %d messages, want %d", held, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDeepConversation: with one partition, a conversation far deeper
// than the messages whose bodies an owner keeps backs off; another
// conversation is not delayed, the deep one's bodies past the first ones
// are not held, and once it is due again it is delivered whole, in order,
// also past the window.
func TestDeepConversation(t *testing.T) {
	_, url := natstest.RunServer(t)
	var skew atomic.Int64 // the store's clock runs this far ahead
	const window, maxEvents = 400, 8
	s := open(t, url, func(o *natsq.Options) {
		o.Partitions, o.Window = 1, window
		o.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
		o.Turns = func(string) queue.TurnPolicy { return queue.TurnPolicy{MaxEvents: maxEvents} }
	})
	var want []string
	deep := func(n int) {
		for range n / 50 {
			var ms []queue.Message
			for range 50 {
				m := newMsg("r", "deep")
				ms = append(ms, m)
				want = append(want, m.ID)
			}
			enqueue(t, s, ms...)
		}
	}
	deep(300)
	if bodies := waitHeld(t, s, 300); bodies != natsq.KeepBodies {
		t.Fatalf("%d bodies kept of 300 messages of one conversation, want %d", bodies, natsq.KeepBodies)
	}
	l, err := s.Next(waitCtx(t))
	if err != nil || l.Message().ID != want[0] || len(l.Messages()) != maxEvents {
		t.Fatalf("first turn: %v, %v, want %d messages from %s", l, err, maxEvents, want[0])
	}
	if err := l.Retry(waitCtx(t), time.Now().Add(time.Hour), queue.Failure{Status: 503, Reason: "server_error"}); err != nil {
		t.Fatal(err)
	}
	if held, bodies := s.Held(); held != 300 || bodies != natsq.KeepBodies {
		t.Fatalf("holding %d messages, %d bodies, after the turn was put back; want 300, %d", held, bodies, natsq.KeepBodies)
	}

	// Another conversation of the partition goes at once.
	free := newMsg("r", "free")
	enqueue(t, s, free)
	if l, err := s.Next(waitCtx(t)); err != nil || l.Message().ID != free.ID {
		t.Fatalf("next while the deep conversation backs off: %v %v, want %s", l, err, free.ID)
	} else if err := l.Ack(waitCtx(t)); err != nil {
		t.Fatal(err)
	}

	// Deeper than the window: the rest waits in the stream.
	deep(300)
	if bodies := waitHeld(t, s, window); bodies != natsq.KeepBodies {
		t.Fatalf("%d bodies kept, want %d", bodies, natsq.KeepBodies)
	}
	skew.Store(int64(2 * time.Hour))
	var got []string
	for len(got) < len(want) {
		l, err := s.Next(waitCtx(t))
		if err != nil {
			t.Fatalf("after %d of %d: %v", len(got), len(want), err)
		}
		if n := len(l.Messages()); n == 0 || n > maxEvents {
			t.Fatalf("a turn of %d messages, want 1 to %d", n, maxEvents)
		}
		for _, m := range l.Messages() {
			got = append(got, m.ID)
		}
		if _, bodies := s.Held(); bodies > natsq.KeepBodies {
			t.Fatalf("%d bodies kept, want at most %d", bodies, natsq.KeepBodies)
		}
		if err := l.Ack(waitCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("message %d is %s, want %s", i, got[i], want[i])
		}
	}
	if held, _ := s.Held(); held != 0 {
		t.Fatalf("still holding %d", held)
	}
}

// TestDeepSupersede: a turn of a superseding route looks past the
// messages whose bodies are kept: an older message whose newer one lies
// deep in the conversation is not sent.
func TestDeepSupersede(t *testing.T) {
	_, url := natstest.RunServer(t)
	s := open(t, url, func(o *natsq.Options) {
		o.Partitions = 1
		o.Turns = func(string) queue.TurnPolicy { return queue.TurnPolicy{MaxEvents: 4, Supersede: true} }
	})
	const n = 3 * natsq.KeepBodies
	var ms []queue.Message
	for i := range n {
		m := newMsg("r", "c")
		if i == 0 || i == n-1 {
			m.SupersedeKey = "status"
		}
		ms = append(ms, m)
	}
	enqueue(t, s, ms...)
	waitHeld(t, s, n)
	l, err := s.Next(waitCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if gone := l.Superseded(); len(gone) != 1 || gone[0].ID != ms[0].ID {
		t.Fatalf("superseded %v, want %s", gone, ms[0].ID)
	}
	if send := l.Messages(); len(send) != 4 || send[0].ID != ms[1].ID {
		t.Fatalf("sent %d messages from %s, want 4 from %s", len(send), send[0].ID, ms[1].ID)
	}
	if _, bodies := s.Held(); bodies != natsq.KeepBodies {
		t.Fatalf("%d bodies kept after the turn looked past them, want %d", bodies, natsq.KeepBodies)
	}
	if err := l.Ack(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
}

// TestWideBacklogBodies: a backlog of many conversations with long prompts
// keeps only a budget of bodies per partition; every turn still carries
// its message whole.
func TestWideBacklogBodies(t *testing.T) {
	_, url := natstest.RunServer(t)
	s := open(t, url, func(o *natsq.Options) { o.Partitions = 1 })
	const n = 100
	prompt := strings.Repeat("x", 32<<10) // 100 of them: past the budget
	want := map[string]string{}
	var ms []queue.Message
	for i := range n {
		m := newMsg("r", fmt.Sprintf("c%d", i))
		m.Prompt = m.ID + prompt
		want[m.ID] = m.Prompt
		ms = append(ms, m)
	}
	enqueue(t, s, ms...)
	if bodies := waitHeld(t, s, n); bodies >= n || bodies == 0 {
		t.Fatalf("%d bodies kept of %d long messages, want some, within the budget", bodies, n)
	}
	for range n {
		l, err := s.Next(waitCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		m := l.Message()
		if p, ok := want[m.ID]; !ok || m.Prompt != p {
			t.Fatalf("turn of %s: unknown, sent before, or prompt of %d bytes", m.ID, len(m.Prompt))
		}
		delete(want, m.ID)
		if err := l.Ack(waitCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDeepReadFails: while the bodies of a deep conversation cannot be
// read back, its turns wait; nothing is lost or reordered, and it goes on
// once reads work again.
func TestDeepReadFails(t *testing.T) {
	_, url := natstest.RunServer(t)
	const maxEvents = 8
	s := open(t, url, func(o *natsq.Options) {
		o.Partitions = 1
		o.Turns = func(string) queue.TurnPolicy { return queue.TurnPolicy{MaxEvents: maxEvents} }
	})
	const n = 2 * natsq.KeepBodies
	var want []string
	var ms []queue.Message
	for range n {
		m := newMsg("r", "deep")
		ms = append(ms, m)
		want = append(want, m.ID)
	}
	enqueue(t, s, ms...)
	waitHeld(t, s, n)
	s.FailReads(errors.New("injected"))
	var got []string
	take := func(ctx context.Context) error {
		l, err := s.Next(ctx)
		if err != nil {
			return err
		}
		for _, m := range l.Messages() {
			got = append(got, m.ID)
		}
		return l.Ack(waitCtx(t))
	}
	for len(got) < natsq.KeepBodies { // kept: no read needed
		if err := take(waitCtx(t)); err != nil {
			t.Fatalf("after %d: %v", len(got), err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	if err := take(ctx); err == nil {
		t.Fatalf("a turn went out while no body could be read back: %d sent", len(got))
	}
	s.FailReads(nil)
	for len(got) < n {
		if err := take(waitCtx(t)); err != nil {
			t.Fatalf("after %d of %d: %v", len(got), n, err)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("sent %v,\nwant %v", got, want)
	}
}
