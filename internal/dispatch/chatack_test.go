package dispatch_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/queue/boltq"
)

// contendedStore wraps the real store. Once armed, the next chat write
// (PutChat or AckWithChat) is preceded by another writer's update of the
// same record, so the dispatcher's compare-and-set conflicts once. hide
// hands out leases without AckWithChat, as a backend without it would.
type contendedStore struct {
	*boltq.Store
	t     *testing.T
	hide  bool
	armed atomic.Bool

	puts, ackWithChats, acks atomic.Int32
}

func (s *contendedStore) interfere(ctx context.Context, route, key string) {
	if !s.armed.CompareAndSwap(true, false) {
		return
	}
	st, err := s.Store.GetChat(ctx, route, key)
	if err != nil {
		s.t.Errorf("interfering read: %v", err)
		return
	}
	st.Messages = 10
	if err := s.Store.PutChat(ctx, route, key, st); err != nil {
		s.t.Errorf("interfering write: %v", err)
	}
}

func (s *contendedStore) PutChat(ctx context.Context, route, key string, st queue.ChatState) error {
	s.interfere(ctx, route, key)
	s.puts.Add(1)
	return s.Store.PutChat(ctx, route, key, st)
}

func (s *contendedStore) Next(ctx context.Context) (queue.Lease, error) {
	l, err := s.Store.Next(ctx)
	if err != nil {
		return nil, err
	}
	pl := &plainLease{Lease: l, s: s}
	if s.hide {
		return pl, nil
	}
	return &ackerLease{plainLease: pl}, nil
}

type plainLease struct {
	queue.Lease
	s *contendedStore
}

func (l *plainLease) Ack(ctx context.Context) error {
	l.s.acks.Add(1)
	return l.Lease.Ack(ctx)
}

type ackerLease struct{ *plainLease }

func (l *ackerLease) AckWithChat(ctx context.Context, route, key string, st queue.ChatState) error {
	l.s.interfere(ctx, route, key)
	l.s.ackWithChats.Add(1)
	return l.Lease.(dispatch.ChatAcker).AckWithChat(ctx, route, key, st)
}

var _ dispatch.ChatAcker = (*ackerLease)(nil)

// A delivery records the chat and acks in one write when the lease can,
// else in two; either way a conflicting chat write is read again and
// re-decided, and the message is acked once.
func TestChatRecordedWithAck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		hide bool
	}{
		{name: "one write", hide: false},
		{name: "chat then ack", hide: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			cs := &contendedStore{Store: h.store, t: t, hide: tc.hide}
			o := h.opts
			o.Metrics = h.m
			d := dispatch.New(cs, cs, h.client, h.settings, o)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("run: %v", err)
				}
			}()

			h.enqueue(newMsg("r", "c", "one"))
			h.settled()
			first := h.chat("r", "c")
			if first.ChatID == "" || first.Messages != 1 {
				t.Fatalf("chat after the first delivery = %+v", first)
			}

			cs.armed.Store(true)
			h.enqueue(newMsg("r", "c", "two"))
			h.settled()
			if cs.armed.Load() {
				t.Fatal("the second delivery wrote no chat")
			}
			// The other writer's count (10) was read back and incremented.
			if got := h.chat("r", "c"); got.ChatID != first.ChatID || got.Messages != 11 {
				t.Errorf("chat after a conflicting write = %+v, want %s with 11 messages", got, first.ChatID)
			}
			wantCombined, wantPuts, wantAcks := int32(3), int32(0), int32(0) // 1 + a conflict and its retry
			if tc.hide {
				wantCombined, wantPuts, wantAcks = 0, 3, 2
			}
			if n := cs.ackWithChats.Load(); n != wantCombined {
				t.Errorf("AckWithChat calls = %d, want %d", n, wantCombined)
			}
			if n := cs.puts.Load(); n != wantPuts {
				t.Errorf("PutChat calls = %d, want %d", n, wantPuts)
			}
			if n := cs.acks.Load(); n != wantAcks {
				t.Errorf("Ack calls = %d, want %d", n, wantAcks)
			}
			if n := len(h.chatRequests()); n != 2 {
				t.Errorf("requests = %d, want 2", n)
			}
		})
	}
}
