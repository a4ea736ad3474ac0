package natsq

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relayd/relayd/internal/queue"
)

// Stats counts messages across all replicas from the consumers' state,
// cached for a second so a scrape costs at most P+1 requests per second.
//
// Per partition the server knows the messages not yet delivered (pending)
// and the one out (ack pending). Pending messages are ready when their
// partition has nothing out, and delayed behind its head otherwise. A
// message out is in flight, unless its retry record says it waits for a
// retry or release time still to come: then it is delayed.
func (s *Store) Stats(ctx context.Context) (queue.Stats, error) {
	s.statsLock.Lock()
	defer s.statsLock.Unlock()
	s.cacheMu.Lock()
	if time.Since(s.statsAt) < statsTTL {
		st, err := s.stats, s.statsErr
		s.cacheMu.Unlock()
		return st, err
	}
	s.cacheMu.Unlock()

	st, err := s.readStats(ctx)
	s.cacheMu.Lock()
	s.stats, s.statsErr, s.statsAt = st, err, time.Now()
	s.cacheMu.Unlock()
	return st, err
}

// ChatCounts returns the number of chats by route (routes with none are
// absent), from counts a watcher over the chats bucket keeps current with
// every replica's writes (see chatCounts), so no chat is listed. Right
// after Open it waits for the watcher's first read of the bucket, or ctx.
func (s *Store) ChatCounts(ctx context.Context) (map[string]int, error) {
	select {
	case <-s.chatCounts.ready:
	case <-ctx.Done():
		return nil, s.fail("chat counts", ctx.Err())
	case <-s.ctx.Done():
	}
	if s.isClosed() {
		return nil, s.fail("chat counts", queue.ErrClosed)
	}
	return s.chatCounts.snapshot(), nil
}

func (s *Store) readStats(ctx context.Context) (queue.Stats, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var st queue.Stats
	for _, c := range s.parts {
		info, err := c.Info(ctx)
		if err != nil {
			return queue.Stats{}, s.fail("consumer info", err)
		}
		pending, out := int(info.NumPending), info.NumAckPending
		st.Inflight += out
		if out > 0 {
			st.Delayed += pending
		} else {
			st.Ready += pending
		}
	}
	waiting, err := s.backingOff(ctx)
	if err != nil {
		return queue.Stats{}, err
	}
	waiting = min(waiting, st.Inflight)
	st.Inflight -= waiting
	st.Delayed += waiting
	info, err := s.dlq.Info(ctx)
	if err != nil {
		return queue.Stats{}, s.fail("dead-letter stream info", err)
	}
	st.Dead = int(info.State.Msgs)
	return st, nil
}

// backingOff counts retry records whose next attempt is still to come.
func (s *Store) backingOff(ctx context.Context) (int, error) {
	w, err := s.attempts.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return 0, s.fail("read attempts", err)
	}
	defer w.Stop()
	now := s.o.Now()
	n := 0
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return 0, s.fail("read attempts", errors.New("watcher closed"))
			}
			if e == nil {
				return n, nil
			}
			var r attemptRecord
			if json.Unmarshal(e.Value(), &r) == nil && r.NextAttemptAt.After(now) {
				n++
			}
		case <-ctx.Done():
			return 0, s.fail("read attempts", ctx.Err())
		}
	}
}
