package natsq

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relayd/relayd/internal/queue"
)

const (
	// deadRetryDelay is when a turn whose move to the dead letters failed
	// comes back, for the dispatcher to try again.
	deadRetryDelay = 5 * time.Second
	// maxWait bounds how long Next sleeps on the earliest delayed head, so a
	// wall-clock jump or an injected clock cannot strand it.
	maxWait = time.Second
)

// ErrLeaseEnded is returned by a Lease method called after Ack, Retry,
// Release or Dead already ended the lease.
var ErrLeaseEnded = errors.New("natsq: lease already ended")

// attemptRecord is what the attempts bucket keeps per message between
// owners: messages in a stream are immutable.
type attemptRecord struct {
	Attempts      int       `json:"attempts"`
	LastStatus    int       `json:"last_status,omitempty"`
	LastError     string    `json:"last_error,omitempty"`
	NextAttemptAt time.Time `json:"next_attempt_at"`
}

// The local scheduler. The owner of a partition holds every message its
// consumer delivered and has not acked, by conversation, in stream order;
// Next hands out the oldest due head of a conversation with no turn out,
// as the bbolt backend does. Everything here is guarded by Store.mu.

// item is one held message. Only the first keepFor(route) of a
// conversation keep the message itself (m); the rest keep what ordering,
// scheduling and acking need, and their body is read back from the stream
// when a turn needs it (see loadBodies).
type item struct {
	seq       uint64         // stream sequence
	reply     string         // its ack subject (of its latest delivery)
	m         *queue.Message // nil: not kept here
	due       time.Time      // zero: now
	enq       int64          // EnqueuedAt, Unix nanoseconds
	size      int32          // of m as stored, when kept
	hasRecord bool           // an attempts record exists
	isReply   bool           // a reply post: a turn of events stops before it
}

// keepBodies is how many messages of a conversation, at least, its owner
// keeps whole (more when the route's turns carry more): what the next turns
// need. Beyond it, a held message costs only its item (see DefaultWindow).
const keepBodies = 64

// maxBodyBytes bounds the bodies an owner keeps per partition, whatever
// the window: past it (a backlog of many conversations, or long prompts)
// a message arriving keeps only its item, and a turn reads its body back.
const maxBodyBytes = 2 << 20

// keepLocked keeps m, size bytes as stored, as it's body.
func (p *part) keepLocked(it *item, m *queue.Message, size int) {
	it.m, it.size = m, int32(size)
	p.bodies++
	p.bodyBytes += size
}

// uncountLocked takes it's body out of the partition's count: it leaves.
func (p *part) uncountLocked(it *item) {
	if it.m != nil {
		p.bodies--
		p.bodyBytes -= int(it.size)
	}
}

// keepFor is how many messages of a conversation of route keep their body.
func (s *Store) keepFor(route string) int { return max(keepBodies, s.policy(route).Max()) }

// pristine reports whether it's body is as stored in the stream, so
// dropping it loses nothing: no attempt or due time is kept only here.
func (it *item) pristine() bool {
	return it.m != nil && !it.hasRecord && it.due.IsZero() && it.m.Attempts == 0
}

// conv is a conversation with messages held, or whose last turn end is
// still needed for the coalescing wait.
type conv struct {
	p       *part
	key     string
	items   []*item // oldest first
	out     *lease  // the turn out, if any
	queued  bool    // in the ready or the delayed heap
	order   int64   // heap keys, set when queued
	seq     uint64
	lastEnd time.Time // when its last turn ended here
}

func (c *conv) live() bool {
	return !c.p.stopped && !c.p.draining && c.p.convs[c.key] == c
}

// sched holds the conversations ready to go and those waiting for a time.
type sched struct {
	ready   convHeap
	delayed convHeap
	wake    chan struct{} // closed and replaced when a head is scheduled
	waiters int
}

func (sc *sched) init() { sc.wake = make(chan struct{}) }

// convHeap orders conversations by order, then by head sequence.
type convHeap []*conv

func (h convHeap) Len() int { return len(h) }
func (h convHeap) Less(i, j int) bool {
	if h[i].order != h[j].order {
		return h[i].order < h[j].order
	}
	return h[i].seq < h[j].seq
}
func (h convHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *convHeap) Push(x any)   { *h = append(*h, x.(*conv)) }
func (h *convHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return c
}

