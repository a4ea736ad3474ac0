package natsq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/xtime"
)

const (
	// fetchWait is how long one pull request waits at the server for a
	// message; fetchHeartbeat lets a pull notice a lost server sooner.
	fetchWait      = 10 * time.Second
	fetchHeartbeat = 2 * time.Second
	// maxHold bounds how long a fetched message waits for a Next call
	// before it is put back for any replica to take.
	maxHold = time.Second
	// deadRetryDelay is when a message whose move to the dead letters
	// failed comes back, for the dispatcher to try again.
	deadRetryDelay = 5 * time.Second
)

// ErrLeaseEnded is returned by a Lease method called after Ack, Retry,
// Release or Dead already ended the lease.
var ErrLeaseEnded = errors.New("natsq: lease already ended")

// attemptRecord is what the attempts bucket keeps per message between
// deliveries: messages in a stream are immutable.
type attemptRecord struct {
	Attempts      int       `json:"attempts"`
	LastStatus    int       `json:"last_status,omitempty"`
	LastError     string    `json:"last_error,omitempty"`
	NextAttemptAt time.Time `json:"next_attempt_at"`
}

// Demand. Messages are pulled only while Next calls wait for more than the
// store holds (unmet demand), so a busy or idle replica does not take
// messages other replicas could send. When the demand is met, outstanding
// pull requests are withdrawn: a pull request left at the server would
// hand the next message to a replica that has no use for it.

// setDemandLocked recomputes unmet demand and flips the signals fetchers
// watch. s.mu is held.
func (s *Store) setDemandLocked() {
	on := s.waiting > len(s.held)
	if on == s.demandOn {
		return
	}
	s.demandOn = on
	if on {
		s.demandOff = make(chan struct{})
		close(s.demandUp)
	} else {
		s.demandUp = make(chan struct{})
		close(s.demandOff)
	}
}

// waitDemand blocks until there is unmet demand and returns a channel that
// closes when it is met; ok is false after Close.
func (s *Store) waitDemand() (met <-chan struct{}, ok bool) {
	for {
		if s.ctx.Err() != nil {
			return nil, false
		}
		s.mu.Lock()
		if s.demandOn {
			met := s.demandOff
			s.mu.Unlock()
			return met, true
		}
		up := s.demandUp
		s.mu.Unlock()
		select {
		case <-up:
		case <-s.ctx.Done():
			return nil, false
		}
	}
}

// Next returns the oldest message this store holds, or waits until one of
// its partitions delivers one, or ctx ends.
func (s *Store) Next(ctx context.Context) (queue.Lease, error) {
	counted := false
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.closed {
			if counted {
				s.waiting--
				s.setDemandLocked()
			}
			return nil, queue.ErrClosed
		}
		if err := ctx.Err(); err != nil {
			if counted {
				s.waiting--
				s.setDemandLocked()
			}
			return nil, err
		}
		if len(s.held) > 0 {
			l := s.held[0]
			s.held[0] = nil
			s.held = s.held[1:]
			l.hold.Stop()
			if counted {
				s.waiting--
			}
			s.setDemandLocked()
			return l, nil
		}
		if !counted {
			counted = true
			s.waiting++
			s.setDemandLocked()
		}
		avail := s.avail
		s.mu.Unlock()
		select {
		case <-avail:
		case <-ctx.Done():
		case <-s.ctx.Done():
		}
		s.mu.Lock()
	}
}

// hold queues a fetched lease for Next. A lease nobody takes within
// maxHold is nakked, so a replica with idle workers can have it.
func (s *Store) hold(l *lease) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leases[l] = struct{}{}
	s.held = append(s.held, l)
	close(s.avail)
	s.avail = make(chan struct{})
	s.setDemandLocked()
	l.hold = time.AfterFunc(min(maxHold, s.o.AckWait/3), func() { s.unhold(l) })
}

func (s *Store) unhold(l *lease) {
	s.mu.Lock()
	i := -1
	for j, h := range s.held {
		if h == l {
			i = j
			break
		}
	}
	if i < 0 { // taken meanwhile
		s.mu.Unlock()
		return
	}
	s.held = append(s.held[:i], s.held[i+1:]...)
	s.setDemandLocked()
	s.mu.Unlock()
	_ = l.end(l.publishAck(ackNak))
}

