package boltq

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/relayd/relayd/internal/queue"
)

// Chats.

// GetChat returns the conversation's chat state, or a zero ChatState
// (Revision 0) when there is none.
func (s *Store) GetChat(ctx context.Context, route, key string) (queue.ChatState, error) {
	name := convName(route, key)
	st, gen, ok := s.chatCache.get(name)
	if ok {
		return st, nil
	}
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketChats).Get(name)
		if v == nil {
			return nil
		}
		c, err := decodeChat(v)
		st = c.ChatState
		return err
	})
	if err != nil {
		return queue.ChatState{}, fmt.Errorf("boltq: get chat: %w", err)
	}
	s.chatCache.fill(name, st, gen)
	st.Turns = cloneTurns(st.Turns)
	return st, nil
}

// PutChat stores st if the stored revision still equals st.Revision (0: no
// record yet), else returns queue.ErrConflict. The stored revision then
// increases; GetChat returns it.
func (s *Store) PutChat(ctx context.Context, route, key string, st queue.ChatState) error {
	o := &putChatOp{name: convName(route, key), chat: queue.Chat{Route: route, ConversationKey: key, ChatState: st}}
	if err := s.do(ctx, o); err != nil {
		if errors.Is(err, queue.ErrConflict) {
			s.chatCache.forget(o.name)
			return err
		}
		return fmt.Errorf("boltq: put chat: %w", err)
	}
	return nil
}

// DeleteChat forgets the conversation's chat; a missing one is not an error.
func (s *Store) DeleteChat(ctx context.Context, route, key string) error {
	if err := s.do(ctx, &deleteChatOp{name: convName(route, key)}); err != nil {
		return fmt.Errorf("boltq: delete chat: %w", err)
	}
	return nil
}

// ListChats returns every remembered conversation and every conversation
// with queued messages, ordered by route and key, each with the number of
// its messages waiting (applied to the store; a message enqueued a moment
// ago may not be counted yet).
func (s *Store) ListChats(ctx context.Context) ([]queue.Chat, error) {
	out := []queue.Chat{}
	err := s.view(func(tx *bolt.Tx) error {
		convs, msgs := tx.Bucket(bucketConvs), tx.Bucket(bucketMsgs)
		seen := map[string]bool{}
		err := tx.Bucket(bucketChats).ForEach(func(k, v []byte) error {
			c, err := decodeChat(v)
			if err != nil {
				return err
			}
			n := 0
			if r, err := parseConvRec(convs.Get(k)); err == nil {
				n = int(r.count)
			}
			c.Waiting = &n
			seen[string(k)] = true
			out = append(out, c)
			return ctx.Err()
		})
		if err != nil {
			return err
		}
		// Conversations with messages and no chat yet: their head names them.
		return convs.ForEach(func(k, v []byte) error {
			if seen[string(k)] {
				return nil
			}
			r, err := parseConvRec(v)
			if err != nil || r.count == 0 {
				return nil
			}
			hv := msgs.Get(u64(r.head))
			if hv == nil {
				return nil
			}
			m, err := decodeMessage(hv)
			if err != nil {
				return nil
			}
			n := int(r.count)
			out = append(out, queue.Chat{Route: m.Route, ConversationKey: m.ConversationKey, Waiting: &n})
			return ctx.Err()
		})
	})
	if err != nil {
		return nil, fmt.Errorf("boltq: list chats: %w", err)
	}
	slices.SortStableFunc(out, func(a, b queue.Chat) int {
		return cmp.Or(cmp.Compare(a.Route, b.Route), cmp.Compare(a.ConversationKey, b.ConversationKey))
	})
	return out, nil
}

func decodeChat(v []byte) (queue.Chat, error) {
	var c queue.Chat
	if len(v) < 8 {
		return c, fmt.Errorf("%w: chat record of %d bytes", errCorrupt, len(v))
	}
	if err := json.Unmarshal(v[8:], &c); err != nil {
		return c, fmt.Errorf("%w: chat record: %v", errCorrupt, err)
	}
	c.Revision = binary.BigEndian.Uint64(v[:8])
	return c, nil
}

