package natsq

import (
	"context"
	"errors"
	"strconv"
	"time"

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

// catchUpWait bounds how long forming a turn waits for messages of its
// conversation that are stored but still on their way to the owner.
const catchUpWait = 250 * time.Millisecond

// catchUp returns the conversation's held messages once those stored
// when the turn was taken have arrived: a coalescing turn then carries
// every message accepted before it, as on bbolt, rather than those that
// happened to be delivered already. It asks the stream for the newest
// sequence on the conversation's subject (one request, for routes that
// coalesce or supersede only) and waits for it, at most catchUpWait, and
// not while the partition's window is full.
func (l *lease) catchUp(all []*item) []*item {
	s, c := l.s, l.c
	m := all[0].m
	ctx, cancel := s.opCtx(s.ctx)
	rm, err := s.stream.GetLastMsgForSubject(ctx, s.n.convSubject(c.p.n, m.Route, m.ConversationKey))
	cancel()
	if err != nil {
		return all
	}
	deadline := time.Now().Add(catchUpWait)
	for {
		s.mu.Lock()
		all = c.items
		done := all[len(all)-1].seq >= rm.Sequence || c.p.held >= s.o.Window || c.p.stopped
		s.mu.Unlock()
		if done || time.Now().After(deadline) {
			return all
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// maxSupersedeScan bounds how many held messages of a conversation a turn
// looks through for newer messages of its supersede keys.
const maxSupersedeScan = 4096

// form picks the turn from the conversation's held messages (while it is
// out messages are only added behind them). A run from the head, oldest
// first, up to the route's MaxEvents and budget, with the superseded
// messages among and right after them (see queue.TurnPolicy.Pick). A reply
// post is a turn of its own, and an event's turn stops before a reply post.
// The bodies it looks at are read back from the stream if not kept here;
// an error then means the turn was not formed.
func (l *lease) form() error {
	s, c := l.s, l.c
	for {
		if removed, err := s.loadBodies(c, 1); err != nil {
			return err
		} else if removed {
			continue // a new head, maybe
		}
		s.mu.Lock()
		all := c.items
		s.mu.Unlock()
		if len(all) == 0 {
			return errors.New("every held message of the conversation left the stream")
		}
		head := *all[0].m
		pol := s.policy(head.Route)
		if head.IsReply() {
			pol = queue.TurnPolicy{}
		}
		if pol.Supersede || len(all) < pol.Max() {
			all = l.catchUp(all)
		}
		n := len(all)
		if !pol.Supersede {
			n = min(n, pol.Max())
		}
		n = min(n, maxSupersedeScan)
		for i := 1; i < n; i++ {
			if all[i].isReply != head.IsReply() || head.IsReply() {
				n = i
				break
			}
		}
		removed, err := s.loadBodies(c, n)
		if err != nil {
			return err
		}
		if removed {
			continue // look again
		}
		all = all[:n]
		msgs := make([]queue.Message, n)
		dropped := make([]bool, n)
		newest := map[string]bool{}
		s.mu.Lock() // bodies are set under the lock
		for i := range all {
			msgs[i] = *all[i].m
		}
		s.mu.Unlock()
		for i := n - 1; i >= 0; i-- {
			if k := msgs[i].SupersedeKey; k != "" && pol.Supersede {
				dropped[i] = newest[k] || s.isSuperseded(msgs[i], all[i].seq)
				newest[k] = true
			}
		}
		k, send, gone := pol.Pick(msgs, dropped)
		s.mu.Lock() // Stats reads items
		l.items, l.dropped, l.send, l.gone = all[:k], dropped[:k], send, gone
		s.trimLocked(c, k, n)
		s.mu.Unlock()
		return nil
	}
}