// releaseHeld naks every held lease; Close uses it.
func (s *Store) releaseHeld() {
	s.mu.Lock()
	held := s.held
	s.held = nil
	s.mu.Unlock()
	for _, l := range held {
		l.hold.Stop()
		_ = l.end(l.publishAck(ackNak))
	}
}

// fetchLoop pulls partition p, one message per request, while there is
// unmet demand. MaxAckPending 1 on the consumer means the server has at
// most one message of p out, to any replica, until it is acked, nakked or
// terminated; so replicas need no claims: whichever asks first gets the
// partition's head.
func (s *Store) fetchLoop(p int) {
	defer s.wg.Done()
	log := s.log.With("partition", p)
	subject := "$JS.API.CONSUMER.MSG.NEXT." + s.n.stream + "." + s.n.consumerName(p)
	backoff := 100 * time.Millisecond
	for {
		met, ok := s.waitDemand()
		if !ok {
			return
		}
		m, err := s.pull(subject, met)
		if m != nil {
			s.deliver(p, m)
		}
		if s.ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff = 100 * time.Millisecond
			continue
		}
		log.Debug("pull failed", "err", err)
		if errors.Is(err, errNoResponders) {
			s.reprovision()
		}
		if xtime.Sleep(s.ctx, backoff) != nil {
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

var (
	errNoHeartbeat  = errors.New("no heartbeat from server")
	errNoResponders = errors.New("no responders: consumer missing")
)

// pull sends one pull request for one message and waits for the message,
// the request's expiry, or met (demand gone, or Close). The request is then
// withdrawn by draining its subscription: the server stops delivering to it,
// and a message already on its way is still received, not lost, and
// returned.
func (s *Store) pull(subject string, met <-chan struct{}) (*nats.Msg, error) {
	inbox := s.nc.NewInbox()
	ch := make(chan *nats.Msg, 16)
	sub, err := s.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, err
	}
	req := fmt.Sprintf(`{"batch":1,"expires":%d,"idle_heartbeat":%d}`, fetchWait.Nanoseconds(), fetchHeartbeat.Nanoseconds())
	if err := s.nc.PublishRequest(subject, inbox, []byte(req)); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	hb := time.NewTimer(2 * fetchHeartbeat)
	defer hb.Stop()
	withdraw := func(cause error) (*nats.Msg, error) {
		_ = sub.Drain()
		var ferr error
		if s.nc.IsConnected() { // while disconnected nothing more can come
			ferr = s.nc.FlushTimeout(s.o.Timeout)
		}
		// After the flush the server has seen the unsubscribe and everything
		// it sent before is in ch.
		var got *nats.Msg
		for {
			select {
			case m := <-ch:
				if !isStatus(m) && got == nil {
					got = m
				}
				continue
			default:
			}
			break
		}
		if cause == nil && ferr != nil && got == nil {
			cause = ferr
		}
		return got, cause
	}
	for {
		select {
		case m := <-ch:
			if !isStatus(m) {
				// The request asked for one message: it is complete.
				_ = sub.Unsubscribe()
				return m, nil
			}
			switch code := m.Header.Get("Status"); code {
			case "100": // idle heartbeat
				hb.Reset(2 * fetchHeartbeat)
			case "404", "408": // nothing, or expired: the request is over
				_ = sub.Unsubscribe()
				return nil, nil
			case "503": // nobody serves this consumer: it was deleted
				_ = sub.Unsubscribe()
				return nil, errNoResponders
			default:
				_ = sub.Unsubscribe()
				return nil, fmt.Errorf("pull: %s %s", code, m.Header.Get("Description"))
			}
		case <-hb.C:
			return withdraw(errNoHeartbeat)
		case <-met:
			return withdraw(nil)
		case <-s.ctx.Done():
			return withdraw(nil)
		}
	}
}

// isStatus reports a JetStream status message (heartbeat, timeout, error)
// rather than a stored message.
func isStatus(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header.Get("Status") != ""
}

// deliver turns a pulled message into a held lease.
func (s *Store) deliver(p int, m *nats.Msg) {
	l, err := s.newLease(p, m)
	if err != nil {
		// A message that cannot be read can never be delivered; keep it
		// from blocking its partition forever.
		s.log.Error("dropping unreadable message", "partition", p, "err", err)
		_ = s.nc.Publish(m.Reply, []byte("+TERM relayd: unreadable message"))
		return
	}
	if !l.waitUntil.IsZero() {
		d := max(time.Until(l.waitUntil), time.Millisecond)
		_ = s.nc.Publish(m.Reply, fmt.Appendf(nil, `-NAK {"delay":%d}`, d.Nanoseconds()))
		return
	}
	s.hold(l)
}

// ackMeta is what the reply subject of a delivered message tells.
type ackMeta struct {
	delivered uint64 // deliveries so far, this one included
	seq       uint64 // stream sequence
}

// parseAckReply reads $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>...
// (and the newer form with domain and account hash after ACK).
func parseAckReply(reply string) (ackMeta, error) {
	t := strings.Split(reply, ".")
	if len(t) < 9 || t[0] != "$JS" || t[1] != "ACK" {
		return ackMeta{}, fmt.Errorf("not a JetStream ack subject: %q", reply)
	}
	i := 4 // v1: 9 tokens
	if len(t) >= 11 {
		i = 6
	}
	d, err1 := strconv.ParseUint(t[i], 10, 64)
	q, err2 := strconv.ParseUint(t[i+1], 10, 64)
	if err1 != nil || err2 != nil {
		return ackMeta{}, fmt.Errorf("bad JetStream ack subject: %q", reply)
	}
	return ackMeta{delivered: d, seq: q}, nil
}

func (s *Store) newLease(p int, m *nats.Msg) (*lease, error) {
	md, err := parseAckReply(m.Reply)
	if err != nil {
		return nil, err
	}
	var msg queue.Message
	if err := json.Unmarshal(m.Data, &msg); err != nil {
		return nil, fmt.Errorf("stream seq %d: %w", md.seq, err)
	}
	l := &lease{s: s, reply: m.Reply, msg: msg, part: p, seq: md.seq}
	// A first delivery has no retry record; later ones (after a retry, a
	// release or a crash) read it, so attempts survive replicas and restarts.
	if md.delivered > 1 {
		ctx, cancel := s.opCtx(s.ctx)
		defer cancel()
		e, err := s.attempts.Get(ctx, attemptsKey(msg.ID))
		switch {
		case err == nil:
			var r attemptRecord
			if err := json.Unmarshal(e.Value(), &r); err == nil {
				l.msg.Attempts, l.msg.LastStatus, l.msg.LastError, l.msg.NextAttemptAt =
					r.Attempts, r.LastStatus, r.LastError, r.NextAttemptAt
				l.hasRecord = true
			}
		case errors.Is(err, jetstream.ErrKeyNotFound):
		default:
			// Deliver anyway: a lost attempt count is better than a stuck
			// partition. The count restarts from the message's own.
			s.log.Warn("could not read attempts", "message_id", msg.ID, "err", err)
		}
	}
	pol := s.policy(msg.Route)
	if msg.IsReply() {
		pol = queue.TurnPolicy{} // a reply post is a turn of its own, sent at once
	}
	if pol.Wait > 0 && md.delivered == 1 {
		if l.waitUntil = s.waitUntil(msg, pol.Wait); !l.waitUntil.IsZero() {
			return l, nil
		}
	}
	l.superseded = s.isSuperseded(msg, md.seq)
	if pol.Max() > 1 {
		s.formTurn(l, p, pol)
	}
	return l, nil
}

// keepAlive heartbeats every lease this process holds, so a long request
// to the Operator is never redelivered to another replica while it runs.
// If the process dies the heartbeats stop and NATS redelivers after AckWait.
func (s *Store) keepAlive() {
	defer s.wg.Done()
	t := time.NewTicker(max(s.o.AckWait/3, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		ls := make([]*lease, 0, len(s.leases))
		for l := range s.leases {
			ls = append(ls, l)
		}
		s.mu.Unlock()
		for _, l := range ls {
			// A lease being ended holds its lock; it needs no heartbeat.
			if l.mu.TryLock() {
				if !l.done {
					_ = l.s.nc.Publish(l.reply, ackProgress)
				}
				l.mu.Unlock()
			}
		}
	}
}

// The JetStream ack protocol, spoken on the message's reply subject.
var (
	ackAck      = []byte("+ACK")
	ackNak      = []byte("-NAK")
	ackProgress = []byte("+WPI")
	ackTerm     = []byte("+TERM relayd: dead-lettered")
)

// lease is one delivered message. Its mutex orders heartbeats before the
// ack or nak that ends it: a heartbeat arriving after a delayed nak would
// cut the delay short.
type lease struct {
	s         *Store
	reply     string
	msg       queue.Message
	part      int
	seq       uint64 // stream sequence
	hasRecord bool   // an attempts record exists
	hold      *time.Timer
	// superseded: a newer message of its supersede key was accepted; it
	// is acked without being sent.
	superseded bool
	// A turn of several messages (see formTurn): the messages read ahead
	// of the head that go with it, and what the turn sends and drops.
	extras     []extra
	send, gone []queue.Message
	turn       bool
	// waitUntil, when set, is the coalescing wait of a head that started
	// its conversation: it goes back until then instead of out.
	waitUntil time.Time

	mu   sync.Mutex
	done bool
}

func (l *lease) Message() queue.Message {
	if l.turn && len(l.send) > 0 {
		return l.send[0]
	}
	return l.msg
}

// Messages are the turn's messages to send: the head alone, or with the
// messages read ahead of it; nothing when all are superseded.
func (l *lease) Messages() []queue.Message {
	if l.turn {
		return l.send
	}
	if l.superseded {
		return nil
	}
	return []queue.Message{l.msg}
}

func (l *lease) Superseded() []queue.Message {
	if l.turn {
		return l.gone
	}
	if l.superseded {
		return []queue.Message{l.msg}
	}
	return nil
}

func (l *lease) isDone() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.done
}

// end runs f as the lease's last word, once.
func (l *lease) end(f func() error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return ErrLeaseEnded
	}
	// Ended even if f fails: NATS then redelivers after AckWait, which is
	// the at-least-once answer to a lost ack.
	l.done = true
	l.s.mu.Lock()
	delete(l.s.leases, l)
	l.s.mu.Unlock()
	return f()
}

