package natsq_test

import (
	"maps"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/queue/natsq"
	"github.com/relayd/relayd/internal/queue/natsq/natstest"
)

// TestChatCountsAcrossReplicas: each replica counts the chats every
// replica stores and deletes, and a replica opened later starts from the
// bucket's contents.
func TestChatCountsAcrossReplicas(t *testing.T) {
	_, url := natstest.RunServer(t)
	a, b := open(t, url), open(t, url)
	ctx := waitCtx(t)
	want := func(s *natsq.Store, name string, counts map[string]int) {
		t.Helper()
		deadline := time.Now().Add(patience)
		for {
			got, err := s.ChatCounts(ctx)
			if err == nil && maps.Equal(got, counts) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: chat counts %v (%v), want %v", name, got, err, counts)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	st := queue.ChatState{ChatID: "c1", Messages: 1}
	for _, k := range []string{"a", "b"} {
		if err := a.PutChat(ctx, "r1", k, st); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.PutChat(ctx, "r2", "a", st); err != nil {
		t.Fatal(err)
	}
	both := map[string]int{"r1": 2, "r2": 1}
	want(a, "A", both)
	want(b, "B", both)

	if err := b.DeleteChat(ctx, "r1", "a"); err != nil {
		t.Fatal(err)
	}
	after := map[string]int{"r1": 1, "r2": 1}
	want(a, "A", after)
	want(b, "B", after)
	want(open(t, url), "C, opened later", after)
}

// TestListChatsWaiting: the listing counts each conversation's queued
// messages, whether or not it has a chat yet, held by an owner or not.
func TestListChatsWaiting(t *testing.T) {
	_, url := natstest.RunServer(t)
	s := open(t, url)
	ctx := waitCtx(t)
	enqueue(t, s, newMsg("r", "a"), newMsg("r", "a"), newMsg("r", "a"), newMsg("r", "b"))
	if err := s.PutChat(ctx, "r", "a", queue.ChatState{ChatID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutChat(ctx, "r", "idle", queue.ChatState{ChatID: "c2"}); err != nil {
		t.Fatal(err)
	}
	l, err := s.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	acked := l.Message().ConversationKey
	chats, err := s.ListChats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"a": 3, "b": 1, "idle": 0}
	want[acked]--
	got := map[string]int{}
	for _, c := range chats {
		if c.Waiting == nil {
			t.Fatalf("%s/%s: no waiting count", c.Route, c.ConversationKey)
		}
		got[c.ConversationKey] = *c.Waiting
		if c.ConversationKey == "b" && c.ChatID != "" {
			t.Fatalf("b has chat %q, want none", c.ChatID)
		}
	}
	if got["b"] == 0 {
		delete(want, "b") // acked: no longer a conversation with messages
	}
	if !maps.Equal(got, want) {
		t.Fatalf("waiting %v, want %v", got, want)
	}
}
