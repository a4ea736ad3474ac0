package natsq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relayd/relayd/internal/queue"
)

// Enqueue stores b: the dedupe mark first, then every message, returning
// once JetStream has acknowledged them all (each stored on disk, on a
// quorum of replicas). If any publish fails the mark is removed again, so
// the sender's retry is not taken for a duplicate.
func (s *Store) Enqueue(ctx context.Context, b queue.Batch) (duplicate bool, err error) {
	if len(b.Messages) == 0 && b.DedupeKey == "" {
		return false, nil
	}
	msgs := make([]*nats.Msg, len(b.Messages))
	now := s.o.Now()
	for i, m := range b.Messages {
		if m.ID == "" || m.Route == "" {
			return false, fmt.Errorf("natsq: message %q without id or route", m.ID)
		}
		if m.EnqueuedAt.IsZero() {
			m.EnqueuedAt = now
		}
		data, err := json.Marshal(m)
		if err != nil {
			return false, fmt.Errorf("natsq: encode message %s: %w", m.ID, err)
		}
		msgs[i] = &nats.Msg{
			Subject: s.n.convSubject(partitionOf(m.Route, m.ConversationKey, s.o.Partitions), m.Route, m.ConversationKey),
			Data:    data,
		}
	}

	if s.isClosed() {
		return false, queue.ErrClosed
	}
	// Fail fast while disconnected: ingest answers 503 at once rather
	// than waiting out a timeout per request.
	if st := s.nc.Status(); st != nats.CONNECTED {
		return false, fmt.Errorf("natsq: enqueue: nats %s: %w", st, queue.ErrUnavailable)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()

	if len(b.Messages) > 0 && s.o.MaxPending > 0 {
		n, err := s.pending(ctx)
		if err != nil {
			return false, err
		}
		if n+len(b.Messages) > s.o.MaxPending {
			return false, queue.ErrFull
		}
	}

	var dkey string
	if b.DedupeKey != "" {
		dkey = dedupeKey(b.DedupeKey)
		ttl := b.DedupeTTL
		if ttl <= 0 || ttl > s.o.DedupeTTL {
			ttl = s.o.DedupeTTL
		}
		// NATS keeps TTLs in whole seconds, at least one.
		ttl = max(ttl.Round(time.Second), time.Second)
		var opts []jetstream.KVCreateOpt
		if s.perKeyTTL {
			opts = append(opts, jetstream.KeyTTL(ttl))
		}
		mark := []byte(now.UTC().Format(time.RFC3339Nano))
		if _, err := s.dedupe.Create(ctx, dkey, mark, opts...); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				return true, nil
			}
			return false, s.fail("dedupe mark", err)
		}
	}

	s.publishHistory(ctx, b) // the event's record, before its messages can be delivered
	seqs, err := s.publishAll(ctx, b.Messages, msgs)
	if err != nil {
		if dkey != "" {
			// A fresh context: ctx may be what just expired.
			dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.Timeout)
			if derr := s.dedupe.Purge(dctx, dkey); derr != nil {
				s.log.Warn("could not remove dedupe mark after failed enqueue; a retry will be taken for a duplicate",
					"delivery", firstDelivery(b), "err", derr)
			}
			dcancel()
		}
		return false, err
	}
	s.cacheMu.Lock()
	s.pendN += len(msgs)
	s.cacheMu.Unlock()
	s.markNewest(ctx, b.Messages, seqs)
	return false, nil
}

func firstDelivery(b queue.Batch) string {
	if len(b.Messages) > 0 {
		return b.Messages[0].Delivery
	}
	return ""
}

// publishAll publishes asynchronously and waits for every ack, so a batch
// costs one round trip rather than one per message.
// It returns each message's stream sequence.
func (s *Store) publishAll(ctx context.Context, ms []queue.Message, msgs []*nats.Msg) ([]uint64, error) {
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		f, err := s.js.PublishMsgAsync(m, jetstream.WithMsgID(ms[i].ID), jetstream.WithExpectStream(s.n.stream))
		if err != nil {
			return nil, s.fail("publish", err)
		}
		futures[i] = f
	}
	seqs := make([]uint64, len(futures))
	for i, f := range futures {
		select {
		case a := <-f.Ok():
			if a != nil {
				seqs[i] = a.Sequence
			}
		case err := <-f.Err():
			return nil, s.fail("publish "+ms[i].ID, err)
		case <-ctx.Done():
			return nil, s.fail("publish "+ms[i].ID, ctx.Err())
		}
	}
	return seqs, nil
}

// pending returns the stream's message count, read at most once per statsTTL
// and counted up locally in between.
func (s *Store) pending(ctx context.Context) (int, error) {
	s.cacheMu.Lock()
	if time.Since(s.pendAt) < statsTTL {
		n := s.pendN
		s.cacheMu.Unlock()
		return n, nil
	}
	s.cacheMu.Unlock()
	info, err := s.stream.Info(ctx)
	if err != nil {
		return 0, s.fail("stream info", err)
	}
	n := int(info.State.Msgs)
	s.cacheMu.Lock()
	s.pendN, s.pendAt = n, time.Now()
	s.cacheMu.Unlock()
	return n, nil
}

// gone counts n messages out of the stream (acked or terminated here), so
// the cached count does not refuse work for up to statsTTL after a drain.
func (s *Store) gone(n int) {
	s.cacheMu.Lock()
	s.pendN = max(0, s.pendN-n)
	s.cacheMu.Unlock()
}
