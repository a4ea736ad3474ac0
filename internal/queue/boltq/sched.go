package boltq

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/relayd/relayd/internal/queue"
)

// conv is the in-memory record of a conversation with stored messages.
// Fields are guarded by Store.mu; they change only when a commit is applied
// (committer) or when Next leases the head.
type conv struct {
	num    uint64
	count  int // stored messages, head included
	head   head
	leased bool
}

// readyHeap orders due heads oldest first: by next-attempt time (or enqueue
// time for a first attempt), then by enqueue sequence.
type readyHeap []*conv

func (h readyHeap) Len() int { return len(h) }
func (h readyHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if a.head.order != b.head.order {
		return a.head.order < b.head.order
	}
	return a.head.seq < b.head.seq
}
func (h readyHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *readyHeap) Push(x any)   { *h = append(*h, x.(*conv)) }
func (h *readyHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return c
}

// delayedHeap orders heads waiting for their next-attempt time, earliest first.
type delayedHeap []*conv

func (h delayedHeap) Len() int { return len(h) }
func (h delayedHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if a.head.at != b.head.at {
		return a.head.at < b.head.at
	}
	return a.head.seq < b.head.seq
}
func (h delayedHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *delayedHeap) Push(x any)   { *h = append(*h, x.(*conv)) }
func (h *delayedHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return c
}

// schedule makes an unleased head leasable: ready at once for a first
// attempt, otherwise through the delayed heap until its time passes. s.mu
// must be held; wakeWaiters then tells blocked Next calls.
func (s *Store) schedule(c *conv) {
	if c.head.at == 0 {
		heap.Push(&s.ready, c)
	} else {
		heap.Push(&s.delayed, c)
	}
	s.scheduled = true
}

// wakeWaiters wakes every blocked Next if a head was scheduled since the
// last call. One broadcast per group commit, not per message.
func (s *Store) wakeWaiters() {
	if s.scheduled {
		s.scheduled = false
		close(s.wake)
		s.wake = make(chan struct{})
	}
}

// promote moves the delayed heads whose time has come to the ready heap.
func (s *Store) promote(now int64) {
	for len(s.delayed) > 0 && s.delayed[0].head.at <= now {
		heap.Push(&s.ready, heap.Pop(&s.delayed))
	}
}

// maxWait bounds how long Next sleeps on the earliest delayed head, so a
// wall-clock jump or an injected clock cannot strand it.
const maxWait = time.Second

// retryCorrupt is how long a head that cannot be read is set aside.
const retryCorrupt = time.Minute

