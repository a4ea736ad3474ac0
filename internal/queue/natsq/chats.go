package natsq

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/xtime"
)

// GetChat returns the conversation's state with its KV revision, or a zero
// state (Revision 0) when there is none.
func (s *Store) GetChat(ctx context.Context, route, key string) (queue.ChatState, error) {
	k := chatKey(route, key)
	if st, ok := s.chatCache.get(k); ok {
		return st, nil
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	e, err := s.chats.Get(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return queue.ChatState{}, nil
	}
	if err != nil {
		return queue.ChatState{}, s.fail("get chat", err)
	}
	var st queue.ChatState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return queue.ChatState{}, fmt.Errorf("natsq: chat %s/%s: %w", route, key, err)
	}
	st.Revision = e.Revision()
	s.chatCache.put(k, st)
	return st, nil
}

// PutChat stores st if the stored revision is still st.Revision: Create
// when it is 0, Update with the revision otherwise. Two replicas racing to
// start a chat for one conversation: one wins, the other gets ErrConflict.
func (s *Store) PutChat(ctx context.Context, route, key string, st queue.ChatState) error {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("natsq: encode chat: %w", err)
	}
	k := chatKey(route, key)
	var rev uint64
	if st.Revision == 0 {
		rev, err = s.chats.Create(ctx, k, data)
	} else {
		rev, err = s.chats.Update(ctx, k, data, st.Revision)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		s.chatCache.drop(k)
		return queue.ErrConflict
	}
	if err != nil {
		s.chatCache.drop(k)
		return s.fail("put chat", err)
	}
	st.Revision = rev
	s.chatCache.put(k, st)
	return nil
}

// DeleteChat forgets the conversation's chat; missing is not an error.
func (s *Store) DeleteChat(ctx context.Context, route, key string) error {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	s.chatCache.drop(chatKey(route, key))
	if err := s.chats.Purge(ctx, chatKey(route, key)); err != nil {
		return s.fail("delete chat", err)
	}
	return nil
}

// ListChats returns every stored conversation and every conversation with
// queued messages, ordered by route and key, each with the number of its
// messages waiting: read in one pass over the bucket, and the per-subject
// counts of the stream (a conversation's messages have a subject of their
// own).
func (s *Store) ListChats(ctx context.Context) ([]queue.Chat, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	out := []queue.Chat{}
	err := readAll(ctx, s.chats, func(e jetstream.KeyValueEntry) {
		route, key, err := parseChatKey(e.Key())
		if err != nil {
			s.log.Warn("skipping chat", "err", err)
			return
		}
		var st queue.ChatState
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			s.log.Warn("skipping unreadable chat", "route", route, "err", err)
			return
		}
		st.Revision = e.Revision()
		out = append(out, queue.Chat{Route: route, ConversationKey: key, ChatState: st})
	})
	if err != nil {
		return nil, s.fail("list chats", err)
	}
	if err := s.countWaiting(ctx, &out); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b queue.Chat) int {
		return cmp.Or(cmp.Compare(a.Route, b.Route), cmp.Compare(a.ConversationKey, b.ConversationKey))
	})
	return out, nil
}

// maxUnnamed bounds how many conversations with messages and no chat a
// listing names, each by reading its newest message.
const maxUnnamed = 1000

// countWaiting sets Waiting on each chat and adds the conversations that
// have messages queued but no chat yet.
func (s *Store) countWaiting(ctx context.Context, out *[]queue.Chat) error {
	counts, err := subjectCounts(ctx, s.stream, s.n.msgsWildcard())
	if err != nil {
		return s.fail("count waiting messages", err)
	}
	seen := map[string]bool{}
	for i := range *out {
		c := &(*out)[i]
		subj := s.n.convSubject(partitionOf(c.Route, c.ConversationKey, s.o.Partitions), c.Route, c.ConversationKey)
		n := int(counts[subj])
		c.Waiting = &n
		seen[subj] = true
	}
	unnamed := 0
	for subj, n := range counts {
		if seen[subj] || n == 0 || strings.Count(subj, ".") != 3 {
			continue // named, or the partition subject of an older release
		}
		if unnamed++; unnamed > maxUnnamed {
			s.log.Warn("listing only some of the conversations that have no chat yet", "listed", maxUnnamed)
			break
		}
		rm, err := s.stream.GetLastMsgForSubject(ctx, subj)
		if err != nil {
			continue // acked meanwhile
		}
		var m queue.Message
		if json.Unmarshal(rm.Data, &m) != nil {
			continue
		}
		w := int(n)
		*out = append(*out, queue.Chat{Route: m.Route, ConversationKey: m.ConversationKey, Waiting: &w})
	}
	return nil
}

