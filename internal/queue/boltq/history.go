package boltq

// History: what became of every request (see package history).
//
//	events   record id → record (history.Encode): accepted events and duplicates
//	evrej    record id → record: rejected requests, kept apart so that a
//	         flood of them never pushes accepted events out
//	evdeliv  delivery id NUL record id → marker
//
// Ids sort by time, so the first keys are the oldest: listing walks back
// from the end, the sweeper deletes from the front. An accepted event that
// produced messages travels in its batch's log frame and is applied with
// them (no write of its own). Everything else (events that produced no
// message, duplicates, rejected requests, dispatch's outcome updates)
// waits in memory for the next transaction the committer runs for any
// reason; when nothing else comes it is flushed within historyFlush.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/relayd/relayd/internal/history"
)

var (
	bucketEvents   = []byte("events")
	bucketRejected = []byte("evrej")
	bucketEvDeliv  = []byte("evdeliv")
)

// History defaults (config: history.*).
const (
	DefaultHistoryRetention   = 168 * time.Hour
	DefaultHistoryMaxEvents   = 100000
	DefaultHistoryMaxRejected = 10000

	historyFlush      = time.Second // longest a record waits for a transaction to join
	historyMaxPending = 1 << 14     // records and updates held for the next transaction; past it they are dropped
	historyMaxBytes   = 64 << 20    // and their bytes (bodies of events no route took can be large)
	historySweepEvery = time.Minute
)

// HistoryOptions bound the history kept. Zero fields take the defaults.
type HistoryOptions struct {
	Retention   time.Duration
	MaxEvents   int
	MaxRejected int
	// SweepInterval is how often the retention is enforced; negative
	// disables the sweeper.
	SweepInterval time.Duration
}

func (o HistoryOptions) resolved() HistoryOptions {
	if o.Retention <= 0 {
		o.Retention = DefaultHistoryRetention
	}
	if o.MaxEvents <= 0 {
		o.MaxEvents = DefaultHistoryMaxEvents
	}
	if o.MaxRejected <= 0 {
		o.MaxRejected = DefaultHistoryMaxRejected
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = historySweepEvery
	}
	return o
}

// histItem is a record to store or an outcome update, waiting for a
// transaction.
type histItem struct {
	rec      *storedRecord
	delivery string
	route    string
	outcome  history.RouteOutcome
}

// storedRecord is a record encoded for a bucket.
type storedRecord struct {
	id         string
	rejected   bool
	dup        bool // a duplicate: linked to the original as it is stored
	deliveries []string
	data       []byte
}

func encodeRecord(r *history.Record) (*storedRecord, error) {
	data, err := history.Encode(r)
	if err != nil {
		return nil, err
	}
	sr := &storedRecord{id: r.ID, rejected: r.Kind == history.Rejected, dup: r.Kind == history.Duplicate && r.DuplicateOf == "", data: data}
	if r.Delivery != "" {
		sr.deliveries = r.Deliveries()
	}
	return sr, nil
}

// appendRecord encodes sr for a log frame: uvarint length + id, uvarint
// count + deliveries, then the record to the frame's end.
func appendRecord(dst []byte, sr *storedRecord) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(sr.id)))
	dst = append(dst, sr.id...)
	dst = binary.AppendUvarint(dst, uint64(len(sr.deliveries)))
	for _, d := range sr.deliveries {
		dst = binary.AppendUvarint(dst, uint64(len(d)))
		dst = append(dst, d...)
	}
	return append(dst, sr.data...)
}

func parseRecord(b []byte) (*storedRecord, error) {
	next := func() (string, error) {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			return "", fmt.Errorf("%w: history record in log frame", errCorrupt)
		}
		v := string(b[w : w+int(n)])
		b = b[w+int(n):]
		return v, nil
	}
	sr := &storedRecord{}
	var err error
	if sr.id, err = next(); err != nil {
		return nil, err
	}
	count, w := binary.Uvarint(b)
	if w <= 0 || count > uint64(len(b)) {
		return nil, fmt.Errorf("%w: history record in log frame", errCorrupt)
	}
	b = b[w:]
	for range count {
		d, err := next()
		if err != nil {
			return nil, err
		}
		sr.deliveries = append(sr.deliveries, d)
	}
	sr.data = bytes.Clone(b)
	return sr, nil
}

// hist is the store's history state.
type hist struct {
	opts HistoryOptions

	mu      sync.Mutex
	pending []histItem
	bytes   int // of the records in pending
	dropped int
	taken   int // items the running transaction applies (committer only)

	events, rejected int // records stored; guarded by mu
}

