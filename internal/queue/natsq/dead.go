package natsq

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relayd/relayd/internal/queue"
)

// deadEntry is a dead letter with its sequence in the dead-letter stream.
type deadEntry struct {
	seq uint64
	dl  queue.DeadLetter
}

// scanBatch is how many dead letters one fetch reads.
const scanBatch = 256

// scanDead reads the dead letters of route ("" for all) in the order they
// died, through a short-lived consumer, so every replica sees the same list.
func (s *Store) scanDead(ctx context.Context, route string) ([]deadEntry, error) {
	filter := s.n.dlqWildcard()
	if route != "" {
		filter = s.n.dlqSubject(route)
	}
	cctx, cancel := s.opCtx(ctx)
	defer cancel()
	c, err := s.dlq.CreateConsumer(cctx, jetstream.ConsumerConfig{
		FilterSubject:     filter,
		AckPolicy:         jetstream.AckNonePolicy,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		MemoryStorage:     true,
		InactiveThreshold: time.Minute, // cleans up if the delete below is lost
	})
	if err != nil {
		return nil, s.fail("read dead letters", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.Timeout)
		defer cancel()
		_ = s.dlq.DeleteConsumer(dctx, c.CachedInfo().Name)
	}()
	out := []deadEntry{}
	if c.CachedInfo().NumPending == 0 {
		return out, nil
	}
	for {
		batch, err := c.FetchNoWait(scanBatch)
		if err != nil {
			return nil, s.fail("read dead letters", err)
		}
		n := 0
		var left uint64
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			left = md.NumPending
			var dl queue.DeadLetter
			if err := json.Unmarshal(m.Data(), &dl); err != nil {
				s.log.Warn("skipping unreadable dead letter", "seq", md.Sequence.Stream, "err", err)
				continue
			}
			out = append(out, deadEntry{seq: md.Sequence.Stream, dl: dl})
		}
		if err := batch.Error(); err != nil {
			return nil, s.fail("read dead letters", err)
		}
		if n == 0 || left == 0 {
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, s.fail("read dead letters", ctx.Err())
		}
	}
}

// ListDead returns the dead letters of route, or all when route is "".
func (s *Store) ListDead(ctx context.Context, route string) ([]queue.DeadLetter, error) {
	es, err := s.scanDead(ctx, route)
	if err != nil {
		return nil, err
	}
	out := make([]queue.DeadLetter, len(es))
	for i, e := range es {
		out[i] = e.dl
	}
	return out, nil
}

// match returns the entries for id: by message id, or failing that by
// delivery id (one delivery may have died on several routes).
func match(es []deadEntry, id string) []deadEntry {
	var byID, byDelivery []deadEntry
	for _, e := range es {
		switch id {
		case e.dl.ID:
			byID = append(byID, e)
		case e.dl.Delivery:
			byDelivery = append(byDelivery, e)
		}
	}
	if len(byID) > 0 {
		return byID
	}
	return byDelivery
}

// findDead returns the dead letters matching id, or queue.ErrNotFound.
func (s *Store) findDead(ctx context.Context, id string) ([]deadEntry, error) {
	es, err := s.scanDead(ctx, "")
	if err != nil {
		return nil, err
	}
	m := match(es, id)
	if len(m) == 0 {
		return nil, queue.ErrNotFound
	}
	return m, nil
}

// GetDead returns the dead letter with message id or delivery id id.
func (s *Store) GetDead(ctx context.Context, id string) (queue.DeadLetter, error) {
	m, err := s.findDead(ctx, id)
	if err != nil {
		return queue.DeadLetter{}, err
	}
	return m[0].dl, nil
}

// ReplayDead puts the dead letters matching id back at the tail of their
// conversations, attempts reset, and removes them from the dead letters.
func (s *Store) ReplayDead(ctx context.Context, id string) (int, error) {
	m, err := s.findDead(ctx, id)
	if err != nil {
		return 0, err
	}
	return s.replay(ctx, m)
}

// ReplayAllDead replays every dead letter of route, or all when route is "".
func (s *Store) ReplayAllDead(ctx context.Context, route string) (int, error) {
	es, err := s.scanDead(ctx, route)
	if err != nil {
		return 0, err
	}
	return s.replay(ctx, es)
}

// replay republishes then deletes each entry. A crash between the two
// leaves the dead letter in place; replaying it again within the stream's
// duplicate window is deduped by its Nats-Msg-Id.
func (s *Store) replay(ctx context.Context, es []deadEntry) (int, error) {
	n := 0
	for _, e := range es {
		if err := s.replayOne(ctx, e); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (s *Store) replayOne(ctx context.Context, e deadEntry) error {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	m := e.dl.Message
	m.Attempts, m.LastStatus, m.LastError, m.NextAttemptAt = 0, 0, "", time.Time{}
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	// A stale record would resurrect the old attempt count.
	if err := s.attempts.Purge(ctx, attemptsKey(m.ID)); err != nil {
		return s.fail("replay "+m.ID, err)
	}
	subj := s.n.convSubject(partitionOf(m.Route, m.ConversationKey, s.o.Partitions), m.Route, m.ConversationKey)
	if _, err := s.js.PublishMsg(ctx, natsMsg(subj, data),
		jetstream.WithMsgID(replayMsgID(m.ID, e.seq)), jetstream.WithExpectStream(s.n.stream)); err != nil {
		return s.fail("replay "+m.ID, err)
	}
	if err := s.dlq.DeleteMsg(ctx, e.seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return s.fail("replay "+m.ID+": remove dead letter", err)
	}
	return nil
}

// DropDead deletes the dead letters matching id.
func (s *Store) DropDead(ctx context.Context, id string) (int, error) {
	m, err := s.findDead(ctx, id)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range m {
		dctx, cancel := s.opCtx(ctx)
		err := s.dlq.DeleteMsg(dctx, e.seq)
		cancel()
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, s.fail("drop dead letter", err)
		}
		n++
	}
	return n, nil
}

func natsMsg(subject string, data []byte) *nats.Msg {
	return &nats.Msg{Subject: subject, Data: data}
}
