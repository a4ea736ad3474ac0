package boltq

// Free space.
//
// A queue that fills its disk wedges itself: acks cannot commit, so nothing
// is ever freed. Two margins keep the commits that free space possible.
// Ingest stops at a floor (Options.MinFreeBytes): below it Enqueue fails
// with ErrLowSpace, so the last of the disk goes to acks, retries, deletes
// and to applying the log, never to new messages. And a reserve file
// (<db>.reserve, Options.ReserveBytes) holds space that nothing else on the
// disk can take: when a commit fails the committer deletes it before
// trying again, and it is written again once the floor, the reserve and
// as much again are free. Open deletes it before applying the log, so a
// start after a crash on a full disk has room.
//
// Free space is measured at most every Options.SpaceCheckInterval by one
// goroutine; between two measurements the log subtracts what it writes, so
// a burst cannot run far past the floor unseen.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/relayd/relayd/internal/queue"
)

const (
	// DefaultSpaceCheckInterval is how often free space is measured.
	DefaultSpaceCheckInterval = 250 * time.Millisecond
	// owedFactor is bbolt's room for a logged byte: pages are filled to
	// 90%, a page holds few large messages, and a commit writes its pages
	// anew before the old ones are free.
	owedFactor = 2
)

// ErrLowSpace is returned (wrapped with queue.ErrUnavailable) by Enqueue
// while the disk's free space is below Options.MinFreeBytes.
var ErrLowSpace = errors.New("boltq: free disk space is below the floor")

type space struct {
	dir     string
	reserve string // the reserve file's path
	floor   int64
	size    int64 // the reserve's size
	page    int64 // bbolt's page size, read at Open (db.Info races with a remap)
	every   time.Duration
	free    atomic.Int64 // last measurement less what the log wrote since; -1: unknown
	owed    atomic.Int64 // room that applying the messages logged and not yet applied may take
	// settled is owed room whose messages were applied since the last
	// measurement. It stays owed until a measurement that already sees the
	// file grown by them, so the estimate never drops between the two.
	settled atomic.Int64
	inner   atomic.Int64 // bbolt's free pages: room new messages take before the file grows
	held    atomic.Bool  // the reserve file is in place
	low     bool         // spaceLoop only: below the floor at the last measurement
}

func reservePath(base string) string { return base + ".reserve" }

func (sp *space) init(base string, o Options) {
	sp.dir = filepath.Dir(base)
	sp.reserve = reservePath(base)
	sp.floor = max(o.MinFreeBytes, 0)
	sp.size = max(o.ReserveBytes, 0)
	sp.every = o.SpaceCheckInterval
	if sp.every <= 0 {
		sp.every = DefaultSpaceCheckInterval
	}
	sp.free.Store(-1)
}

// measure reads the free space; -1 when it cannot be measured.
func (sp *space) measure() int64 {
	n, err := freeBytes(sp.dir)
	if err != nil {
		return -1
	}
	return n
}

// lowErr is ErrLowSpace with the figures, or nil above the floor. What
// the log holds and bbolt does not yet counts as spent: applying it will
// take about as much again.
func (sp *space) lowErr() error {
	free := sp.free.Load()
	if sp.floor == 0 || free < 0 {
		return nil
	}
	owed, inner := sp.owed.Load(), sp.inner.Load()
	if free+inner-owed >= sp.floor {
		return nil
	}
	return fmt.Errorf("%w: %d bytes free on disk and %d in the file, %d of them owed to messages being applied; floor %d (storage.min_free_bytes)",
		ErrLowSpace, free, inner, owed, sp.floor)
}

// used counts n bytes written since the last measurement.
func (sp *space) used(n int64) {
	if sp.free.Load() >= 0 {
		sp.free.Add(-n)
	}
}

// room reports whether n more bytes on disk leave the floor free there.
func (sp *space) room(n int64) bool {
	free := sp.free.Load()
	return sp.floor == 0 || free < 0 || free-n >= sp.floor
}

// LowSpace returns an error wrapping ErrLowSpace while the free space of
// the store's disk is below Options.MinFreeBytes, else nil.
func (s *Store) LowSpace() error { return s.space.lowErr() }

// FreeBytes is the free space of the store's disk as last measured (less
// what the log wrote since), or -1 when it is not measured.
func (s *Store) FreeBytes() int64 { return s.space.free.Load() }

// spaceLoop measures free space every interval and puts the reserve back
// when there is room for it above the floor.
func (s *Store) spaceLoop(ctx context.Context) {
	defer s.wg.Done()
	sp := &s.space
	t := time.NewTicker(sp.every)
	defer t.Stop()
	for {
		s.checkSpace()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Store) checkSpace() {
	sp := &s.space
	// Taken before measuring: what is applied after this stays owed.
	settled := sp.settled.Swap(0)
	free := sp.measure()
	// The reserve comes back only with room for it and as much again above
	// the floor: put back the moment it was released, it would take the
	// room the failed commit that released it is retrying in.
	if free >= 0 && sp.size > 0 && !sp.held.Load() && free-2*sp.size >= sp.floor {
		if err := writeReserve(sp.reserve, sp.size); err != nil {
			s.log.Warn("boltq: write the disk reserve", "path", sp.reserve, "err", err)
		} else {
			sp.held.Store(true)
			free = sp.measure()
		}
	}
	// A drained queue leaves its pages free inside the file, not on the
	// disk: they count, or a queue that once reached the floor would stay
	// below it.
	st := s.db.Stats()
	sp.inner.Store(int64(st.FreePageN) * sp.page)
	sp.free.Store(free)
	sp.owed.Add(-settled)
	if low := sp.lowErr() != nil; low != sp.low {
		sp.low = low
		if low {
			s.log.Warn("boltq: free disk space is below storage.min_free_bytes; refusing new messages until it returns",
				"free_bytes", free, "min_free_bytes", sp.floor)
		} else {
			s.log.Info("boltq: free disk space is back above storage.min_free_bytes; accepting messages", "free_bytes", free)
		}
	}
}

// writeReserve writes size bytes of zeros to path and syncs them, so the
// blocks are the file's and not merely promised.
func writeReserve(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	zero := make([]byte, min(size, zeroChunk))
	for off := int64(0); off < size && err == nil; off += int64(len(zero)) {
		_, err = f.Write(zero[:min(int64(len(zero)), size-off)])
	}
	if err == nil {
		err = fdatasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
	}
	return err
}

// releaseReserve deletes the reserve so a commit that failed (most likely
// for want of space) finds room when it is tried again. Committer only.
func (s *Store) releaseReserve() {
	sp := &s.space
	if !sp.held.Load() {
		return
	}
	if err := os.Remove(sp.reserve); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Error("boltq: release the disk reserve", "path", sp.reserve, "err", err)
		return
	}
	sp.held.Store(false)
	s.log.Warn("boltq: a commit failed; released the disk reserve so acks and the log can commit", "bytes", sp.size)
}

// lowSpaceErr is what Enqueue returns below the floor.
func lowSpaceErr(err error) error {
	return fmt.Errorf("%w: %w", queue.ErrUnavailable, err)
}
