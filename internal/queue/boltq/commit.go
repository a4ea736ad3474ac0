package boltq

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/relayd/relayd/internal/queue"
)

// op is one write request. The committer applies a group of them in one
// transaction. apply either returns an error having written nothing (the
// request fails alone, the group goes on) or a *fatalError after a failed
// write (the transaction is rolled back and retried without this request).
// After the commit, commit applies the request's effect on the in-memory
// index (with s.mu held), then finish answers the caller.
type op interface {
	apply(tx *bolt.Tx, g *group) error
	commit(s *Store)
	finish(err error)
}

// group is the state shared by the requests of one write transaction.
type group struct {
	attempt uint64
	now     time.Time
	nowNano int64
	pending int // stored, not dead messages, as of the requests applied so far
}

type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

func fatal(err error) error {
	if err == nil {
		return nil
	}
	return &fatalError{err}
}

// reply is how an op answers its caller; every op embeds one.
type reply struct {
	done chan struct{}
	err  error
}

func (r *reply) init()                 { r.done = make(chan struct{}) }
func (r *reply) finish(err error)      { r.err = err; close(r.done) }
func (r *reply) wait() <-chan struct{} { return r.done }
func (r *reply) result() error         { return r.err }

// waiter is an op a caller waits on.
type waiter interface {
	op
	init()
	wait() <-chan struct{}
	result() error
}

// do submits o to the committer and waits for its answer. If ctx ends
// first, ctx.Err() is returned and o may still be applied.
func (s *Store) do(ctx context.Context, o waiter) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o.init()
	if err := s.submit(o); err != nil {
		return err
	}
	select {
	case <-o.wait():
		return o.result()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// submit queues ops for the committer. They are urgent: a caller waits
// on each, so they end any pause (see commitLoop).
func (s *Store) submit(ops ...op) error {
	// Counted before they can be taken, so the count never misses one queued.
	s.urgent.Add(int64(len(ops)))
	if err := s.commitQ.push(ops...); err != nil {
		s.urgent.Add(-int64(len(ops)))
		return err
	}
	select {
	case s.urgentKick <- struct{}{}:
	default:
	}
	return nil
}

// Reading a large queue (a drain, a replay of dead letters) makes the pages
// read resident through bbolt's memory map. They are clean and the kernel
// could drop them, but they count in the process's RSS, which is what
// memory limits and dashboards watch; the committer unmaps them this often
// once the file is at least dropMin.
const (
	dropEvery = 250 * time.Millisecond
	dropMin   = 32 << 20
)

// commitLoop owns every write transaction. Each round takes everything that
// queued while the previous commit ran and commits it at once: no fixed
// delay, one commit for the whole group.
//
// Logged enqueues alone are not urgent: their callers have their answer.
// While they keep arriving (the queue was not empty when the last commit
// ended) and nothing else waits, a commit starts at most every applyPace,
// so under load bbolt's fsyncs (two a commit) do not crowd out the log's on
// the same disk and each commit applies more. An idle store applies at
// once. Logged enqueues and lease endings whose transaction failed are
// retried first, after a pause (see run). While leases end in a steady
// stream, their endings gather for up to ackPace (see gather).
func (s *Store) commitLoop() {
	defer s.wg.Done()
	var (
		group      []op
		backoff    time.Duration
		lastCommit time.Time
		lastDrop   time.Time
		busy       bool // requests queued while the last commit ran
	)
	pace := cmp.Or(s.opts.applyPace, applyPace)
	gatherPace := cmp.Or(s.opts.ackPace, ackPace)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if busy {
			s.pause(lastCommit.Add(pace), timer)
		}
		if gatherPace > 0 && !lastCommit.IsZero() {
			s.gather(lastCommit.Add(gatherPace), timer)
		}
		var stop, deferred bool
		group, stop, deferred = s.takeGroup(group[:0])
		if len(group) > 0 {
			s.urgent.Add(-int64(len(group) - countApply(group)))
			lastCommit = time.Now()
			retry := s.run(group)
			clear(group)
			// Logged groups left for the next transaction are a backlog
			// already: no pause lets more gather.
			busy = !deferred && s.commitQ.len() > 0
			if lastCommit.Sub(lastDrop) >= dropEvery && s.fileSize >= dropMin {
				// Only this goroutine remaps the file, so the mapping is stable.
				dropMapped(s.db, s.fileSize)
				lastDrop = lastCommit
			}
			if len(retry) == 0 {
				backoff = 0
				continue
			}
			backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
			select {
			case <-s.closing:
				// Logged enqueues stay in the log and are applied at the
				// next Open; leases end with the process anyway.
				s.log.Warn("boltq: closing with logged messages or lease endings not yet in the store; the next start applies the messages", "requests", len(retry))
				for _, o := range retry {
					o.finish(fmt.Errorf("%w: closed before the write could commit", queue.ErrUnavailable))
				}
			case <-time.After(backoff):
				s.urgent.Add(int64(len(retry) - countApply(retry)))
				s.commitQ.pushFront(retry...)
			}
			continue
		}
		if stop {
			return
		}
		<-s.commitQ.kick
	}
}

