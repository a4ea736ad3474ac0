package boltq

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/relayd/relayd/internal/queue"
)

// SetTurnPolicies replaces the routes' turn policies (a reload). Leases
// formed from then on follow them; a wait applies to messages enqueued
// from then on.
func (s *Store) SetTurnPolicies(p queue.TurnPolicies) { s.turns.Store(&p) }

func (s *Store) policy(route string) queue.TurnPolicy {
	if p := s.turns.Load(); p != nil && *p != nil {
		return (*p)(route)
	}
	return queue.TurnPolicy{}
}

// loadTurn reads the turn that starts at the conversation's head seq.
//
// A turn is a run of the conversation's messages from its head, oldest
// first: the messages to send, at most the route's MaxEvents and within
// its budget, and the superseded messages among and right after them. A
// run, not a pick, because the conversation is a linked list that only
// loses messages at its head. With Supersede every pending message of the
// conversation is read, since a key's newest message may be anywhere
// behind the turn; a superseded message beyond the run is dropped by a
// later turn, its newer message being still behind it then.
func (s *Store) loadTurn(c *conv, num, seq uint64) (*lease, error) {
	l := &lease{s: s, c: c, num: num, seq: seq}
	err := s.view(func(tx *bolt.Tx) error {
		msgs, next := tx.Bucket(bucketMsgs), tx.Bucket(bucketNext)
		v := msgs.Get(u64(seq))
		if v == nil {
			return fmt.Errorf("%w: head %d/%d missing", errCorrupt, num, seq)
		}
		head, err := decodeMessage(v)
		if err != nil {
			return err
		}
		l.msg = head
		p := s.policy(head.Route)
		if p.Max() == 1 && !p.Supersede {
			return nil
		}
		seqs, all := []uint64{seq}, []queue.Message{head}
		limit := p.Max()
		if p.Supersede {
			limit = -1
		}
		for cur := seq; limit < 0 || len(all) < limit; {
			nv := next.Get(u64(cur))
			if nv == nil {
				break
			}
			if len(nv) != 8 {
				return fmt.Errorf("%w: next link of %d bytes", errCorrupt, len(nv))
			}
			cur = binary.BigEndian.Uint64(nv)
			v := msgs.Get(u64(cur))
			if v == nil {
				return fmt.Errorf("%w: message %d of conversation %d missing", errCorrupt, cur, num)
			}
			m, err := decodeMessage(v)
			if err != nil {
				return err
			}
			seqs, all = append(seqs, cur), append(all, m)
		}
		l.formTurn(p, seqs, all)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("boltq: lease: %w", err)
	}
	return l, nil
}

// formTurn picks the run of messages the lease covers (see loadTurn).
func (l *lease) formTurn(p queue.TurnPolicy, seqs []uint64, all []queue.Message) {
	dropped := make([]bool, len(all))
	if p.Supersede {
		newest := make(map[string]bool)
		for i := len(all) - 1; i >= 0; i-- {
			k := all[i].SupersedeKey
			if k == "" {
				continue
			}
			dropped[i] = newest[k]
			newest[k] = true
		}
	}
	n, send, gone := p.Pick(all, dropped)
	if n == 1 && len(gone) == 0 {
		return // the head alone: a plain lease
	}
	l.seqs, l.all, l.dropped = seqs[:n], all[:n], dropped[:n]
	l.send, l.gone = send, gone
}

// turnOp ends a lease of several messages, all in one transaction: Ack
// and Dead remove every one of them (Dead stores the sent ones as dead
// letters, the superseded ones simply go), Retry and Release put them all
// back due at one time, counting the attempt on the sent ones.
type turnOp struct {
	*leaseOp
}

func (o *turnOp) apply(tx *bolt.Tx, g *group) error {
	l := o.l
	if l.ended.Load() || l.mark == g.attempt {
		return ErrLeaseEnded
	}
	msgs := tx.Bucket(bucketMsgs)
	for i, seq := range l.seqs {
		if msgs.Get(u64(seq)) == nil {
			return fmt.Errorf("%w: leased message %s is gone", errCorrupt, l.all[i].ID)
		}
	}
	switch o.kind {
	case leaseRetry, leaseRelease:
		o.at0 = g.nowNano
		if !o.at.IsZero() {
			o.at0 = o.at.UnixNano()
		}
		for i, seq := range l.seqs {
			m := l.all[i]
			m.NextAttemptAt = fromUnixNano(o.at0)
			if o.kind == leaseRetry && !l.dropped[i] {
				m.Attempts++
				m.LastStatus = o.f.Status
				m.LastError = o.f.Text()
			}
			if err := msgs.Put(u64(seq), encodeMessage(nil, &m)); err != nil {
				return fatal(err)
			}
		}
	case leaseAck, leaseDead:
		name := convName(l.msg.Route, l.msg.ConversationKey)
		convs := tx.Bucket(bucketConvs)
		r, err := parseConvRec(convs.Get(name))
		if err != nil || r.num != l.num || r.head != l.seqs[0] {
			return fmt.Errorf("%w: conversation of leased turn %s: %+v %v", errCorrupt, l.msg.ID, r, err)
		}
		// Before any other write: a conflict leaves everything as it was.
		if o.chat != nil {
			if o.chatNew, o.chatRev, err = putChat(tx, o.chatName, o.chat); err != nil {
				return err
			}
		}
		for i, seq := range l.seqs {
			if o.kind == leaseDead && !l.dropped[i] {
				m := l.all[i]
				m.Attempts++
				m.LastStatus = o.f.Status
				m.LastError = o.f.Text()
				if err := putDead(tx, queue.DeadLetter{Message: m, Failure: o.f, DeadAt: g.now}); err != nil {
					return err
				}
			}
			if err := msgs.Delete(u64(seq)); err != nil {
				return fatal(err)
			}
			if o.next, o.more, err = advance(tx, name, r); err != nil {
				return err
			}
			g.pending--
			if i == len(l.seqs)-1 {
				break
			}
			if !o.more || o.next.seq != l.seqs[i+1] {
				return fatal(fmt.Errorf("%w: conversation of leased turn %s broke at %d", errCorrupt, l.msg.ID, seq))
			}
			r.head, r.count = o.next.seq, max(r.count, 2)-1
		}
		if err := o.placeReplies(tx, g); err != nil {
			return err
		}
	}
	l.mark = g.attempt
	return nil
}

func (o *turnOp) commit(s *Store) { o.applyEnd(s, len(o.l.seqs), len(o.l.send)) }
