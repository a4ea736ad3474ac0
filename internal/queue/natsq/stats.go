package natsq

import (
	"context"
	"time"

	"github.com/relayd/relayd/internal/queue"
)

// Stats counts messages across all replicas, cached for a second so a
// scrape costs two requests a second: the partitions owned here are
// counted as held; other owners report theirs with each claim refresh (so
// they lag by up to OwnerTTL/3); the stream's messages beyond those are
// not delivered to any owner yet, and count as ready.
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
	info, err := s.stream.Info(ctx)
	if err != nil {
		return queue.Stats{}, s.fail("stream info", err)
	}
	total := int(info.State.Msgs)
	var st queue.Stats
	now := s.o.Now()
	s.mu.Lock()
	for pn, p := range s.owned {
		if p.stopped {
			continue
		}
		r, d, f := p.countsLocked(now)
		st.Ready, st.Delayed, st.Inflight = st.Ready+r, st.Delayed+d, st.Inflight+f
		delete(s.rep, pn) // ours now, whatever the last round read
	}
	for _, r := range s.rep {
		st.Ready, st.Delayed, st.Inflight = st.Ready+r.Ready, st.Delayed+r.Delayed, st.Inflight+r.Inflight
	}
	s.mu.Unlock()
	// The rest is in the stream, not yet delivered to any owner.
	st.Ready += max(0, total-st.Ready-st.Delayed-st.Inflight)
	dinfo, err := s.dlq.Info(ctx)
	if err != nil {
		return queue.Stats{}, s.fail("dead-letter stream info", err)
	}
	st.Dead = int(dinfo.State.Msgs)
	return st, nil
}