// takeGroup takes the requests of the next transaction: everything queued,
// except logged groups past applyBudget messages. A request someone waits
// on (an ack above all: until it commits, a crash sends its turn again)
// thus never waits behind more than applyBudget messages being applied,
// however far the committer is behind the log. deferred reports that
// logged groups were left queued. A dead letter's replay places messages,
// so it never goes ahead of a logged group: a conversation keeps the order
// its messages were accepted in.
func (s *Store) takeGroup(dst []op) (_ []op, stop, deferred bool) {
	applied := 0
	dst, stop = s.commitQ.takeIf(dst, maxGroup, func(o op) bool {
		switch o := o.(type) {
		case *applyOp:
			// The first is always taken, so the log is applied however
			// large its groups.
			if deferred || (applied > 0 && applied+o.n > applyBudget) {
				deferred = true
				return false
			}
			applied += o.n
		case *deadOp:
			return !deferred
		}
		return true
	})
	return dst, stop, deferred
}

// run commits ops in one transaction. A request whose write fails is
// dropped from the group and the rest retried. A failed commit (most
// likely a full disk) gives up the disk reserve and fails all but the
// logged enqueues and the lease endings, which run returns to be retried:
// a lease ending that failed for good would hold its conversation until
// the process ends. A caller that stops waiting meanwhile leaves it to the
// store (see do).
func (s *Store) run(ops []op) (retry []op) {
	results := make([]error, len(ops))
	split := false // the lease endings were tried alone
	for len(ops) > 0 {
		s.attempt++
		now := s.now()
		g := group{attempt: s.attempt, now: now, nowNano: unixNano(now), pending: s.pending}
		failed := -1
		err := s.db.Update(func(tx *bolt.Tx) error {
			s.fileSize = tx.Size()
			for i, o := range ops {
				err := o.apply(tx, &g)
				var fe *fatalError
				if errors.As(err, &fe) {
					failed = i
					return err
				}
				results[i] = err
			}
			if err := s.applyHistory(tx); err != nil {
				return err
			}
			if f := s.opts.commitFault; f != nil {
				return f()
			}
			return nil
		})
		switch {
		case err == nil:
			s.commits.Add(1)
			s.historyCommitted(false)
			s.mu.Lock()
			for i, o := range ops {
				if results[i] == nil {
					o.commit(s)
				}
			}
			s.wakeWaiters()
			s.mu.Unlock()
			for i, o := range ops {
				o.finish(results[i])
			}
			return retry
		case failed >= 0 && !isApply(ops[failed]):
			s.log.Error("boltq: write failed; retrying the rest of the group", "err", err)
			ops[failed].finish(fmt.Errorf("boltq: write: %w", err))
			ops = append(ops[:failed], ops[failed+1:]...)
			results = results[:len(ops)]
		default:
			s.log.Error("boltq: commit failed", "err", err, "requests", len(ops))
			s.historyCommitted(true)
			s.releaseReserve()
			err = fmt.Errorf("%w: commit: %v", queue.ErrUnavailable, err)
			var ends []op
			for _, o := range ops {
				switch {
				case isApply(o):
					retry = append(retry, o)
				case isLeaseEnd(o):
					ends = append(ends, o)
				default:
					o.finish(err)
				}
			}
			if len(ends) > 0 && len(retry) > 0 && !split {
				split = true
				// Lease endings alone need few pages, and the acks among
				// them free pages the logged messages can take later.
				ops, results = ends, results[:len(ends)]
				continue
			}
			return append(retry, ends...)
		}
	}
	return retry
}