func (s *Store) initHistory() error {
	s.hist.opts = s.opts.History.resolved()
	return s.db.View(func(tx *bolt.Tx) error {
		s.hist.events = tx.Bucket(bucketEvents).Stats().KeyN
		s.hist.rejected = tx.Bucket(bucketRejected).Stats().KeyN
		return nil
	})
}

func putRecord(tx *bolt.Tx, sr *storedRecord) error {
	b := tx.Bucket(bucketEvents)
	if sr.rejected {
		b = tx.Bucket(bucketRejected)
	}
	b.FillPercent = 0.9
	if sr.dup && len(sr.deliveries) > 0 {
		linkOriginal(tx, sr)
	}
	if err := b.Put([]byte(sr.id), sr.data); err != nil {
		return fatal(err)
	}
	idx := tx.Bucket(bucketEvDeliv)
	for _, d := range sr.deliveries {
		if err := idx.Put(delivKey(d, sr.id), marker); err != nil {
			return fatal(err)
		}
	}
	return nil
}

func delivKey(delivery, id string) []byte {
	k := make([]byte, 0, len(delivery)+1+len(id))
	k = append(k, delivery...)
	k = append(k, 0)
	return append(k, id...)
}

// Record stores a record that travels without messages; it is written with
// the next transaction, never with an fsync of its own.
func (s *Store) Record(_ context.Context, r history.Record) error {
	sr, err := encodeRecord(&r)
	if err != nil {
		return err
	}
	s.addHistory(histItem{rec: sr})
	return nil
}

// Outcome updates route's outcome in the record of delivery; like Record,
// it joins the next transaction.
func (s *Store) Outcome(_ context.Context, delivery, route string, o history.RouteOutcome) {
	s.addHistory(histItem{delivery: delivery, route: route, outcome: o})
}

func (s *Store) addHistory(it histItem) {
	h := &s.hist
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	if it.rec != nil {
		n = len(it.rec.data)
	}
	if len(h.pending) >= historyMaxPending || h.bytes+n > historyMaxBytes {
		h.dropped++
		return
	}
	h.bytes += n
	h.pending = append(h.pending, it)
}

// applyHistory writes the history items pending when the transaction
// started; the committer calls it inside every transaction it runs.
func (s *Store) applyHistory(tx *bolt.Tx) error {
	h := &s.hist
	h.mu.Lock()
	items := h.pending[:len(h.pending):len(h.pending)]
	if h.dropped > 0 {
		s.log.Warn("boltq: history records dropped: the store could not keep up", "records", h.dropped)
		h.dropped = 0
	}
	h.mu.Unlock()
	h.taken = len(items)
	for i := range items {
		it := &items[i]
		if it.rec != nil {
			if err := putRecord(tx, it.rec); err != nil {
				return err
			}
			continue
		}
		if err := updateOutcome(tx, it.delivery, it.route, it.outcome); err != nil {
			return err
		}
	}
	return nil
}

// historyCommitted drops the items the committed transaction applied. With
// failed set the transaction did not commit: they are dropped all the
// same, so a record that cannot be written never blocks the queue.
func (s *Store) historyCommitted(failed bool) {
	h := &s.hist
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, it := range h.pending[:h.taken] {
		if it.rec != nil {
			h.bytes -= len(it.rec.data)
			if !failed {
				h.count(it.rec.rejected, 1)
			}
		}
	}
	n := copy(h.pending, h.pending[h.taken:])
	clear(h.pending[n:])
	h.pending = h.pending[:n]
	h.taken = 0
}

func (h *hist) count(rejected bool, n int) {
	if rejected {
		h.rejected += n
	} else {
		h.events += n
	}
}

// updateOutcome applies an outcome update to the accepted records of
// delivery; one whose record the retention already removed is dropped.
func updateOutcome(tx *bolt.Tx, delivery, route string, o history.RouteOutcome) error {
	b := tx.Bucket(bucketEvents)
	for _, id := range recordIDs(tx, delivery) {
		v := b.Get([]byte(id))
		if v == nil {
			continue
		}
		data, ok, err := history.UpdateEncoded(v, delivery, route, o)
		if err != nil || !ok {
			continue
		}
		return fatal(b.Put([]byte(id), data))
	}
	return nil
}

// recordIDs lists the ids of delivery's records, oldest first.
func recordIDs(tx *bolt.Tx, delivery string) []string {
	if delivery == "" {
		return nil
	}
	prefix := append([]byte(delivery), 0)
	var ids []string
	c := tx.Bucket(bucketEvDeliv).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		ids = append(ids, string(k[len(prefix):]))
	}
	return ids
}

