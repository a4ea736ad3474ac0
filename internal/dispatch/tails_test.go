package dispatch_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/queue/boltq"
)

// gatedStore wraps the real store; its leases' acks wait at a gate until
// it opens, as acks that cannot commit would.
type gatedStore struct {
	*boltq.Store
	gate    chan struct{}
	waiting atomic.Int32 // acks at the gate
}

func (s *gatedStore) Next(ctx context.Context) (queue.Lease, error) {
	l, err := s.Store.Next(ctx)
	if err != nil {
		return nil, err
	}
	return &gatedLease{Lease: l, s: s}, nil
}

func (s *gatedStore) pass(ctx context.Context) error {
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	select {
	case <-s.gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type gatedLease struct {
	queue.Lease
	s *gatedStore
}

func (l *gatedLease) Ack(ctx context.Context) error {
	if err := l.s.pass(ctx); err != nil {
		return err
	}
	return l.Lease.Ack(ctx)
}

func (l *gatedLease) AckWithChat(ctx context.Context, route, key string, st queue.ChatState) error {
	if err := l.s.pass(ctx); err != nil {
		return err
	}
	return l.Lease.(dispatch.ChatAcker).AckWithChat(ctx, route, key, st)
}

// While no ack commits, the dispatcher sends at most Concurrency +
// MaxTails turns: what a crash at that moment would send again. Each
// worker waits for its own ack once MaxTails acks are pending, so every
// worker ends up at the gate, and no request goes out meanwhile.
func TestUnackedTurnsBounded(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.settings.Concurrency = 8
	want := h.settings.Concurrency + dispatch.MaxTails
	n := 3 * want
	var msgs []queue.Message
	for i := range n {
		msgs = append(msgs, newMsg("r", fmt.Sprintf("c%02d", i), "x"))
	}
	h.enqueue(msgs...)

	gs := &gatedStore{Store: h.store, gate: make(chan struct{})}
	o := h.opts
	o.Metrics = h.m
	d := dispatch.New(gs, gs, h.client, h.settings, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()

	// Every worker waits at the gate, and MaxTails acks in the background.
	h.waitFor(fmt.Sprintf("%d acks at the gate", want), func() bool { return gs.waiting.Load() == int32(want) })
	if got := len(h.chatRequests()); got != want {
		t.Fatalf("requests sent while no ack commits = %d, want %d (concurrency %d + %d)", got, want, h.settings.Concurrency, dispatch.MaxTails)
	}

	close(gs.gate)
	h.settled()
	if got := len(h.chatRequests()); got != n {
		t.Errorf("requests = %d, want %d (one per message)", got, n)
	}
}
