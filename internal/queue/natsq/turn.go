package natsq

import (
	"context"
	"strconv"

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
		if _, err := s.newest.Put(ctx, k, []byte(strconv.FormatUint(seqs[i], 10))); err != nil {
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
	e, err := s.newest.Get(ctx, newestKey(m.Route, m.ConversationKey, m.SupersedeKey))
	if err != nil {
		return false
	}
	n, err := strconv.ParseUint(string(e.Value()), 10, 64)
	return err == nil && n > seq
}
