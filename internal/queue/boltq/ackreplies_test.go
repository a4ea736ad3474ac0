package boltq

import (
	"context"
	"testing"

	"github.com/relayd/relayd/internal/queue"
)

// replyAcker is dispatch.ReplyAcker.
type replyAcker interface {
	AckWithReplies(ctx context.Context, chat *queue.Chat, replies []queue.Message) error
}

var _ replyAcker = (*lease)(nil)

// A turn's replies are stored by the write that acks it, in their own
// conversations, with their kind, and survive a restart.
func TestAckWithReplies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		turn     int // messages in the turn (coalesced when > 1)
		withChat bool
	}{
		{name: "one message, chat", turn: 1, withChat: true},
		{name: "one message, no chat", turn: 1},
		{name: "coalesced turn, chat", turn: 2, withChat: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock()
			s, path := openTemp(t, Options{Now: clock.Now, DedupeSweepInterval: -1})
			s.SetTurnPolicies(func(string) queue.TurnPolicy { return queue.TurnPolicy{MaxEvents: tc.turn} })
			ctx := ctxT(t)
			var msgs []queue.Message
			for i := range tc.turn {
				msgs = append(msgs, newMsg("m"+string(rune('1'+i)), "r1", "A"))
			}
			mustEnqueue(t, s, msgs...)
			l := mustNext(t, s)
			if n := len(l.Messages()); n != tc.turn {
				t.Fatalf("turn of %d messages, want %d", n, tc.turn)
			}
			replies := []queue.Message{
				{ID: "rpl_a", Route: "r1", ConversationKey: "rpl_a", Prompt: `{"id":"rpl_a"}`, Kind: queue.KindReply, Delivery: "d-m1"},
				{ID: "rpl_b", Route: "r1", ConversationKey: "rpl_b", Prompt: `{"id":"rpl_b"}`, Kind: queue.KindReply, Delivery: "d-m1"},
			}
			var chat *queue.Chat
			if tc.withChat {
				chat = &queue.Chat{Route: "r1", ConversationKey: "A", ChatState: queue.ChatState{ChatID: "c1", Messages: 1}}
			}
			commits := s.commits.Load()
			if err := l.(replyAcker).AckWithReplies(ctx, chat, replies); err != nil {
				t.Fatalf("AckWithReplies: %v", err)
			}
			if n := s.commits.Load() - commits; n != 1 {
				t.Errorf("AckWithReplies took %d commits, want 1", n)
			}
			if tc.withChat {
				if got := mustChat(t, s, "r1", "A"); got.ChatID != "c1" {
					t.Errorf("chat = %+v, want c1", got)
				}
			}
			if st := mustStats(t, s); st != (queue.Stats{Ready: 2}) {
				t.Errorf("stats after ack = %+v, want the two replies ready", st)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openAt(t, path, Options{Now: clock.Now, DedupeSweepInterval: -1})
			got := map[string]queue.Message{}
			for range 2 {
				l := mustNext(t, s)
				m := l.Message()
				got[m.ID] = m
				if err := l.Ack(ctx); err != nil {
					t.Fatal(err)
				}
			}
			for _, want := range replies {
				m, ok := got[want.ID]
				if !ok || m.Kind != queue.KindReply || m.Prompt != want.Prompt || m.ConversationKey != want.ConversationKey {
					t.Errorf("reply %s after reopen = %+v (found %v)", want.ID, m, ok)
				}
			}
			if st := mustStats(t, s); st != (queue.Stats{}) {
				t.Errorf("stats at the end = %+v, want empty", st)
			}
		})
	}
}