// pause waits until, unless a request someone waits on is queued (or
// comes) or the store closes first.
func (s *Store) pause(until time.Time, timer *time.Timer) {
	for s.urgent.Load() == 0 {
		wait := time.Until(until)
		if wait <= 0 {
			return
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
			return
		case <-s.urgentKick: // maybe left from a request already served: check again
			timer.Stop()
		case <-s.closing:
			return
		}
	}
}

// Lease endings gather (see gather): a transaction costs two fsyncs and
// the writing of every page it touched, whatever it holds, so under a
// steady stream of acks fewer, larger transactions cost much less CPU a
// message (a dispatch into an instant API made 7 acks a transaction, over
// 20 with a 4 ms pace; 8 ms cost about 5% less CPU a message again). An
// ack waits at most ackPace more; a conversation
// is not leased again until its ack commits, which against a real agent,
// whose turns take seconds, is of no account.
const (
	ackPace = 8 * time.Millisecond
	// gatherMax queued requests are a group large enough not to wait.
	gatherMax = 64
)

// gather waits until, or until the store closes, while requests are
// queued, fewer than gatherMax, and at least twice as many leases are in
// flight: more endings are on their way, so a commit right now would hold
// few. An idle store (one message in flight) never waits, nor does a
// store whose last commit started before until.
func (s *Store) gather(until time.Time, timer *time.Timer) {
	for {
		wait := time.Until(until)
		if wait <= 0 {
			return
		}
		q := s.commitQ.len()
		if q == 0 || q >= gatherMax {
			return
		}
		s.mu.Lock()
		inflight := s.inflight
		s.mu.Unlock()
		if inflight < 2*q {
			return
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
			return
		case <-s.commitQ.kick: // another request: look again
			timer.Stop()
		case <-s.closing:
			timer.Stop()
			return
		}
	}
}

func isApply(o op) bool {
	_, ok := o.(*applyOp)
	return ok
}

func isLeaseEnd(o op) bool {
	switch o.(type) {
	case *leaseOp, *turnOp:
		return true
	}
	return false
}

func countApply(ops []op) int {
	n := 0
	for _, o := range ops {
		if _, quiet := o.(histFlushOp); quiet || isApply(o) {
			n++
		}
	}
	return n
}

// placement is a message written to msgs, for the in-memory index.
type placement struct {
	num uint64
	h   head
}