// chatCache keeps the chat records this replica read or wrote, so a
// delivery costs one KV request (the compare-and-set) rather than two: the
// partition's owner is the only replica sending its conversations. Every
// change any replica makes reaches the chats watcher (see watchChats),
// which drops an entry whose revision it does not match; a conflict or an
// error drops it too. A record read from the cache can be as old as the
// watcher's lag, as one read from the bucket is by the time it is used.
type chatCache struct {
	mu sync.Mutex
	m  map[string]queue.ChatState
}

// maxCachedChats bounds the cache; past it, it starts again empty.
const maxCachedChats = 100_000

func (c *chatCache) get(k string) (queue.ChatState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.m[k]
	if ok {
		st.Turns = slices.Clone(st.Turns)
	}
	return st, ok
}

func (c *chatCache) put(k string, st queue.ChatState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCachedChats {
		c.m = map[string]queue.ChatState{}
	}
	st.Turns = slices.Clone(st.Turns)
	c.m[k] = st
}

func (c *chatCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = nil
}

func (c *chatCache) drop(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, k)
}

// seen drops k unless the cached record is at rev.
func (c *chatCache) seen(k string, rev uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[k]; ok && st.Revision != rev {
		delete(c.m, k)
	}
}

// chatCounts counts the chats bucket's keys by route for ChatCounts. A
// watcher over the bucket keeps them current with every replica's writes,
// so no scrape lists the chats; it reads headers only, and holds one key
// per chat.
type chatCounts struct {
	ready     chan struct{} // closed once the bucket's initial keys are counted
	readyOnce sync.Once

	mu     sync.Mutex
	keys   map[string]string // KV key → route
	routes map[string]int
}

func newChatCounts() *chatCounts { return &chatCounts{ready: make(chan struct{})} }

// snapshot copies the counts.
func (c *chatCounts) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.routes)
}

// reset replaces every count with those of keys.
func (c *chatCounts) reset(keys map[string]string) {
	routes := map[string]int{}
	for _, r := range keys {
		routes[r]++
	}
	c.mu.Lock()
	c.keys, c.routes = keys, routes
	c.mu.Unlock()
	c.readyOnce.Do(func() { close(c.ready) })
}

// set records that key (of route) exists or not.
func (c *chatCounts) set(key, route string, exists bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, had := c.keys[key]
	switch {
	case exists && !had:
		c.keys[key] = route
		c.routes[route]++
	case !exists && had:
		delete(c.keys, key)
		if c.routes[route]--; c.routes[route] <= 0 {
			delete(c.routes, route)
		}
	}
}

// watchChats keeps s.chatCounts current until Close, starting the watch
// again after a failure.
func (s *Store) watchChats() {
	defer s.wg.Done()
	for wait := 500 * time.Millisecond; ; wait = min(2*wait, 30*time.Second) {
		err := s.watchChatsOnce()
		if s.ctx.Err() != nil {
			return
		}
		s.log.Warn("watching chats failed; conversation counts may lag", "err", err)
		if xtime.Sleep(s.ctx, wait) != nil {
			return
		}
	}
}

func (s *Store) watchChatsOnce() error {
	// Changes made while no watcher ran are unknown: forget what is cached.
	s.chatCache.clear()
	w, err := s.chats.WatchAll(s.ctx, jetstream.MetaOnly())
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	initial := map[string]string{} // until the watcher's end-of-initial-values marker
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watcher closed")
			}
			if e == nil {
				s.chatCounts.reset(initial)
				initial = nil
				continue
			}
			route, _, err := parseChatKey(e.Key())
			if err != nil {
				continue
			}
			exists := e.Operation() == jetstream.KeyValuePut
			s.chatCache.seen(e.Key(), e.Revision())
			if initial != nil {
				if exists {
					initial[e.Key()] = route
				}
				continue
			}
			s.chatCounts.set(e.Key(), route, exists)
		case <-s.ctx.Done():
			return s.ctx.Err()
		}
	}
}
