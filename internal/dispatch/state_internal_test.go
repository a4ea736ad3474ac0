package dispatch

import (
	"testing"
	"time"

	"github.com/relayd/relayd/internal/queue"
)

func TestNextChatState(t *testing.T) {
	now := time.Date(2025, 6, 19, 12, 0, 0, 0, time.UTC)
	old := now.Add(-time.Hour)
	x := queue.ChatState{ChatID: "chat_x", StartedAt: old, Messages: 3, UpdatedAt: old, Revision: 7}
	cases := []struct {
		name          string
		st            queue.ChatState
		sent, got     string
		write         bool
		id            string
		messages      int
		startedAtNow  bool
		keepsRevision bool
	}{
		{name: "first message", st: queue.ChatState{}, sent: "", got: "chat_x", write: true, id: "chat_x", messages: 1, startedAtNow: true},
		{name: "continued", st: x, sent: "chat_x", got: "chat_x", write: true, id: "chat_x", messages: 4, keepsRevision: true},
		{name: "reset starts a new chat", st: x, sent: "", got: "chat_y", write: true, id: "chat_y", messages: 1, startedAtNow: true, keepsRevision: true},
		{name: "202 into the continued chat", st: x, sent: "chat_x", got: "", write: true, id: "chat_x", messages: 4, keepsRevision: true},
		{name: "202 for a new chat", st: x, sent: "", got: "", write: false},
		{name: "202 for a first message", st: queue.ChatState{}, sent: "", got: "", write: false},
		{name: "chat reset while sending", st: queue.ChatState{}, sent: "chat_x", got: "chat_x", write: false},
		{name: "chat replaced while sending", st: queue.ChatState{ChatID: "chat_z", Revision: 9}, sent: "chat_x", got: "chat_x", write: false},
	}
	for _, tc := range cases {
		next, write := nextChatState(tc.st, tc.sent, tc.got, now)
		if write != tc.write {
			t.Errorf("%s: write = %v, want %v", tc.name, write, tc.write)
			continue
		}
		if !write {
			continue
		}
		if next.ChatID != tc.id || next.Messages != tc.messages || !next.UpdatedAt.Equal(now) {
			t.Errorf("%s: next = %+v", tc.name, next)
		}
		if tc.startedAtNow != next.StartedAt.Equal(now) {
			t.Errorf("%s: StartedAt = %v", tc.name, next.StartedAt)
		}
		if next.Revision != tc.st.Revision {
			t.Errorf("%s: revision %d, want the read one %d for compare-and-set", tc.name, next.Revision, tc.st.Revision)
		}
	}
}

func TestResetDue(t *testing.T) {
	now := time.Now()
	st := queue.ChatState{ChatID: "c", StartedAt: now.Add(-2 * time.Hour), Messages: 5}
	cases := []struct {
		r    *ConversationReset
		want bool
	}{
		{nil, false},
		{&ConversationReset{}, false},
		{&ConversationReset{After: 3 * time.Hour}, false},
		{&ConversationReset{After: 2 * time.Hour}, true},
		{&ConversationReset{Messages: 6}, false},
		{&ConversationReset{Messages: 5}, true},
		{&ConversationReset{After: 24 * time.Hour, Messages: 50}, false},
	}
	for _, tc := range cases {
		if got := resetDue(tc.r, st, now); got != tc.want {
			t.Errorf("resetDue(%+v) = %v, want %v", tc.r, got, tc.want)
		}
	}
}

func TestForbidTracker(t *testing.T) {
	now := time.Now()
	type step struct {
		route     string
		forbidden bool
		at        time.Duration
		pause     bool
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"one route, three 403s", []step{{"a", true, 0, false}, {"a", true, 0, false}, {"a", true, 0, true}}},
		{"two routes, all 403", []step{{"a", true, 0, false}, {"b", true, 0, false}, {"a", true, 0, true}}},
		{"an answer in between resets the count", []step{{"a", true, 0, false}, {"a", true, 0, false}, {"b", false, 0, false}, {"a", true, 0, false}}},
		{"a route answered recently is not forbidden", []step{{"b", false, 0, false}, {"a", true, time.Second, false}, {"a", true, time.Second, false}, {"a", true, time.Second, false}, {"a", true, time.Second, false}}},
		{"a route quiet for long is not counted", []step{{"b", false, 0, false}, {"a", true, 11 * time.Minute, false}, {"a", true, 11 * time.Minute, false}, {"a", true, 11 * time.Minute, true}}},
	}
	for _, tc := range cases {
		tr := newForbidTracker()
		for i, s := range tc.steps {
			if got := tr.observe(s.route, s.forbidden, now.Add(s.at)); got != s.pause {
				t.Errorf("%s: step %d: pause = %v, want %v", tc.name, i, got, s.pause)
			}
		}
	}
}