// place appends m to msgs and to the tail of its conversation.
func place(tx *bolt.Tx, m *queue.Message) (placement, error) {
	convs, msgs := tx.Bucket(bucketConvs), tx.Bucket(bucketMsgs)
	msgs.FillPercent = 0.9 // appends: pack pages fuller, with room for retries to grow a record
	seq, err := msgs.NextSequence()
	if err != nil {
		return placement{}, fatal(err)
	}
	name := convName(m.Route, m.ConversationKey)
	var r convRec
	if v := convs.Get(name); v != nil {
		if r, err = parseConvRec(v); err != nil {
			return placement{}, fatal(err)
		}
		if m.Attempts == 0 && !m.NextAttemptAt.IsZero() {
			// A coalescing wait (see Enqueue) holds only for a message
			// that starts its conversation: this one joins what is there.
			m.NextAttemptAt = time.Time{}
		}
		next := tx.Bucket(bucketNext)
		next.FillPercent = 0.9
		if err := next.Put(u64(r.tail), u64(seq)); err != nil {
			return placement{}, fatal(err)
		}
		r.tail = seq
		r.count++
	} else {
		num, err := convs.NextSequence()
		if err != nil {
			return placement{}, fatal(err)
		}
		r = convRec{num: num, head: seq, tail: seq, count: 1}
	}
	if err := msgs.Put(u64(seq), encodeMessage(nil, m)); err != nil {
		return placement{}, fatal(err)
	}
	if err := convs.Put(name, r.bytes()); err != nil {
		return placement{}, fatal(err)
	}
	at := unixNano(m.NextAttemptAt)
	return placement{num: r.num, h: head{seq: seq, at: at, order: orderTime(at, unixNano(m.EnqueuedAt))}}, nil
}

// commitPlacements adds placed messages to the index: the first message of
// a conversation becomes its head.
func (s *Store) commitPlacements(ps []placement) {
	for _, p := range ps {
		s.pending++
		if c := s.convs[p.num]; c != nil {
			c.count++
			continue
		}
		c := &conv{num: p.num, count: 1, head: p.h}
		s.convs[p.num] = c
		s.schedule(c)
	}
}

// Lease endings.

type leaseKind uint8

const (
	leaseAck leaseKind = iota
	leaseRetry
	leaseRelease
	leaseDead
)

type leaseOp struct {
	reply
	l    *lease
	kind leaseKind
	at   time.Time
	f    queue.Failure

	// chat, when set on an Ack, is stored with compare-and-set in the same
	// transaction (see AckWithChat); chatName is its key.
	chat     *queue.Chat
	chatName []byte
	chatNew  bool   // the chat record was created, not updated
	chatRev  uint64 // the revision it was stored with

	// replies, on an Ack, are messages stored in the same transaction
	// (see AckWithReplies); placed are where they went.
	replies []queue.Message
	placed  []placement

	at0  int64 // at, resolved against the group's clock
	next head
	more bool // the conversation has a next message
}

func (o *leaseOp) apply(tx *bolt.Tx, g *group) error {
	l := o.l
	if l.ended.Load() || l.mark == g.attempt {
		return ErrLeaseEnded
	}
	msgs := tx.Bucket(bucketMsgs)
	key := u64(l.seq)
	if msgs.Get(key) == nil {
		return fmt.Errorf("%w: leased message %s is gone", errCorrupt, l.msg.ID)
	}
	m := l.msg
	switch o.kind {
	case leaseRetry, leaseRelease:
		o.at0 = g.nowNano
		if !o.at.IsZero() {
			o.at0 = o.at.UnixNano()
		}
		m.NextAttemptAt = fromUnixNano(o.at0)
		if o.kind == leaseRetry {
			m.Attempts++
			m.LastStatus = o.f.Status
			m.LastError = o.f.Text()
		}
		if err := msgs.Put(key, encodeMessage(nil, &m)); err != nil {
			return fatal(err)
		}
	case leaseAck, leaseDead:
		name := convName(m.Route, m.ConversationKey)
		convs := tx.Bucket(bucketConvs)
		r, err := parseConvRec(convs.Get(name))
		if err != nil || r.num != l.num || r.head != l.seq {
			return fmt.Errorf("%w: conversation of leased message %s: %+v %v", errCorrupt, l.msg.ID, r, err)
		}
		// Before any other write: a conflict must leave everything as it
		// was, the lease included.
		if o.chat != nil {
			if o.chatNew, o.chatRev, err = putChat(tx, o.chatName, o.chat); err != nil {
				return err
			}
		}
		if o.kind == leaseDead {
			m.Attempts++
			m.LastStatus = o.f.Status
			m.LastError = o.f.Text()
			if err := putDead(tx, queue.DeadLetter{Message: m, Failure: o.f, DeadAt: g.now}); err != nil {
				return err
			}
		}
		if err := msgs.Delete(key); err != nil {
			return fatal(err)
		}
		if o.next, o.more, err = advance(tx, name, r); err != nil {
			return err
		}
		g.pending--
		if err := o.placeReplies(tx, g); err != nil {
			return err
		}
	}
	l.mark = g.attempt
	return nil
}