// histFlushOp wakes the committer for pending history; applyHistory does
// the work, as in every transaction.
type histFlushOp struct{}

func (histFlushOp) apply(*bolt.Tx, *group) error { return nil }
func (histFlushOp) commit(*Store)                {}
func (histFlushOp) finish(error)                 {}

// historyLoop flushes pending history when nothing else commits, and
// enforces the retention in small transactions.
func (s *Store) historyLoop(ctx context.Context) {
	defer s.wg.Done()
	flush := time.NewTicker(historyFlush)
	defer flush.Stop()
	var sweep <-chan time.Time
	if iv := s.hist.opts.SweepInterval; iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		sweep = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-flush.C:
			s.hist.mu.Lock()
			n := len(s.hist.pending)
			s.hist.mu.Unlock()
			if n > 0 {
				_ = s.commitQ.push(histFlushOp{})
			}
		case <-sweep:
			for {
				more, err := s.SweepHistory(ctx)
				if err != nil {
					if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
						s.log.Error("boltq: history sweep failed", "err", err)
					}
					break
				}
				if !more {
					break
				}
			}
		}
	}
}

// histSweepOp deletes up to limit records past the retention or the counts.
type histSweepOp struct {
	reply
	opts     HistoryOptions
	events   int
	rejected int
	limit    int
	n        [2]int // events, rejected deleted
	more     bool
}

func (o *histSweepOp) apply(tx *bolt.Tx, g *group) error {
	o.n, o.more = [2]int{}, false
	cutoff := g.now.Add(-o.opts.Retention)
	idx := tx.Bucket(bucketEvDeliv)
	for i, name := range [][]byte{bucketEvents, bucketRejected} {
		count, maxN := o.events, o.opts.MaxEvents
		if i == 1 {
			count, maxN = o.rejected, o.opts.MaxRejected
		}
		b := tx.Bucket(name)
		var keys [][]byte
		del := 0
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			t, _ := history.IDTime(string(k))
			if count-del <= maxN && !t.Before(cutoff) {
				break
			}
			if o.n[0]+del >= o.limit {
				o.more = true
				break
			}
			del++
			keys = append(keys, bytes.Clone(k))
			if r, err := history.Decode(v); err == nil && r.Delivery != "" {
				for _, d := range r.Deliveries() {
					keys = append(keys, append([]byte{0xff}, delivKey(d, r.ID)...))
				}
			}
		}
		for _, k := range keys {
			var err error
			if k[0] == 0xff {
				err = idx.Delete(k[1:])
			} else {
				err = b.Delete(k)
				o.n[i]++
			}
			if err != nil {
				return fatal(err)
			}
		}
	}
	return nil
}

func (o *histSweepOp) commit(s *Store) {
	s.hist.mu.Lock()
	s.hist.events -= o.n[0]
	s.hist.rejected -= o.n[1]
	s.hist.mu.Unlock()
}

// SweepHistory deletes one chunk of records past the retention; more is
// true when there may be others.
func (s *Store) SweepHistory(ctx context.Context) (more bool, err error) {
	s.hist.mu.Lock()
	o := &histSweepOp{opts: s.hist.opts, events: s.hist.events, rejected: s.hist.rejected, limit: sweepChunk}
	s.hist.mu.Unlock()
	if err := s.do(ctx, o); err != nil {
		return false, err
	}
	return o.more, nil
}

// HistoryCounts are the records stored: accepted events and duplicates,
// and rejected requests.
func (s *Store) HistoryCounts() (events, rejected int) {
	s.hist.mu.Lock()
	defer s.hist.mu.Unlock()
	return s.hist.events, s.hist.rejected
}

// eventsWindow is the most records one listing reads: a filter that
// matches little returns a short page with a Next to continue from, so a
// page costs the same with 100,000 records as with 5,000.
const eventsWindow = 5000

// Events lists records newest first, accepted and rejected together. A
// page may hold fewer than the limit with Next set: the window was read
// without filling it. Next is empty only when the history's end was
// reached.
func (s *Store) Events(ctx context.Context, q history.Query) (history.Page, error) {
	page, _, err := s.events(q, eventsWindow)
	return page, err
}