func (l *lease) publishAck(body []byte) func() error {
	return func() error { return l.s.nc.Publish(l.reply, body) }
}

// requestAck sends body and waits for the server to confirm it.
func (l *lease) requestAck(ctx context.Context, body []byte) func() error {
	return func() error {
		_, err := l.s.nc.RequestWithContext(ctx, l.reply, body)
		return err
	}
}

// Ack confirms the delivery and waits for the server to confirm the ack,
// so the conversation's next message cannot be delivered before this
// returns.
func (l *lease) Ack(ctx context.Context) error {
	if l.isDone() {
		return ErrLeaseEnded
	}
	ctx, cancel := l.s.opCtx(ctx)
	defer cancel()
	// The turn was delivered: its messages read ahead go first, so that
	// none of them is handed out once the head's ack frees the partition.
	l.deleteExtras(ctx)
	if err := l.end(l.requestAck(ctx, ackAck)); err != nil {
		return l.s.leaseErr("ack", err)
	}
	l.s.gone(1 + len(l.extras))
	l.dropRecord(ctx)
	l.s.turnEnded(ctx, l.msg)
	return nil
}

// Retry records the failed attempt, then asks NATS to redeliver at at.
// The message keeps its partition's single ack-pending slot meanwhile, so
// it stays its conversation's head.
func (l *lease) Retry(ctx context.Context, at time.Time, f queue.Failure) error {
	l.recordExtras(ctx, at, f)
	return l.putBack(ctx, at, attemptRecord{
		Attempts:   l.msg.Attempts + 1,
		LastStatus: f.Status,
		LastError:  f.Text(),
	})
}

