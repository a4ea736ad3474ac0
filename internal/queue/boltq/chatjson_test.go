package boltq

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/queue"
)

func checkAppendChat(t *testing.T, chat *queue.Chat) {
	t.Helper()
	want, wantErr := json.Marshal(chat)
	got, err := appendChat([]byte("prefix"), chat)
	if !bytes.HasPrefix(got, []byte("prefix")) {
		t.Fatalf("appendChat dropped what it was given: %q", got)
	}
	got = got[len("prefix"):]
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("error %v, json.Marshal's %v", err, wantErr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("appendChat = %s\njson.Marshal = %s", got, want)
	}
}

func TestAppendChatIsJSONMarshal(t *testing.T) {
	now := time.Date(2026, 11, 30, 5, 20, 1, 123456789, time.UTC)
	waiting := 3
	until := now.Add(time.Minute).In(time.FixedZone("x", -5*3600-30*60))
	odd := time.Date(1900, 1, 1, 0, 0, 0, 0, time.FixedZone("lmt", 3600+17)) // an offset with seconds
	for _, c := range []queue.Chat{
		{},
		{Route: "pushes", ConversationKey: "octo/repo", ChatState: queue.ChatState{ChatID: "chat_1", StartedAt: now, Messages: 7, UpdatedAt: now.Local()}},
		{Route: "r<&>", ConversationKey: "k\"\\\n\u2028\xff", ChatState: queue.ChatState{ChatID: "c", Messages: -1,
			Turns: []time.Time{now, now.Add(time.Second), now.Truncate(time.Second)}, Revision: 9}, Waiting: &waiting, LimitedUntil: &until},
		{Route: "r", ChatState: queue.ChatState{StartedAt: odd}},
		{Route: "r", ChatState: queue.ChatState{UpdatedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{Route: "r", ChatState: queue.ChatState{Turns: []time.Time{time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}}},
	} {
		checkAppendChat(t, &c)
	}
}

func FuzzAppendChat(f *testing.F) {
	f.Add("pushes", "octo/repo", "chat_1", int64(1764480000123456789), 3, int64(0), 2, -1)
	f.Add("r<&>", "k\"\u2028\xff", "", int64(-62135596800000000000/1000), -1, int64(3600), 0, 5)
	f.Fuzz(func(t *testing.T, route, key, chatID string, nanos int64, messages int, offset int64, turns, waiting int) {
		zone := time.FixedZone("z", int(offset%(30*3600)))
		at := time.Unix(0, nanos).In(zone)
		c := queue.Chat{Route: route, ConversationKey: key, ChatState: queue.ChatState{ChatID: chatID, StartedAt: at, Messages: messages, UpdatedAt: at.Add(time.Duration(messages))}}
		for i := range turns % 8 {
			c.Turns = append(c.Turns, at.Add(time.Duration(i)*time.Second))
		}
		if waiting >= 0 {
			c.Waiting = &waiting
			c.LimitedUntil = &at
		}
		checkAppendChat(t, &c)
	})
}
