package natsq

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relayd/relayd/internal/queue"
)

// SetTurnPolicies replaces the routes' turn policies (a reload).
func (s *Store) SetTurnPolicies(p queue.TurnPolicies) { s.turns.Store(&p) }

func (s *Store) policy(route string) queue.TurnPolicy {
	if p := s.turns.Load(); p != nil && *p != nil {
		return (*p)(route)
	}
	return queue.TurnPolicy{}
}

// markNewest records, for each message with a supersede key, that it is
// now its key's newest message (its stream sequence), after the messages
// are stored and before Enqueue answers: a message accepted is then known
// to supersede the older ones. Written in batch order, so the last of a
// key in one batch wins. A failed write is logged: the older message is
// then sent, which loses nothing.
func (s *Store) markNewest(ctx context.Context, ms []queue.Message, seqs []uint64) {
	for i, m := range ms {
		if m.SupersedeKey == "" || seqs[i] == 0 || !s.policy(m.Route).Supersede {
			continue
		}
		k := newestKey(m.Route, m.ConversationKey, m.SupersedeKey)
		if _, err := s.turnKV.Put(ctx, k, []byte(strconv.FormatUint(seqs[i], 10))); err != nil {
			s.log.Warn("could not record the newest message of a supersede key; an older one may still be sent",
				"route", m.Route, "message_id", m.ID, "err", err)
		}
	}
}

// isSuperseded reports whether a newer message of m's route, conversation
// and supersede key is stored: the key's newest recorded sequence is
// after seq. Sequences only grow, and a replayed dead letter gets a new
// one, so it is never taken for older than it is. Unknown (a read error)
// is not superseded: sending is the safe side.
func (s *Store) isSuperseded(m queue.Message, seq uint64) bool {
	if m.SupersedeKey == "" || !s.policy(m.Route).Supersede {
		return false
	}
	ctx, cancel := s.opCtx(s.ctx)
	defer cancel()
	e, err := s.turnKV.Get(ctx, newestKey(m.Route, m.ConversationKey, m.SupersedeKey))
	if err != nil {
		return false
	}
	n, err := strconv.ParseUint(string(e.Value()), 10, 64)
	return err == nil && n > seq
}

// readAheadScan bounds how many messages of a partition formTurn reads
// behind a head looking for its conversation's next messages: each is a
// round trip, and the partition also holds other conversations.
const readAheadScan = 256

// extra is a message read ahead of a lease's head, part of its turn.
type extra struct {
	seq       uint64
	msg       queue.Message
	dropped   bool // superseded: goes with the turn, unsent
	hasRecord bool // an attempts record exists
}

// formTurn gathers the turn of a head whose route coalesces: the messages
// of its conversation that are stored behind it in its partition, oldest
// first, up to the route's MaxEvents and budget. The partition's consumer
// hands out nothing behind its head until the head is acked, so these are
// read directly from the stream (next message on the partition's subject
// after a sequence), and no other replica can be sending them meanwhile.
// They stay in the stream until the turn ends: an Ack or Dead deletes
// them just before the head's ack, a Retry or Release leaves them for the
// next turn. A failure to read ahead only makes the turn smaller.
func (s *Store) formTurn(l *lease, p int, pol queue.TurnPolicy) {
	ctx, cancel := s.opCtx(s.ctx)
	defer cancel()
	subject := s.n.partSubject(p)
	all := []queue.Message{l.msg}
	dropped := []bool{l.superseded}
	var found []extra
	sendable := 0
	if !l.superseded {
		sendable = 1
	}
	next := l.seq + 1
	for range readAheadScan {
		if sendable >= pol.Max() {
			break
		}
		rm, err := s.stream.GetMsg(ctx, next, jetstream.WithGetMsgSubject(subject))
		if err != nil {
			if !errors.Is(err, jetstream.ErrMsgNotFound) {
				s.log.Debug("reading ahead of a turn failed", "partition", p, "err", err)
			}
			break
		}
		next = rm.Sequence + 1
		var m queue.Message
		if json.Unmarshal(rm.Data, &m) != nil || m.Route != l.msg.Route || m.ConversationKey != l.msg.ConversationKey {
			continue
		}
		e := extra{seq: rm.Sequence, msg: m}
		if l.hasRecord {
			// The head was put back before: so may these have been, with it.
			if r, err := s.attempts.Get(ctx, attemptsKey(m.ID)); err == nil {
				var rec attemptRecord
				if json.Unmarshal(r.Value(), &rec) == nil {
					e.msg.Attempts, e.msg.LastStatus, e.msg.LastError = rec.Attempts, rec.LastStatus, rec.LastError
					e.hasRecord = true
				}
			}
		}
		e.dropped = s.isSuperseded(m, rm.Sequence)
		if !e.dropped {
			sendable++
		}
		found = append(found, e)
		all = append(all, e.msg)
		dropped = append(dropped, e.dropped)
	}
	n, send, gone := pol.Pick(all, dropped)
	if n <= 1 {
		return
	}
	l.turn, l.extras, l.send, l.gone = true, found[:n-1], send, gone
}