// events is Events reading at most window records; read is how many it
// read.
func (s *Store) events(q history.Query, window int) (page history.Page, read int, err error) {
	limit := q.PageLimit()
	page = history.Page{Events: []history.Record{}}
	// Filters other than source and outcome "rejected" never match a
	// rejected request.
	wantRejected := q.Route == "" && (q.Outcome == "" || q.Outcome == history.Rejected)
	wantEvents := q.Outcome != history.Rejected
	err = s.view(func(tx *bolt.Tx) error {
		type cur struct {
			c    *bolt.Cursor
			k, v []byte
		}
		start := func(name []byte, want bool) *cur {
			if !want {
				return &cur{}
			}
			c := tx.Bucket(name).Cursor()
			cu := &cur{c: c}
			if q.Before != "" {
				cu.k, cu.v = c.Seek([]byte(q.Before))
				if cu.k == nil {
					cu.k, cu.v = c.Last()
				}
				for cu.k != nil && string(cu.k) >= q.Before {
					cu.k, cu.v = c.Prev()
				}
			} else {
				cu.k, cu.v = c.Last()
			}
			return cu
		}
		ev, rj := start(bucketEvents, wantEvents), start(bucketRejected, wantRejected)
		var last []byte
		for {
			var cu *cur
			switch {
			case ev.k == nil && rj.k == nil:
				return nil
			case read == window:
				// Ids are unique across both buckets and Before is
				// exclusive, so the next call resumes after the last read.
				page.Next = string(last)
				return nil
			case rj.k == nil || (ev.k != nil && bytes.Compare(ev.k, rj.k) > 0):
				cu = ev
			default:
				cu = rj
			}
			k, v := cu.k, cu.v
			last = k
			read++
			cu.k, cu.v = cu.c.Prev()
			r, err := history.Decode(v)
			if err != nil {
				return fmt.Errorf("event %s: %w", k, err)
			}
			if !q.Matches(&r) {
				continue
			}
			if len(page.Events) == limit {
				page.Next = page.Events[limit-1].ID
				return nil
			}
			page.Events = append(page.Events, r.Summary())
		}
	})
	return page, read, err
}

// Event returns the record with that id, else the first accepted record
// of that delivery id (the original, not a duplicate), else any of its.
func (s *Store) Event(ctx context.Context, id string) (history.Record, error) {
	var out history.Record
	err := s.view(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketEvents, bucketRejected} {
			if v := tx.Bucket(name).Get([]byte(id)); v != nil {
				r, err := history.Decode(v)
				out = r
				return err
			}
		}
		found := false
		for _, rid := range recordIDs(tx, id) {
			for _, name := range [][]byte{bucketEvents, bucketRejected} {
				v := tx.Bucket(name).Get([]byte(rid))
				if v == nil {
					continue
				}
				r, err := history.Decode(v)
				if err != nil {
					return err
				}
				if !found || (out.Kind != history.Accepted && r.Kind == history.Accepted) {
					out, found = r, true
				}
			}
			if found && out.Kind == history.Accepted {
				break
			}
		}
		if !found {
			return history.ErrNotFound
		}
		return nil
	})
	return out, err
}

// HasDelivery reports whether any record has that delivery id.
func (s *Store) HasDelivery(ctx context.Context, delivery string) (bool, error) {
	var ok bool
	err := s.view(func(tx *bolt.Tx) error {
		ok = len(recordIDs(tx, delivery)) > 0
		return nil
	})
	return ok, err
}

// flushHistory writes what is pending at Close, once the committer has
// stopped.
func (s *Store) flushHistory() {
	s.hist.mu.Lock()
	n := len(s.hist.pending)
	s.hist.mu.Unlock()
	if n == 0 {
		return
	}
	err := s.db.Update(s.applyHistory)
	if err != nil {
		s.log.Warn("boltq: history not written at close", "err", err)
	}
	s.historyCommitted(err != nil)
}

// countRecords counts the records of applied log entries.
func (s *Store) countRecords(entries []walEntry) {
	n := 0
	for _, e := range entries {
		if e.rec != nil {
			n++
		}
	}
	if n > 0 {
		s.hist.mu.Lock()
		s.hist.events += n
		s.hist.mu.Unlock()
	}
}

// linkOriginal sets a duplicate's DuplicateOf to the first accepted record
// of its delivery id, when there is one.
func linkOriginal(tx *bolt.Tx, sr *storedRecord) {
	b := tx.Bucket(bucketEvents)
	for _, id := range recordIDs(tx, sr.deliveries[0]) {
		v := b.Get([]byte(id))
		if v == nil {
			continue
		}
		if orig, err := history.Decode(v); err != nil || orig.Kind != history.Accepted {
			continue
		}
		r, err := history.Decode(sr.data)
		if err != nil {
			return
		}
		r.DuplicateOf = id
		if data, err := history.Encode(&r); err == nil {
			sr.data = data
		}
		return
	}
}