// Release puts the message back, due at at, without counting an attempt.
func (l *lease) Release(ctx context.Context, at time.Time) error {
	return l.putBack(ctx, at, attemptRecord{
		Attempts:   l.msg.Attempts,
		LastStatus: l.msg.LastStatus,
		LastError:  l.msg.LastError,
	})
}

// putBack writes the message's retry record (which also tells Stats it is
// delayed), then naks it with the delay until at.
func (l *lease) putBack(ctx context.Context, at time.Time, r attemptRecord) error {
	if l.isDone() {
		return ErrLeaseEnded
	}
	ctx, cancel := l.s.opCtx(ctx)
	defer cancel()
	if at.IsZero() {
		at = l.s.o.Now()
	}
	r.NextAttemptAt = at
	data, _ := json.Marshal(r)
	_, perr := l.s.attempts.Put(ctx, attemptsKey(l.msg.ID), data)
	// Nak even when the record could not be written: the delay still
	// applies, only the record is behind.
	body := ackNak
	if d := at.Sub(l.s.o.Now()); d > 0 {
		body = fmt.Appendf(nil, `-NAK {"delay":%d}`, d.Nanoseconds())
	}
	if err := l.end(l.publishAck(body)); err != nil {
		return l.s.leaseErr("nak", err)
	}
	if perr != nil {
		return l.s.fail("record attempt", perr)
	}
	return nil
}