// scheduleLocked makes c's head leasable: ready at once (ordered by its
// enqueue time) or, when due later, through the delayed heap.
func (s *Store) scheduleLocked(c *conv, now time.Time) {
	if c.queued || c.out != nil || len(c.items) == 0 || !c.live() {
		return
	}
	h := c.items[0]
	c.queued, c.seq = true, h.seq
	if h.due.After(now) {
		c.order = h.due.UnixNano()
		heap.Push(&s.delayed, c)
	} else {
		c.order = h.enq
		if !h.due.IsZero() {
			c.order = h.due.UnixNano()
		}
		heap.Push(&s.ready, c)
	}
	s.wakeAllLocked()
}

func (s *Store) wakeAllLocked() {
	if s.waiters > 0 {
		close(s.wake)
		s.wake = make(chan struct{})
	}
}

// Next returns the oldest due turn of the partitions this replica owns,
// waiting until there is one, ctx ends or the store closes.
func (s *Store) Next(ctx context.Context) (queue.Lease, error) {
	s.mu.Lock()
	for {
		if s.closed {
			s.mu.Unlock()
			return nil, queue.ErrClosed
		}
		if err := ctx.Err(); err != nil {
			s.mu.Unlock()
			return nil, err
		}
		now := s.o.Now()
		for len(s.delayed) > 0 && s.delayed[0].order <= now.UnixNano() {
			heap.Push(&s.ready, heap.Pop(&s.delayed))
		}
		for len(s.ready) > 0 {
			c := heap.Pop(&s.ready).(*conv)
			c.queued = false
			if c.out != nil || len(c.items) == 0 || !c.live() {
				continue
			}
			if !c.p.validTil.After(now) {
				// The claim may have lapsed: another replica could own the
				// partition by now. Wait for the next refresh.
				c.p.stalled = true
				continue
			}
			if c.items[0].due.After(now) {
				s.scheduleLocked(c, now)
				continue
			}
			l := &lease{s: s, c: c}
			c.out = l
			c.p.out++
			s.mu.Unlock()
			if err := l.form(); err != nil {
				// A body could not be read back: as a release, the
				// conversation tries again a little later.
				s.log.Warn("could not read a held message from the stream; trying again shortly",
					"partition", c.p.n, "err", err)
				s.mu.Lock()
				now := s.o.Now()
				if len(c.items) > 0 {
					c.items[0].due = now.Add(readRetryDelay)
				}
				s.release(c)
				s.scheduleLocked(c, now)
				continue
			}
			return l, nil
		}
		wake := s.wake
		s.waiters++
		var fire <-chan time.Time
		var timer *time.Timer
		if len(s.delayed) > 0 {
			timer = time.NewTimer(min(time.Duration(s.delayed[0].order-now.UnixNano()), maxWait))
			fire = timer.C
		}
		s.mu.Unlock()
		select {
		case <-wake:
		case <-fire:
		case <-ctx.Done():
		case <-s.ctx.Done():
		}
		if timer != nil {
			timer.Stop()
		}
		s.mu.Lock()
		s.waiters--
	}
}