// Dead letters.

// ListDead returns the dead letters of route ("" for all), oldest first.
func (s *Store) ListDead(ctx context.Context, route string) ([]queue.DeadLetter, error) {
	out := []queue.DeadLetter{}
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDead).ForEach(func(_, v []byte) error {
			var dl queue.DeadLetter
			if err := json.Unmarshal(v, &dl); err != nil {
				return fmt.Errorf("%w: dead letter: %v", errCorrupt, err)
			}
			if route == "" || dl.Route == route {
				out = append(out, dl)
			}
			return ctx.Err()
		})
	})
	if err != nil {
		return nil, fmt.Errorf("boltq: list dead letters: %w", err)
	}
	return out, nil
}

// GetDead returns the dead letter with message id id, else the first with
// delivery id id, else queue.ErrNotFound.
func (s *Store) GetDead(ctx context.Context, id string) (queue.DeadLetter, error) {
	var dl queue.DeadLetter
	err := s.view(func(tx *bolt.Tx) error {
		keys := deadKeys(tx, id)
		if len(keys) == 0 {
			return queue.ErrNotFound
		}
		v := tx.Bucket(bucketDead).Get(keys[0])
		if v == nil {
			return fmt.Errorf("%w: dead letter %x missing", errCorrupt, keys[0])
		}
		if err := json.Unmarshal(v, &dl); err != nil {
			return fmt.Errorf("%w: dead letter: %v", errCorrupt, err)
		}
		return nil
	})
	if err != nil {
		return queue.DeadLetter{}, fmt.Errorf("boltq: get dead letter %q: %w", id, err)
	}
	return dl, nil
}

// ReplayDead puts the dead letter with message id id (else every dead letter
// with delivery id id) back at the tail of its conversation, with the same
// message id and attempts reset, and returns how many. None is
// queue.ErrNotFound. Replays are not refused by MaxPending: an operator
// asked for them.
func (s *Store) ReplayDead(ctx context.Context, id string) (int, error) {
	o := &deadOp{replay: true, id: id}
	if err := s.do(ctx, o); err != nil {
		return 0, fmt.Errorf("boltq: replay %q: %w", id, err)
	}
	return o.n, nil
}

// DropDead deletes the dead letters ReplayDead would replay.
func (s *Store) DropDead(ctx context.Context, id string) (int, error) {
	o := &deadOp{id: id}
	if err := s.do(ctx, o); err != nil {
		return 0, fmt.Errorf("boltq: drop %q: %w", id, err)
	}
	return o.n, nil
}

// ReplayAllDead replays every dead letter of route ("" for all) that exists
// when it starts, in pages of bounded transactions, and returns how many.
// Messages that die again meanwhile are not replayed twice.
func (s *Store) ReplayAllDead(ctx context.Context, route string) (int, error) {
	var upto uint64
	err := s.view(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketDead).Cursor().Last(); k != nil {
			upto = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("boltq: replay all: %w", err)
	}
	total := 0
	var after uint64
	for upto > after {
		o := &deadOp{replay: true, all: true, route: route, after: after, upto: upto, limit: replayPage}
		if err := s.do(ctx, o); err != nil {
			return total, fmt.Errorf("boltq: replay all: %w", err)
		}
		total += o.n
		if !o.more {
			break
		}
		after = o.last
	}
	return total, nil
}

// Dedupe marks.

// sweepDedupe deletes up to limit expired dedupe marks; more reports that
// expired marks remain.
func (s *Store) sweepDedupe(ctx context.Context, limit int) (n int, more bool, err error) {
	o := &sweepOp{limit: limit}
	if err := s.do(ctx, o); err != nil {
		return 0, false, err
	}
	return o.n, o.more, nil
}

func (s *Store) sweepLoop(ctx context.Context, every time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for {
			_, more, err := s.sweepDedupe(ctx, sweepChunk)
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, queue.ErrClosed) {
					s.log.Error("boltq: dedupe sweep failed", "err", err)
				}
				break
			}
			if !more {
				break
			}
		}
	}
}