// Next leases the oldest due conversation head whose conversation has
// nothing leased, blocking until there is one. It returns ctx.Err() when ctx
// ends and queue.ErrClosed when the store is closed.
func (s *Store) Next(ctx context.Context) (queue.Lease, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, queue.ErrClosed
		}
		now := unixNano(s.now())
		s.promote(now)
		if len(s.ready) > 0 {
			c := heap.Pop(&s.ready).(*conv)
			c.leased = true
			s.inflight++
			num, seq := c.num, c.head.seq
			s.mu.Unlock()
			l, err := s.loadTurn(c, num, seq)
			if err == nil {
				if n := len(l.seqs); n > 1 {
					s.mu.Lock()
					s.inflight += n - 1
					s.mu.Unlock()
				}
				return l, nil
			}
			s.mu.Lock()
			c.leased = false
			s.inflight--
			if !s.closed && !errors.Is(err, queue.ErrClosed) {
				// Keep the conversation from spinning on an unreadable head.
				c.head.at = now + int64(retryCorrupt)
				s.schedule(c)
				s.wakeWaiters()
				s.log.Error("boltq: cannot read queued message", "conversation", num, "seq", seq, "err", err)
			}
			s.mu.Unlock()
			return nil, err
		}
		wake := s.wake
		var timer *time.Timer
		var fire <-chan time.Time
		if len(s.delayed) > 0 {
			d := time.Duration(s.delayed[0].head.at - now)
			timer = time.NewTimer(min(d, maxWait))
			fire = timer.C
		}
		s.mu.Unlock()

		select {
		case <-ctx.Done():
		case <-s.closing:
		case <-wake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// lease is one leased turn: the head and, for a turn of several messages,
// the messages after it (see loadTurn). Only the committer changes mark;
// ended is set when the terminal request commits.
type lease struct {
	s        *Store
	c        *conv
	num, seq uint64
	msg      queue.Message
	ended    atomic.Bool
	mark     uint64 // transaction number that ended it, before it commits

	// A turn of more than one message: seqs and all are the messages it
	// covers in conversation order (the head first), dropped marks the
	// superseded ones. Nil for a turn of the head alone.
	seqs       []uint64
	all        []queue.Message
	dropped    []bool
	send, gone []queue.Message
}

var _ queue.Lease = (*lease)(nil)

func (l *lease) Message() queue.Message {
	if len(l.send) > 0 {
		return l.send[0]
	}
	return l.msg
}

func (l *lease) Messages() []queue.Message {
	if l.seqs == nil {
		return []queue.Message{l.msg}
	}
	return l.send
}

func (l *lease) Superseded() []queue.Message { return l.gone }

func (l *lease) Ack(ctx context.Context) error {
	return l.end(ctx, &leaseOp{kind: leaseAck})
}

// AckWithChat stores st as the chat record of (route, key) and acks the
// message in one transaction, so a delivery costs one commit. The chat is
// stored with PutChat's compare-and-set: st.Revision must equal the stored
// revision (0: no record yet). On queue.ErrConflict nothing is written and
// the lease stays open, so the caller can read the chat again and retry.
func (l *lease) AckWithChat(ctx context.Context, route, key string, st queue.ChatState) error {
	o := &leaseOp{
		kind:     leaseAck,
		chat:     &queue.Chat{Route: route, ConversationKey: key, ChatState: st},
		chatName: convName(route, key),
	}
	err := l.end(ctx, o)
	if errors.Is(err, queue.ErrConflict) {
		l.s.chatCache.forget(o.chatName)
	}
	if err != nil && !errors.Is(err, queue.ErrConflict) && !errors.Is(err, ErrLeaseEnded) {
		return fmt.Errorf("boltq: ack with chat: %w", err)
	}
	return err
}

// AckWithReplies acks the turn and stores replies as queued messages in
// one transaction, with chat, when not nil, stored as AckWithChat does:
// the turn's replies are durable exactly when the turn is acked.
func (l *lease) AckWithReplies(ctx context.Context, chat *queue.Chat, replies []queue.Message) error {
	o := &leaseOp{kind: leaseAck, replies: make([]queue.Message, len(replies))}
	copy(o.replies, replies)
	now := l.s.now()
	for i := range o.replies {
		m := &o.replies[i]
		if err := validMessage(m); err != nil {
			return err
		}
		if m.EnqueuedAt.IsZero() {
			m.EnqueuedAt = now
		}
	}
	if chat != nil {
		o.chat, o.chatName = chat, convName(chat.Route, chat.ConversationKey)
	}
	err := l.end(ctx, o)
	if errors.Is(err, queue.ErrConflict) && o.chat != nil {
		l.s.chatCache.forget(o.chatName)
	}
	if err != nil && !errors.Is(err, queue.ErrConflict) && !errors.Is(err, ErrLeaseEnded) {
		return fmt.Errorf("boltq: ack with replies: %w", err)
	}
	return err
}

// Retry counts the failed attempt (Attempts+1, LastStatus and LastError from
// f) and makes the message due at at, still at its conversation's head.
func (l *lease) Retry(ctx context.Context, at time.Time, f queue.Failure) error {
	return l.end(ctx, &leaseOp{kind: leaseRetry, at: at, f: f})
}

func (l *lease) Release(ctx context.Context, at time.Time) error {
	return l.end(ctx, &leaseOp{kind: leaseRelease, at: at})
}

// Dead counts the failed attempt like Retry and moves the message to the
// dead letters with f; the conversation moves on to its next message.
func (l *lease) Dead(ctx context.Context, f queue.Failure) error {
	return l.end(ctx, &leaseOp{kind: leaseDead, f: f})
}

func (l *lease) end(ctx context.Context, o *leaseOp) error {
	if l.ended.Load() {
		return ErrLeaseEnded
	}
	o.l = l
	if l.seqs != nil {
		return l.s.do(ctx, &turnOp{leaseOp: o})
	}
	return l.s.do(ctx, o)
}
