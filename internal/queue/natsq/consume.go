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

// item is one held message.
type item struct {
	seq       uint64 // stream sequence
	reply     string // its ack subject (of its latest delivery)
	msg       queue.Message
	hasRecord bool      // an attempts record exists
	due       time.Time // zero: now
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
		c.order = h.msg.EnqueuedAt.UnixNano()
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
			all := c.items
			s.mu.Unlock()
			l.form(all)
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
	it := &item{seq: seq, reply: m.Reply(), msg: msg}
	if r, ok := p.records[attemptsKey(msg.ID)]; ok {
		it.msg.Attempts, it.msg.LastStatus, it.msg.LastError, it.msg.NextAttemptAt =
			r.Attempts, r.LastStatus, r.LastError, r.NextAttemptAt
		it.hasRecord, it.due = true, r.NextAttemptAt
		delete(p.records, attemptsKey(msg.ID))
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
	return l.items[0].msg
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
		c.p.rememberAck(it.seq, 4*s.o.Window)
	}
	c.p.held -= len(l.items)
	c.lastEnd = now
	s.release(c)
	if len(c.items) == 0 && s.policy(l.items[0].msg.Route).Wait <= 0 && c.p.convs[c.key] == c {
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
			r := attemptRecord{Attempts: it.msg.Attempts, LastStatus: it.msg.LastStatus, LastError: it.msg.LastError, NextAttemptAt: at}
			if f != nil && !l.dropped[i] {
				r.Attempts, r.LastStatus, r.LastError = r.Attempts+1, f.Status, f.Text()
			}
			data, _ := json.Marshal(r)
			if _, err := s.attempts.Put(ctx, attemptsKey(it.msg.ID), data); err != nil {
				perr = err
				continue
			}
			recorded[i] = true
		}
	}
	s.mu.Lock()
	for i, it := range l.items {
		it.due = at
		it.msg.NextAttemptAt = at
		it.hasRecord = it.hasRecord || recorded[i]
		if f != nil && !l.dropped[i] {
			it.msg.Attempts++
			it.msg.LastStatus, it.msg.LastError = f.Status, f.Text()
		}
	}
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
		dl := queue.DeadLetter{Message: it.msg, Failure: f, DeadAt: s.o.Now()}
		dl.Attempts = it.msg.Attempts + 1 // the attempt that failed for good
		dl.LastStatus = f.Status
		dl.LastError = f.Text()
		data, err := json.Marshal(dl)
		if err != nil {
			perr = fmt.Errorf("encode dead letter: %w", err)
			break
		}
		if _, perr = s.js.PublishMsg(ctx, &nats.Msg{Subject: s.n.dlqSubject(it.msg.Route), Data: data},
			jetstream.WithMsgID(deadMsgID(it.msg.ID, it.seq)), jetstream.WithExpectStream(s.n.dlq)); perr != nil {
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
		if !it.hasRecord && it.msg.Attempts == 0 {
			continue
		}
		if err := l.s.attempts.Purge(ctx, attemptsKey(it.msg.ID)); err != nil {
			l.s.log.Debug("could not delete attempts record", "message_id", it.msg.ID, "err", err)
		}
	}
}