// deleteExtras removes the messages read ahead into the turn, which was
// delivered (or dead-lettered). A delete that fails leaves the message to
// be delivered again later: a duplicate, never a loss.
func (l *lease) deleteExtras(ctx context.Context) {
	for _, e := range l.extras {
		if err := l.s.stream.DeleteMsg(ctx, e.seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			l.s.log.Warn("could not remove a message delivered in a turn; it will be sent again",
				"message_id", e.msg.ID, "err", err)
		}
	}
}

// recordExtras counts a failed attempt on the turn's messages read ahead,
// as putBack does for the head.
func (l *lease) recordExtras(ctx context.Context, at time.Time, f queue.Failure) {
	if len(l.extras) == 0 || l.isDone() {
		return
	}
	ctx, cancel := l.s.opCtx(ctx)
	defer cancel()
	if at.IsZero() {
		at = l.s.o.Now()
	}
	for _, e := range l.extras {
		if e.dropped {
			continue
		}
		data, _ := json.Marshal(attemptRecord{Attempts: e.msg.Attempts + 1, LastStatus: f.Status, LastError: f.Text(), NextAttemptAt: at})
		if _, err := l.s.attempts.Put(ctx, attemptsKey(e.msg.ID), data); err != nil {
			l.s.log.Debug("could not record the attempt of a turn's message", "message_id", e.msg.ID, "err", err)
		}
	}
}

// deadOnes are the messages a Dead stores as dead letters: the turn's
// messages to send, with their stream sequences.
func (l *lease) deadOnes() []extra {
	var out []extra
	if !l.superseded {
		out = append(out, extra{seq: l.seq, msg: l.msg})
	}
	for _, e := range l.extras {
		if !e.dropped {
			out = append(out, e)
		}
	}
	return out
}

// turnEnded records when a turn of m's conversation ended, for routes with
// a coalescing wait (see waitUntil).
func (s *Store) turnEnded(ctx context.Context, m queue.Message) {
	if m.IsReply() || s.policy(m.Route).Wait <= 0 {
		return
	}
	now := []byte(s.o.Now().UTC().Format(time.RFC3339Nano))
	if _, err := s.turnKV.Put(ctx, endKey(m.Route, m.ConversationKey), now); err != nil {
		s.log.Debug("could not record the end of a turn", "route", m.Route, "err", err)
	}
}

// waitUntil is the coalescing wait of a conversation's head on its first
// delivery: accepted + wait, if it arrived when its conversation had
// nothing pending, else (or once that time passed) zero. The conversation
// had something pending when it arrived exactly when its last turn ended
// after that: the message was queued behind that turn or its messages.
// An unknown last turn (none, or a read error) means nothing was pending.
func (s *Store) waitUntil(m queue.Message, wait time.Duration) time.Time {
	due := m.EnqueuedAt.Add(wait)
	if m.EnqueuedAt.IsZero() || !s.o.Now().Before(due) {
		return time.Time{}
	}
	ctx, cancel := s.opCtx(s.ctx)
	defer cancel()
	if e, err := s.turnKV.Get(ctx, endKey(m.Route, m.ConversationKey)); err == nil {
		if t, err := time.Parse(time.RFC3339Nano, string(e.Value())); err == nil && !t.Before(m.EnqueuedAt) {
			return time.Time{}
		}
	}
	return due
}
