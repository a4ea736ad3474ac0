package boltq

import (
	"reflect"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/queue"
)

// TestChatCacheReadsAsFile holds GetChat from the cache to what it reads
// from the file: after each write, the record GetChat returns equals the
// one a store opened afresh on the file decodes, times included.
func TestChatCacheReadsAsFile(t *testing.T) {
	t.Parallel()
	now := time.Now() // Local, with a monotonic reading
	tests := []struct {
		name string
		st   queue.ChatState
	}{
		{name: "local times", st: queue.ChatState{ChatID: "c1", StartedAt: now, Messages: 1, UpdatedAt: now}},
		{name: "utc", st: queue.ChatState{ChatID: "c1", StartedAt: now.UTC(), UpdatedAt: now.UTC()}},
		{name: "other zone", st: queue.ChatState{ChatID: "c1", StartedAt: now.In(time.FixedZone("X", 5*3600+1800)), UpdatedAt: now.In(time.FixedZone("", -7*3600))}},
		{name: "zero times, no turns", st: queue.ChatState{ChatID: "c1", Turns: []time.Time{}}},
		{name: "turns", st: queue.ChatState{ChatID: "c1", UpdatedAt: now, Turns: []time.Time{now.Add(-time.Minute).UTC(), now}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, path := openTemp(t, Options{})
			mustEnqueue(t, s, newMsg("m1", "r1", "A"))
			if err := s.PutChat(ctxT(t), "r1", "A", tc.st); err != nil {
				t.Fatalf("put: %v", err)
			}
			// Through a lease's ack as well: another write path.
			st := mustChat(t, s, "r1", "A")
			st.Messages++
			if err := mustNext(t, s).(chatAcker).AckWithChat(ctxT(t), "r1", "A", st); err != nil {
				t.Fatalf("ack with chat: %v", err)
			}
			cached := mustChat(t, s, "r1", "A")
			if cached.Revision == st.Revision || cached.Messages != st.Messages {
				t.Fatalf("cached record not the one written: %+v", cached)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if got := mustChat(t, openAt(t, path, Options{}), "r1", "A"); !reflect.DeepEqual(got, cached) {
				t.Errorf("from the cache\n%#v\nfrom the file\n%#v", cached, got)
			}
		})
	}
}

// TestChatCacheWrites: every write path leaves GetChat with what the file
// holds; a caller's changes to a returned record do not reach the cache.
func TestChatCacheWrites(t *testing.T) {
	t.Parallel()
	s, _ := openTemp(t, Options{})
	if st := mustChat(t, s, "r1", "A"); st.Revision != 0 {
		t.Fatalf("no record: %+v", st)
	}
	now := time.Now().UTC()
	if err := s.PutChat(ctxT(t), "r1", "A", queue.ChatState{ChatID: "c1", Turns: []time.Time{now}}); err != nil {
		t.Fatal(err)
	}
	st := mustChat(t, s, "r1", "A")
	if st.ChatID != "c1" || st.Revision == 0 {
		t.Fatalf("after put: %+v", st)
	}
	st.Turns[0] = time.Time{}
	if again := mustChat(t, s, "r1", "A"); !again.Turns[0].Equal(now) {
		t.Fatalf("the caller's change reached the cache: %v", again.Turns)
	}
	stale := st
	st.ChatID = "c2"
	if err := s.PutChat(ctxT(t), "r1", "A", st); err != nil {
		t.Fatal(err)
	}
	if err := s.PutChat(ctxT(t), "r1", "A", stale); err == nil {
		t.Fatal("a stale revision was stored")
	}
	if got := mustChat(t, s, "r1", "A"); got.ChatID != "c2" || got.Revision <= st.Revision {
		t.Fatalf("after a conflict: %+v", got)
	}
	if err := s.DeleteChat(ctxT(t), "r1", "A"); err != nil {
		t.Fatal(err)
	}
	if got := mustChat(t, s, "r1", "A"); got.Revision != 0 || got.ChatID != "" {
		t.Fatalf("after delete: %+v", got)
	}
}

func TestChatCacheBounded(t *testing.T) {
	t.Parallel()
	var c chatCache
	for i := range maxCachedChats + 10 {
		c.put(convName("r", string(rune('a'+i%26))+time.Duration(i).String()), queue.ChatState{ChatID: "x"}, uint64(i+1))
	}
	if n := len(c.m); n != maxCachedChats {
		t.Fatalf("%d entries, want %d", n, maxCachedChats)
	}
	// A fill that raced a write is not cached.
	_, gen, _ := c.get([]byte("k"))
	c.put([]byte("other"), queue.ChatState{}, 1)
	c.fill([]byte("k"), queue.ChatState{ChatID: "old"}, gen)
	if _, _, ok := c.get([]byte("k")); ok {
		t.Fatal("a fill older than a write was cached")
	}
}