// Dead stores the dead letter, then terminates the message; a dead letter
// is never lost between the two, at worst stored twice.
func (l *lease) Dead(ctx context.Context, f queue.Failure) error {
	if l.isDone() {
		return ErrLeaseEnded
	}
	ctx, cancel := l.s.opCtx(ctx)
	defer cancel()
	var perr error
	for _, d := range l.deadOnes() {
		dl := queue.DeadLetter{Message: d.msg, Failure: f, DeadAt: l.s.o.Now()}
		dl.Attempts = d.msg.Attempts + 1 // the attempt that failed for good
		dl.LastStatus = f.Status
		dl.LastError = f.Text()
		data, err := json.Marshal(dl)
		if err != nil {
			return fmt.Errorf("natsq: encode dead letter: %w", err)
		}
		if _, perr = l.s.js.PublishMsg(ctx, &nats.Msg{Subject: l.s.n.dlqSubject(d.msg.Route), Data: data},
			jetstream.WithMsgID(deadMsgID(d.msg.ID, d.seq)), jetstream.WithExpectStream(l.s.n.dlq)); perr != nil {
			break
		}
	}
	if perr != nil {
		// Not stored: bring the message back later rather than hold its
		// partition; the dispatcher will decide again.
		_ = l.end(l.publishAck(fmt.Appendf(nil, `-NAK {"delay":%d}`, deadRetryDelay.Nanoseconds())))
		return l.s.fail("store dead letter", perr)
	}
	// Terminate synchronously, so the conversation's next message is free
	// once Dead returns.
	l.deleteExtras(ctx)
	if err := l.end(l.requestAck(ctx, ackTerm)); err != nil {
		return l.s.leaseErr("term", err)
	}
	l.s.gone(1 + len(l.extras))
	l.dropRecord(ctx)
	l.s.turnEnded(ctx, l.msg)
	return nil
}

// dropRecord deletes the attempts record of a finished message; a record
// whose delete fails expires with the bucket's TTL.
func (l *lease) dropRecord(ctx context.Context) {
	if !l.hasRecord && l.msg.Attempts == 0 {
		return
	}
	if err := l.s.attempts.Purge(ctx, attemptsKey(l.msg.ID)); err != nil {
		l.s.log.Debug("could not delete attempts record", "message_id", l.msg.ID, "err", err)
	}
	for _, e := range l.extras {
		if e.msg.Attempts > 0 || e.hasRecord {
			_ = l.s.attempts.Purge(ctx, attemptsKey(e.msg.ID))
		}
	}
}

func (s *Store) leaseErr(op string, err error) error {
	if errors.Is(err, ErrLeaseEnded) {
		return err
	}
	return s.fail(op, err)
}