// placeReplies stores an Ack's replies. They are placed after the lease's
// own writes, so a retried transaction places them once.
func (o *leaseOp) placeReplies(tx *bolt.Tx, g *group) error {
	o.placed = o.placed[:0]
	for i := range o.replies {
		p, err := place(tx, &o.replies[i])
		if err != nil {
			return err
		}
		o.placed = append(o.placed, p)
		g.pending++
	}
	return nil
}

// advance moves a conversation past its head, which was just deleted: the
// next message becomes the head, or the record goes with its last message.
func advance(tx *bolt.Tx, name []byte, r convRec) (head, bool, error) {
	convs, next := tx.Bucket(bucketConvs), tx.Bucket(bucketNext)
	nv := next.Get(u64(r.head))
	if nv == nil {
		return head{}, false, fatal(convs.Delete(name))
	}
	if len(nv) != 8 {
		return head{}, false, fatal(fmt.Errorf("%w: next link of %d bytes", errCorrupt, len(nv)))
	}
	n := binary.BigEndian.Uint64(nv)
	if err := next.Delete(u64(r.head)); err != nil {
		return head{}, false, fatal(err)
	}
	h, err := readHead(tx.Bucket(bucketMsgs), n)
	if err != nil {
		return head{}, false, fatal(err)
	}
	r.head = n
	r.count = max(r.count, 2) - 1
	return h, true, fatal(convs.Put(name, r.bytes()))
}

func putDead(tx *bolt.Tx, dl queue.DeadLetter) error {
	dead, idx := tx.Bucket(bucketDead), tx.Bucket(bucketDeadIdx)
	dead.FillPercent = 0.9
	seq, err := dead.NextSequence()
	if err != nil {
		return fatal(err)
	}
	v, err := json.Marshal(dl)
	if err != nil {
		return fatal(err)
	}
	dk := u64(seq)
	if err := dead.Put(dk, v); err != nil {
		return fatal(err)
	}
	if err := idx.Put(deadByID(dl.ID), dk); err != nil {
		return fatal(err)
	}
	if dl.Delivery != "" {
		if err := idx.Put(append(deadByDeliveryPrefix(dl.Delivery), dk...), marker); err != nil {
			return fatal(err)
		}
	}
	return nil
}

func (o *leaseOp) commit(s *Store) { o.applyEnd(s, 1, 1) }

// applyEnd applies a committed lease ending to the in-memory index: k messages
// were out, dead of them go to the dead letters on a Dead.
func (o *leaseOp) applyEnd(s *Store, k, dead int) {
	l := o.l
	l.ended.Store(true)
	s.inflight -= k
	if o.chatNew {
		s.chats[o.chat.Route]++
	}
	if o.chat != nil {
		s.chatCache.put(o.chatName, o.chat.ChatState, o.chatRev)
	}
	s.commitPlacements(o.placed)
	c := l.c
	c.leased = false
	switch o.kind {
	case leaseRetry, leaseRelease:
		c.head.at = o.at0
		c.head.order = o.at0
		s.schedule(c)
	case leaseAck, leaseDead:
		if o.kind == leaseDead {
			s.dead += dead
		}
		s.pending -= k
		c.count -= k
		if !o.more {
			delete(s.convs, c.num)
			return
		}
		c.head = o.next
		s.schedule(c)
	}
}

// Chats.

