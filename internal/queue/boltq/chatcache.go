package boltq

import (
	"sync"
	"time"

	"github.com/relayd/relayd/internal/queue"
)

// maxCachedChats bounds the chat cache: enough for every conversation
// of a busy relayd to find its record there, a few hundred KB.
const maxCachedChats = 4096

// chatCache holds chat records as GetChat would decode them, so that a
// turn does not read and decode the record its conversation's previous
// turn just wrote (a read transaction and a JSON decode a message). Only
// the committer writes the chats bucket, and it updates the cache once a
// write committed (see the ops' commit), so an entry is never older than
// the last committed write of its record. A record read from the file is
// cached only if no write touched the cache meanwhile (gen): a read that
// raced a commit may have seen the record before it.
type chatCache struct {
	mu  sync.RWMutex
	gen uint64
	m   map[string]queue.ChatState // by convName; a zero state: no record
}

func (c *chatCache) get(name []byte) (queue.ChatState, uint64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	st, ok := c.m[string(name)]
	if ok {
		st.Turns = cloneTurns(st.Turns)
	}
	return st, c.gen, ok
}

// fill caches a record read from the file, unless the cache changed since
// gen was read (before the read began).
func (c *chatCache) fill(name []byte, st queue.ChatState, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	c.store(string(name), st)
}

// put records a committed write of the record: st as stored, with its
// new revision.
func (c *chatCache) put(name []byte, st queue.ChatState, rev uint64) {
	st.StartedAt, st.UpdatedAt = asDecoded(st.StartedAt), asDecoded(st.UpdatedAt)
	turns := cloneTurns(st.Turns)
	for i, t := range turns {
		turns[i] = asDecoded(t)
	}
	st.Turns, st.Revision = turns, rev
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.store(string(name), st)
}

// forget drops the record's entry (deleted, or a write conflicted).
func (c *chatCache) forget(name []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.m, string(name))
}

func (c *chatCache) store(name string, st queue.ChatState) {
	if c.m == nil {
		c.m = make(map[string]queue.ChatState)
	}
	if _, ok := c.m[name]; !ok && len(c.m) >= maxCachedChats {
		for k := range c.m { // any one: map order is random enough
			delete(c.m, k)
			break
		}
	}
	c.m[name] = st
}

// cloneTurns copies turns, so no caller shares the cache's; empty is nil,
// as decoding an omitted "turns" gives.
func cloneTurns(turns []time.Time) []time.Time {
	if len(turns) == 0 {
		return nil
	}
	return append([]time.Time(nil), turns...)
}

// asDecoded is t as it reads back from the record's JSON (RFC 3339): no
// monotonic clock reading; UTC for a zero offset ("Z"), else Local when
// the offset is Local's at t, else a fixed zone of the offset.
func asDecoded(t time.Time) time.Time {
	t = t.Round(0)
	_, off := t.Zone()
	if off == 0 {
		return t.UTC()
	}
	if _, local := t.In(time.Local).Zone(); local == off {
		return t.In(time.Local)
	}
	return t.In(time.FixedZone("", off))
}