// receive holds a message p's consumer delivered.
func (s *Store) receive(p *part, epoch int, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		return
	}
	var msg queue.Message
	derr := json.Unmarshal(m.Data(), &msg)
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.stopped || p.epoch != epoch {
		return // a delivery to a consumer this replica no longer reads
	}
	// Deliveries come in order; one missing (lost in a reconnect, say)
	// would let a later message of its conversation go first. Read the
	// partition again from its start.
	if p.lastCSeq != 0 && md.Sequence.Consumer > p.lastCSeq+1 {
		s.log.Warn("a delivery went missing; reading the partition again", "partition", p.n)
		s.signalLocked(p, modeResync)
		return
	}
	p.lastCSeq = max(p.lastCSeq, md.Sequence.Consumer)
	seq := md.Sequence.Stream
	if _, ok := p.acked[seq]; ok {
		// Acked here, but the ack was lost with a connection: the message
		// was delivered, so ack it again rather than send it again, after
		// newer messages of its conversation.
		_ = s.nc.Publish(m.Reply(), ackAck)
		return
	}
	if it, ok := p.seqs[seq]; ok {
		// A redelivery of a message held here (after the consumer was
		// re-created, or its ack wait): acks now go to this delivery.
		it.reply = m.Reply()
		return
	}
	if derr != nil {
		// A message that cannot be read can never be delivered.
		s.log.Error("dropping unreadable message", "partition", p.n, "seq", seq, "err", derr)
		_ = s.nc.Publish(m.Reply(), []byte("+TERM relayd: unreadable message"))
		return
	}
	key := msg.Route + "\x00" + msg.ConversationKey
	c := p.convs[key]
	if c == nil {
		c = &conv{p: p, key: key}
		p.convs[key] = c
	}
	it := &item{seq: seq, reply: m.Reply(), enq: msg.EnqueuedAt.UnixNano(), isReply: msg.IsReply()}
	if len(c.items) < s.keepFor(msg.Route) && p.bodyBytes+len(m.Data()) <= maxBodyBytes {
		p.keepLocked(it, &msg, len(m.Data()))
	}
	if r, ok := p.records[attemptsKey(msg.ID)]; ok {
		it.hasRecord, it.due = true, r.NextAttemptAt
		if it.m != nil {
			p.applyRecordLocked(it.m)
		} // else applied when the body is read back
	}
	now := s.o.Now()
	if len(c.items) == 0 && c.out == nil && !msg.IsReply() && !msg.EnqueuedAt.IsZero() {
		// The coalescing wait: a message that starts its conversation (it
		// did not arrive while a turn of it was out or pending) is due a
		// wait after it was accepted.
		if w := s.policy(msg.Route).Wait; w > 0 && (c.lastEnd.IsZero() || c.lastEnd.Before(msg.EnqueuedAt)) {
			if due := msg.EnqueuedAt.Add(w); due.After(now) && due.After(it.due) {
				it.due = due
			}
		}
	}
	c.items = append(c.items, it)
	p.seqs[seq] = it
	p.held++
	s.scheduleLocked(c, now)
}

// The JetStream ack protocol, spoken on the message's reply subject.
var (
	ackAck  = []byte("+ACK")
	ackTerm = []byte("+TERM relayd: dead-lettered")
)

// lease is one turn: the first messages of a conversation held here.
type lease struct {
	s          *Store
	c          *conv
	items      []*item // the turn's messages, oldest first
	dropped    []bool  // superseded, by item
	send, gone []queue.Message

	mu   sync.Mutex
	done bool
}

func (l *lease) Message() queue.Message {
	if len(l.send) > 0 {
		return l.send[0]
	}
	return *l.items[0].m
}

func (l *lease) Messages() []queue.Message   { return l.send }
func (l *lease) Superseded() []queue.Message { return l.gone }

// begin marks the lease ended, once.
func (l *lease) begin() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return ErrLeaseEnded
	}
	l.done = true
	return nil
}

// answer sends body for every message of the turn. Acks are not
// confirmed one by one: this replica owns the partition, so nothing else
// can deliver the conversation's next message meanwhile, and the consumer
// redelivers nothing it holds (see consumerAckWait). An ack lost with the
// connection means a duplicate (the reconnect re-reads the partition), as
// after a crash; giving a partition back flushes the acks first.
func (l *lease) answer(body []byte) error {
	l.s.mu.Lock()
	replies := make([]string, len(l.items))
	for i, it := range l.items {
		replies[i] = it.reply
	}
	l.s.mu.Unlock()
	for _, r := range replies {
		if err := l.s.nc.Publish(r, body); err != nil {
			return err
		}
	}
	return nil
}

// finish drops the turn's messages from the conversation: acked or dead.
func (l *lease) finish() {
	s, c := l.s, l.c
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.o.Now()
	c.items = c.items[len(l.items):]
	for _, it := range l.items {
		delete(c.p.seqs, it.seq)
		c.p.rememberAck(it.seq, rememberedAcks)
		c.p.uncountLocked(it)
	}
	c.p.held -= len(l.items)
	c.lastEnd = now
	s.release(c)
	if len(c.items) == 0 && s.policy(l.items[0].m.Route).Wait <= 0 && c.p.convs[c.key] == c {
		delete(c.p.convs, c.key)
	}
	s.scheduleLocked(c, now)
}

// release ends c's turn out. s.mu is held.
func (s *Store) release(c *conv) {
	c.out = nil
	c.p.out--
	if c.p.out == 0 && c.p.draining && c.p.idle != nil {
		close(c.p.idle)
		c.p.idle = nil
	}
}