type putChatOp struct {
	reply
	name    []byte
	chat    queue.Chat
	created bool
	rev     uint64
}

func (o *putChatOp) apply(tx *bolt.Tx, _ *group) (err error) {
	o.created, o.rev, err = putChat(tx, o.name, &o.chat)
	return err
}

// putChat stores chat under name if the stored revision still equals
// chat.Revision (0: none), and reports whether that created the record and
// its new revision. A conflict or an encoding error returns having written
// nothing.
func putChat(tx *bolt.Tx, name []byte, chat *queue.Chat) (created bool, rev uint64, err error) {
	b := tx.Bucket(bucketChats)
	v := b.Get(name)
	var cur uint64
	if len(v) >= 8 {
		cur = binary.BigEndian.Uint64(v[:8])
	}
	if cur != chat.Revision {
		return false, 0, queue.ErrConflict
	}
	// The record is the revision (8 bytes, set below) and the chat's JSON.
	rec, err := appendChat(make([]byte, 8, 192), chat)
	if err != nil {
		return false, 0, fmt.Errorf("boltq: encode chat: %w", err)
	}
	// Revisions come from one bucket-wide sequence, so a record deleted and
	// created again never repeats a revision a stale writer may hold.
	rev, err = b.NextSequence()
	if err != nil {
		return false, 0, fatal(err)
	}
	binary.BigEndian.PutUint64(rec, rev)
	return v == nil, rev, fatal(b.Put(name, rec))
}

func (o *putChatOp) commit(s *Store) {
	if o.created {
		s.chats[o.chat.Route]++
	}
	s.chatCache.put(o.name, o.chat.ChatState, o.rev)
}

type deleteChatOp struct {
	reply
	name    []byte
	existed bool
}

func (o *deleteChatOp) apply(tx *bolt.Tx, _ *group) error {
	b := tx.Bucket(bucketChats)
	o.existed = b.Get(o.name) != nil
	return fatal(b.Delete(o.name))
}

func (o *deleteChatOp) commit(s *Store) {
	s.chatCache.forget(o.name)
	if !o.existed {
		return
	}
	r := routeOfName(o.name)
	if s.chats[r]--; s.chats[r] <= 0 {
		delete(s.chats, r)
	}
}

// Dead letters.

// deadKeys finds the dead letters an admin id names: the one with that
// message id, else every one with that delivery id.
func deadKeys(tx *bolt.Tx, id string) [][]byte {
	if id == "" {
		return nil
	}
	idx := tx.Bucket(bucketDeadIdx)
	if dk := idx.Get(deadByID(id)); dk != nil {
		return [][]byte{bytes.Clone(dk)}
	}
	var keys [][]byte
	prefix := deadByDeliveryPrefix(id)
	c := idx.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if len(k) == len(prefix)+8 {
			keys = append(keys, bytes.Clone(k[len(prefix):]))
		}
	}
	return keys
}

// takeDead deletes a dead letter and its index entries and returns it.
func takeDead(tx *bolt.Tx, dk []byte) (queue.DeadLetter, error) {
	var dl queue.DeadLetter
	dead, idx := tx.Bucket(bucketDead), tx.Bucket(bucketDeadIdx)
	v := dead.Get(dk)
	if v == nil {
		return dl, fatal(fmt.Errorf("%w: dead letter %x missing", errCorrupt, dk))
	}
	if err := json.Unmarshal(v, &dl); err != nil {
		return dl, fatal(fmt.Errorf("%w: dead letter %x: %v", errCorrupt, dk, err))
	}
	if err := dead.Delete(dk); err != nil {
		return dl, fatal(err)
	}
	if cur := idx.Get(deadByID(dl.ID)); bytes.Equal(cur, dk) {
		if err := idx.Delete(deadByID(dl.ID)); err != nil {
			return dl, fatal(err)
		}
	}
	if dl.Delivery != "" {
		if err := idx.Delete(append(deadByDeliveryPrefix(dl.Delivery), dk...)); err != nil {
			return dl, fatal(err)
		}
	}
	return dl, nil
}

