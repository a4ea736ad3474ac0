package boltq

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"testing"

	"github.com/relayd/relayd/internal/queue"
)

// chatAcker is dispatch.ChatAcker; the external test package checks the
// lease against the real interface.
type chatAcker interface {
	AckWithChat(ctx context.Context, route, key string, st queue.ChatState) error
}

var _ chatAcker = (*lease)(nil)

func mustChat(t *testing.T, s *Store, route, key string) queue.ChatState {
	t.Helper()
	st, err := s.GetChat(ctxT(t), route, key)
	if err != nil {
		t.Fatalf("get chat: %v", err)
	}
	return st
}

func mustChatCounts(t *testing.T, s *Store) map[string]int {
	t.Helper()
	c, err := s.ChatCounts(ctxT(t))
	if err != nil {
		t.Fatalf("chat counts: %v", err)
	}
	return c
}

func TestAckWithChat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// stored, when set, is the chat record before the ack.
		stored *queue.ChatState
		// staleRev is the revision the first AckWithChat sends, relative to
		// the stored one: 0 sends the stored revision (no conflict).
		staleRev int64
		// more: the conversation has a second message.
		more bool
	}{
		{name: "new chat, next message", more: true},
		{name: "new chat, last message"},
		{name: "continued chat", stored: &queue.ChatState{ChatID: "c0", Messages: 1}, more: true},
		{name: "create over existing conflicts", stored: &queue.ChatState{ChatID: "c0", Messages: 1}, staleRev: -1, more: true},
		{name: "stale revision conflicts", stored: &queue.ChatState{ChatID: "c0", Messages: 1}, staleRev: +1, more: true},
		{name: "stale revision conflicts, last message", stored: &queue.ChatState{ChatID: "c0", Messages: 1}, staleRev: +1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock()
			s, path := openTemp(t, Options{Now: clock.Now, DedupeSweepInterval: -1})
			ctx := ctxT(t)
			msgs := []queue.Message{newMsg("m1", "r1", "A")}
			if tc.more {
				msgs = append(msgs, newMsg("m2", "r1", "A"))
			}
			mustEnqueue(t, s, msgs...)
			if tc.stored != nil {
				if err := s.PutChat(ctx, "r1", "A", *tc.stored); err != nil {
					t.Fatal(err)
				}
			}
			before := mustChat(t, s, "r1", "A")

			l := mustNext(t, s)
			if l.Message().ID != "m1" {
				t.Fatalf("leased %s, want m1", l.Message().ID)
			}
			ca, ok := l.(chatAcker)
			if !ok {
				t.Fatalf("%T does not implement AckWithChat", l)
			}
			next := queue.ChatState{ChatID: "c1", Messages: before.Messages + 1, StartedAt: clock.Now(), UpdatedAt: clock.Now()}

			if tc.staleRev != 0 {
				next.Revision = uint64(int64(before.Revision) + tc.staleRev)
				err := ca.AckWithChat(ctx, "r1", "A", next)
				if !errors.Is(err, queue.ErrConflict) {
					t.Fatalf("AckWithChat with revision %d over %d: %v, want ErrConflict", next.Revision, before.Revision, err)
				}
				// Nothing written: the chat is as it was, the lease is open
				// and its message stored.
				if got := mustChat(t, s, "r1", "A"); !reflect.DeepEqual(got, before) {
					t.Errorf("chat after conflict = %+v, want %+v", got, before)
				}
				if st := mustStats(t, s); st.Inflight != 1 || st.Ready != 0 || st.Delayed != len(msgs)-1 {
					t.Errorf("stats after conflict = %+v, want the lease still open", st)
				}
				if n := countKeys(t, s, bucketMsgs); n != len(msgs) {
					t.Errorf("%d messages stored after conflict, want %d", n, len(msgs))
				}
				want := map[string]int{}
				if tc.stored != nil {
					want["r1"] = 1
				}
				if c := mustChatCounts(t, s); !maps.Equal(c, want) {
					t.Errorf("chat counts after conflict = %v, want %v", c, want)
				}
			}

			// Retry with the stored revision, as dispatch does after re-reading.
			next.Revision = before.Revision
			commits := s.commits.Load()
			if err := ca.AckWithChat(ctx, "r1", "A", next); err != nil {
				t.Fatalf("AckWithChat: %v", err)
			}
			if n := s.commits.Load() - commits; n != 1 {
				t.Errorf("AckWithChat took %d commits, want 1", n)
			}
			got := mustChat(t, s, "r1", "A")
			if got.ChatID != "c1" || got.Messages != next.Messages || got.Revision <= before.Revision {
				t.Errorf("chat = %+v, want c1 with %d messages and a revision above %d", got, next.Messages, before.Revision)
			}

			// The lease has ended.
			if err := l.Ack(ctx); !errors.Is(err, ErrLeaseEnded) {
				t.Errorf("Ack after AckWithChat: %v, want ErrLeaseEnded", err)
			}
			if err := ca.AckWithChat(ctx, "r1", "A", got); !errors.Is(err, ErrLeaseEnded) {
				t.Errorf("second AckWithChat: %v, want ErrLeaseEnded", err)
			}
			if again := mustChat(t, s, "r1", "A"); !reflect.DeepEqual(again, got) {
				t.Errorf("chat changed by a call on an ended lease: %+v, want %+v", again, got)
			}
			if c := mustChatCounts(t, s); !maps.Equal(c, map[string]int{"r1": 1}) {
				t.Errorf("chat counts after ack = %v, want r1: 1", c)
			}

			want := queue.Stats{}
			if tc.more {
				want.Ready = 1
			}
			if st := mustStats(t, s); st != want {
				t.Errorf("stats after ack = %+v, want %+v", st, want)
			}
			if tc.more {
				l2 := mustNext(t, s)
				if l2.Message().ID != "m2" {
					t.Fatalf("next leased %s, want m2", l2.Message().ID)
				}
				if err := l2.Ack(ctx); err != nil {
					t.Fatal(err)
				}
			}

			// Durable: a reopened store has the chat and no message left.
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openAt(t, path, Options{Now: clock.Now, DedupeSweepInterval: -1})
			if again := mustChat(t, s, "r1", "A"); !reflect.DeepEqual(again, got) {
				t.Errorf("chat after reopen = %+v, want %+v", again, got)
			}
			if st := mustStats(t, s); st != (queue.Stats{}) {
				t.Errorf("stats after reopen = %+v, want empty", st)
			}
			if c := mustChatCounts(t, s); !maps.Equal(c, map[string]int{"r1": 1}) {
				t.Errorf("chat counts after reopen = %v, want r1: 1", c)
			}
		})
	}
}

// A conflicting AckWithChat leaves its lease open: it can still end some
// other way, and the conversation moves on.
func TestAckWithChatConflictThenRelease(t *testing.T) {
	t.Parallel()
	s, _ := openTemp(t, Options{DedupeSweepInterval: -1})
	ctx := ctxT(t)
	mustEnqueue(t, s, newMsg("m1", "r1", "A"))
	if err := s.PutChat(ctx, "r1", "A", queue.ChatState{ChatID: "c0"}); err != nil {
		t.Fatal(err)
	}
	l := mustNext(t, s)
	if err := l.(chatAcker).AckWithChat(ctx, "r1", "A", queue.ChatState{ChatID: "c1"}); !errors.Is(err, queue.ErrConflict) {
		t.Fatalf("AckWithChat: %v, want ErrConflict", err)
	}
	if err := l.Release(ctx, newClock().Now()); err != nil {
		t.Fatalf("release after conflict: %v", err)
	}
	if l2 := mustNext(t, s); l2.Message().ID != "m1" {
		t.Fatalf("leased %s after release, want m1", l2.Message().ID)
	}
	if got := mustChat(t, s, "r1", "A"); got.ChatID != "c0" {
		t.Errorf("chat = %+v, want c0", got)
	}
}