// Ack confirms the turn: every message of it is acked, the last one
// confirmed by the server.
func (l *lease) Ack(ctx context.Context) error {
	if err := l.begin(); err != nil {
		return err
	}
	ctx, cancel := l.s.opCtx(ctx)
	defer cancel()
	err := l.answer(ackAck)
	l.finish()
	if err != nil {
		return l.s.fail("ack", err)
	}
	l.s.gone(len(l.items))
	l.dropRecords(ctx)
	return nil
}

// Retry records the failed attempt of every message sent and keeps the
// turn's messages here, due again at at, still their conversation's head:
// only this conversation waits.
func (l *lease) Retry(ctx context.Context, at time.Time, f queue.Failure) error {
	return l.putBack(ctx, at, &f)
}

// Release puts the turn back, due at at, without counting an attempt.
func (l *lease) Release(ctx context.Context, at time.Time) error {
	return l.putBack(ctx, at, nil)
}

// putBack writes the retry records (so attempts and due times survive a
// change of owner), then makes the conversation due at at. A release due
// now writes nothing: there is nothing to keep.
func (l *lease) putBack(ctx context.Context, at time.Time, f *queue.Failure) error {
	if err := l.begin(); err != nil {
		return err
	}
	s := l.s
	now := s.o.Now()
	if at.IsZero() {
		at = now
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var perr error
	recorded := make([]bool, len(l.items))
	if f != nil || at.After(now) {
		for i, it := range l.items {
			r := attemptRecord{Attempts: it.m.Attempts, LastStatus: it.m.LastStatus, LastError: it.m.LastError, NextAttemptAt: at}
			if f != nil && !l.dropped[i] {
				r.Attempts, r.LastStatus, r.LastError = r.Attempts+1, f.Status, f.Text()
			}
			data, _ := json.Marshal(r)
			if _, err := s.attempts.Put(ctx, attemptsKey(it.m.ID), data); err != nil {
				perr = err
				continue
			}
			recorded[i] = true
		}
	}
	s.mu.Lock()
	for i, it := range l.items {
		it.due = at
		it.m.NextAttemptAt = at
		it.hasRecord = it.hasRecord || recorded[i]
		if f != nil && !l.dropped[i] {
			it.m.Attempts++
			it.m.LastStatus, it.m.LastError = f.Status, f.Text()
		}
	}
	s.trimLocked(l.c, 0, len(l.items))
	s.release(l.c)
	s.scheduleLocked(l.c, now)
	s.mu.Unlock()
	if perr != nil {
		// The delay holds here all the same; only a next owner would not
		// know the attempt.
		return s.fail("record attempt", perr)
	}
	return nil
}

// Dead stores the turn's messages as dead letters, then terminates them
// all; a dead letter is never lost between the two, at worst stored twice.
func (l *lease) Dead(ctx context.Context, f queue.Failure) error {
	if err := l.begin(); err != nil {
		return err
	}
	s := l.s
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var perr error
	for i, it := range l.items {
		if l.dropped[i] {
			continue
		}
		dl := queue.DeadLetter{Message: *it.m, Failure: f, DeadAt: s.o.Now()}
		dl.Attempts = it.m.Attempts + 1 // the attempt that failed for good
		dl.LastStatus = f.Status
		dl.LastError = f.Text()
		data, err := json.Marshal(dl)
		if err != nil {
			perr = fmt.Errorf("encode dead letter: %w", err)
			break
		}
		if _, perr = s.js.PublishMsg(ctx, &nats.Msg{Subject: s.n.dlqSubject(it.m.Route), Data: data},
			jetstream.WithMsgID(deadMsgID(it.m.ID, it.seq)), jetstream.WithExpectStream(s.n.dlq)); perr != nil {
			break
		}
	}
	if perr != nil {
		// Not stored: bring the turn back later; the dispatcher decides again.
		s.mu.Lock()
		for _, it := range l.items {
			it.due = s.o.Now().Add(deadRetryDelay)
		}
		s.release(l.c)
		s.scheduleLocked(l.c, s.o.Now())
		s.mu.Unlock()
		return s.fail("store dead letter", perr)
	}
	err := l.answer(ackTerm)
	l.finish()
	if err != nil {
		return s.fail("term", err)
	}
	s.gone(len(l.items))
	l.dropRecords(ctx)
	return nil
}

// dropRecords deletes the attempts records of a finished turn; a record
// whose delete fails expires with the bucket's TTL.
func (l *lease) dropRecords(ctx context.Context) {
	for _, it := range l.items {
		if !it.hasRecord && it.m.Attempts == 0 {
			continue
		}
		if err := l.s.attempts.Purge(ctx, attemptsKey(it.m.ID)); err != nil {
			l.s.log.Debug("could not delete attempts record", "message_id", it.m.ID, "err", err)
		}
	}
}

// readRetryDelay is when a conversation whose turn could not read a held
// message's body back from the stream tries again.
const readRetryDelay = time.Second

// applyRecordLocked gives m the attempts record read for it when the
// partition was taken, once: it is its conversation's from then on.
func (p *part) applyRecordLocked(m *queue.Message) {
	k := attemptsKey(m.ID)
	if r, ok := p.records[k]; ok {
		m.Attempts, m.LastStatus, m.LastError, m.NextAttemptAt = r.Attempts, r.LastStatus, r.LastError, r.NextAttemptAt
		delete(p.records, k)
	}
}

// loadBodies makes sure the first n items of c (its turn is out, so they
// only grow at the tail meanwhile) keep their body, reading those that do
// not back from the stream by sequence. A message the stream no longer has
// (acked by a previous owner whose ack arrived late) is dropped from c;
// removed then says so, and the caller looks at c.items again.
func (s *Store) loadBodies(c *conv, n int) (removed bool, err error) {
	s.mu.Lock()
	var want []*item
	for _, it := range c.items[:min(n, len(c.items))] {
		if it.m == nil {
			want = append(want, it)
		}
	}
	s.mu.Unlock()
	if len(want) == 0 {
		return false, nil
	}
	ctx, cancel := s.opCtx(s.ctx)
	defer cancel()
	got := make([]*queue.Message, len(want))
	sizes := make([]int, len(want))
	var gone map[*item]bool
	for i, it := range want {
		rm, err := s.stream.GetMsg(ctx, it.seq)
		if f := s.readFault.Load(); f != nil {
			rm, err = nil, *f
		}
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			if gone == nil {
				gone = map[*item]bool{}
			}
			gone[it] = true
			continue
		}
		if err != nil {
			err = fmt.Errorf("read message %d: %w", it.seq, err)
			s.mu.Lock()
			s.keepBodiesLocked(c, want[:i], got[:i], sizes)
			s.mu.Unlock()
			return false, err
		}
		var m queue.Message
		if err := json.Unmarshal(rm.Data, &m); err != nil {
			return false, fmt.Errorf("decode message %d: %w", it.seq, err)
		}
		got[i], sizes[i] = &m, len(rm.Data)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keepBodiesLocked(c, want, got, sizes)
	if len(gone) > 0 {
		// A new slice: ended leases may still look at the old one.
		kept := make([]*item, 0, len(c.items))
		for _, it := range c.items {
			if !gone[it] {
				kept = append(kept, it)
				continue
			}
			s.log.Warn("a held message is no longer in the stream; dropping it", "partition", c.p.n, "seq", it.seq)
			_ = s.nc.Publish(it.reply, ackAck) // frees its slot, if the consumer still counts it
			delete(c.p.seqs, it.seq)
			c.p.rememberAck(it.seq, rememberedAcks)
			c.p.uncountLocked(it)
			c.p.held--
		}
		c.items = kept
	}
	return len(gone) > 0, nil
}

// keepBodiesLocked stores the bodies read for items (nil: not read).
func (s *Store) keepBodiesLocked(c *conv, items []*item, bodies []*queue.Message, sizes []int) {
	for i, it := range items {
		if bodies[i] == nil || it.m != nil {
			continue
		}
		c.p.keepLocked(it, bodies[i], sizes[i])
		if it.hasRecord {
			c.p.applyRecordLocked(it.m)
		}
	}
}

// trimLocked drops the bodies of c's items from..to that lie beyond the
// first keepFor(route) and only repeat the stream: what a turn read back
// to look past its end, or a long turn put back.
func (s *Store) trimLocked(c *conv, from, to int) {
	if len(c.items) == 0 || c.items[0].m == nil {
		return
	}
	from, to = max(from, s.keepFor(c.items[0].m.Route)), min(to, len(c.items))
	if from >= to {
		return
	}
	for _, it := range c.items[from:to] {
		if it.pristine() {
			c.p.uncountLocked(it)
			it.m, it.size = nil, 0
		}
	}
}