// requeue puts a dead letter's message back at the tail of its
// conversation as a fresh message: same id, no attempts.
func requeue(tx *bolt.Tx, dl queue.DeadLetter) (placement, error) {
	m := dl.Message
	m.Attempts = 0
	m.NextAttemptAt = time.Time{}
	m.LastStatus = 0
	m.LastError = ""
	return place(tx, &m)
}

// deadOp replays or drops the dead letters named by id (see deadKeys), or,
// with all set, up to limit dead letters of route ("" = any) with keys in
// (after, upto].
type deadOp struct {
	reply
	replay bool
	id     string

	all         bool
	route       string
	after, upto uint64
	limit       int

	n      int
	last   uint64
	more   bool
	placed []placement
}

func (o *deadOp) apply(tx *bolt.Tx, g *group) error {
	o.n, o.more, o.placed = 0, false, o.placed[:0]
	var keys [][]byte
	if o.all {
		keys = o.scan(tx)
	} else {
		keys = deadKeys(tx, o.id)
		if len(keys) == 0 {
			return queue.ErrNotFound
		}
	}
	for _, dk := range keys {
		dl, err := takeDead(tx, dk)
		if err != nil {
			return err
		}
		if o.replay {
			p, err := requeue(tx, dl)
			if err != nil {
				return err
			}
			o.placed = append(o.placed, p)
			g.pending++
		}
		o.n++
	}
	return nil
}

func (o *deadOp) scan(tx *bolt.Tx) [][]byte {
	var keys [][]byte
	o.last = o.after
	c := tx.Bucket(bucketDead).Cursor()
	for k, v := c.Seek(u64(o.after + 1)); k != nil; k, v = c.Next() {
		seq := binary.BigEndian.Uint64(k)
		if seq > o.upto {
			return keys
		}
		if len(keys) == o.limit {
			o.more = true
			return keys
		}
		o.last = seq
		if o.route != "" {
			var r struct {
				Route string `json:"route"`
			}
			if json.Unmarshal(v, &r) != nil || r.Route != o.route {
				continue
			}
		}
		keys = append(keys, bytes.Clone(k))
	}
	return keys
}

func (o *deadOp) commit(s *Store) {
	s.dead -= o.n
	s.commitPlacements(o.placed)
}

// Dedupe sweep.

type sweepOp struct {
	reply
	limit int
	n     int
	more  bool
}

func (o *sweepOp) apply(tx *bolt.Tx, g *group) error {
	o.n, o.more = 0, false
	exp, dd := tx.Bucket(bucketDedupExp), tx.Bucket(bucketDedupe)
	var keys [][]byte
	c := exp.Cursor()
	for k, _ := c.First(); len(k) >= 8; k, _ = c.Next() {
		if int64(binary.BigEndian.Uint64(k[:8])) > g.nowNano {
			break
		}
		if len(keys) == o.limit {
			o.more = true
			break
		}
		keys = append(keys, bytes.Clone(k))
	}
	// Delete after iterating: deleting under a bbolt cursor can skip keys.
	for _, k := range keys {
		if err := exp.Delete(k); err != nil {
			return fatal(err)
		}
		// The mark may have been renewed after it expired; then it has a
		// newer expiry entry of its own and stays.
		if v := dd.Get(k[8:]); bytes.Equal(v, k[:8]) {
			if err := dd.Delete(k[8:]); err != nil {
				return fatal(err)
			}
		}
		o.n++
	}
	return nil
}

func (o *sweepOp) commit(*Store) {}

// Ping.

type pingOp struct{ reply }

func (o *pingOp) apply(tx *bolt.Tx, g *group) error {
	return fatal(tx.Bucket(bucketMeta).Put(keyPing, u64(uint64(g.nowNano))))
}

func (o *pingOp) commit(*Store) {}
