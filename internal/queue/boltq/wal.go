package boltq

// The write-ahead log.
//
// An enqueue is durable once its frame is in the log and the log is
// fdatasync'd: one sequential write and one sync for a whole group of
// enqueues is all that stands between a webhook and its answer. A bbolt
// commit costs two syncs and rewrites every page the messages touch, so it
// moves off that path: the committer applies logged groups to bbolt
// afterwards, in log order, and records the last applied log sequence
// number (LSN) in the same transaction. A start after a crash applies the
// frames bbolt is missing before anything else reads the file. Segments
// whose frames are all applied are deleted.
//
// Segments sit next to the bbolt file, named <db>.wal.<first LSN, 16 hex>,
// and are written in advance (see walprep.go): frames end at the first
// zero length.
//
//	frame: body length (4) | CRC-32C of body (4) | body
//	body:  LSN (8) | dedupe expiry (8, Unix ns) | uvarint length + dedupe key
//	       | uvarint count | count × (uvarint length + message, see codec.go)
//	       [| the event's history record to the end, see history.go]
//
// A frame cut short or failing its checksum ends its segment: it is the
// tail of a write that never completed, so nobody was answered for it.

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/relayd/relayd/internal/queue"
)

const (
	walSegmentSize = 32 << 20  // a segment is closed once it holds this much
	walMaxFrame    = 256 << 20 // larger batches are refused, never logged
	// defaultMaxUnapplied bounds the messages logged and not yet in bbolt.
	// They are held in memory until applied; past it, enqueues wait for the
	// committer.
	defaultMaxUnapplied = 1 << 16
	// applyPace spaces the committer's transactions while it has only
	// logged enqueues to apply (see commitLoop).
	applyPace = 20 * time.Millisecond
	// applyBudget bounds the logged messages a transaction applies
	// (beyond the first logged group it takes), so that the acks and chat
	// updates joining it commit promptly; applying is then at least
	// applyBudget messages a transaction.
	applyBudget = 2048
	// replayChunk is the messages applied per transaction at start.
	replayChunk = 10000
)

var (
	keyWALApplied = []byte("walapplied")
	crcTable      = crc32.MakeTable(crc32.Castagnoli)
	errTornFrame  = errors.New("torn frame")
)

// walEntry is one logged batch.
type walEntry struct {
	lsn    uint64
	exp    int64 // dedupe mark expiry, Unix ns; 0 without a mark
	dedupe []byte
	msgs   []queue.Message
	rec    *storedRecord // the event's history record, or nil
}

func appendFrame(dst []byte, e *walEntry) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, 8)...)
	dst = binary.BigEndian.AppendUint64(dst, e.lsn)
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.exp))
	dst = binary.AppendUvarint(dst, uint64(len(e.dedupe)))
	dst = append(dst, e.dedupe...)
	dst = binary.AppendUvarint(dst, uint64(len(e.msgs)))
	for i := range e.msgs {
		// Reserve the length's worst case, then close the gap: one pass
		// over the message instead of encoding it twice.
		at := len(dst)
		dst = append(dst, make([]byte, binary.MaxVarintLen32)...)
		dst = encodeMessage(dst, &e.msgs[i])
		n := len(dst) - at - binary.MaxVarintLen32
		w := binary.PutUvarint(dst[at:], uint64(n))
		copy(dst[at+w:], dst[at+binary.MaxVarintLen32:])
		dst = dst[:at+w+n]
	}
	if e.rec != nil {
		dst = appendRecord(dst, e.rec)
	}
	body := dst[start+8:]
	binary.BigEndian.PutUint32(dst[start:], uint32(len(body)))
	binary.BigEndian.PutUint32(dst[start+4:], crc32.Checksum(body, crcTable))
	return dst
}

// readFrame reads the next frame; io.EOF at a clean end (the end of the
// file, or a zero length), errTornFrame at a damaged one.
func readFrame(r *bufio.Reader, buf []byte) (walEntry, []byte, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return walEntry{}, buf, errTornFrame
		}
		return walEntry{}, buf, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n == 0 {
		return walEntry{}, buf, io.EOF // the zeros of a prepared segment
	}
	if n < 18 || n > walMaxFrame {
		return walEntry{}, buf, errTornFrame
	}
	var body []byte
	if cap(buf) >= int(n) {
		body = buf[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return walEntry{}, buf, errTornFrame
		}
	} else {
		// Grow with the bytes actually there: a damaged length must not
		// allocate what the file does not hold.
		var b bytes.Buffer
		b.Grow(min(int(n), 1<<20))
		if got, _ := b.ReadFrom(io.LimitReader(r, int64(n))); got != int64(n) {
			return walEntry{}, buf, errTornFrame
		}
		body = b.Bytes()
		buf = body
	}
	if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(hdr[4:]) {
		return walEntry{}, buf, errTornFrame
	}
	e, err := parseFrameBody(body)
	return e, buf, err
}

func parseFrameBody(b []byte) (walEntry, error) {
	var e walEntry
	e.lsn = binary.BigEndian.Uint64(b)
	e.exp = int64(binary.BigEndian.Uint64(b[8:]))
	b = b[16:]
	next := func() ([]byte, error) {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			return nil, fmt.Errorf("%w: log frame %d", errCorrupt, e.lsn)
		}
		v := b[w : w+int(n)]
		b = b[w+int(n):]
		return v, nil
	}
	key, err := next()
	if err != nil {
		return e, err
	}
	if len(key) > 0 {
		e.dedupe = slices.Clone(key)
	}
	count, w := binary.Uvarint(b)
	if w <= 0 || count > uint64(len(b)) {
		return e, fmt.Errorf("%w: log frame %d", errCorrupt, e.lsn)
	}
	b = b[w:]
	e.msgs = make([]queue.Message, 0, count)
	for range count {
		v, err := next()
		if err != nil {
			return e, err
		}
		m, err := decodeMessage(v)
		if err != nil {
			return e, fmt.Errorf("log frame %d: %w", e.lsn, err)
		}
		e.msgs = append(e.msgs, m)
	}
	if len(b) > 0 {
		if e.rec, err = parseRecord(b); err != nil {
			return e, fmt.Errorf("log frame %d: %w", e.lsn, err)
		}
	}
	return e, nil
}

// wal is the log's file state, owned by walLoop once the store is open.
type wal struct {
	base     string // the bbolt file's path
	limit    int64  // segment size
	f        *os.File
	path     string   // f's name (f.Name() is the name it was opened by)
	size     int64    // bytes of frames in f
	prepared int64    // bytes of f prepared (zeroed and synced) in advance
	broken   bool     // a write or sync failed: the next write starts a new segment
	next     uint64   // LSN of the next frame
	last     uint64   // highest LSN written (or attempted) to f
	closed   []walSeg // earlier segments, oldest first
	buf      []byte

	prep      *preparer
	spare     spare // a prepared segment received and not yet used
	asked     bool  // a request to prep is unanswered
	spareSize int64 // size of the last segment asked for
}

type walSeg struct {
	path string
	last uint64
}

func segmentPath(base string, first uint64) string {
	return fmt.Sprintf("%s.wal.%016x", base, first)
}

// segments lists the log segments of the bbolt file at base, oldest first.
func segments(base string) ([]string, error) {
	dir, prefix := filepath.Dir(base), filepath.Base(base)+".wal."
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	type seg struct {
		path  string
		first uint64
	}
	var segs []seg
	for _, e := range ents {
		name := e.Name()
		hex, ok := strings.CutPrefix(name, prefix)
		if !ok || len(hex) != 16 {
			continue
		}
		first, err := strconv.ParseUint(hex, 16, 64)
		if err != nil {
			continue
		}
		segs = append(segs, seg{filepath.Join(dir, name), first})
	}
	slices.SortFunc(segs, func(a, b seg) int { return cmp.Compare(a.first, b.first) })
	paths := make([]string, len(segs))
	for i, s := range segs {
		paths[i] = s.path
	}
	return paths, nil
}

// write appends frames first..last (already encoded in b) and syncs them.
// After an error the segment is left as it is and the next write starts a
// new one, so a partial frame never sits before a good one.
func (w *wal) write(b []byte, first, last uint64) error {
	w.receiveSpare()
	end := w.size + int64(len(b))
	if w.f == nil || w.broken || w.size >= w.limit || (w.spare.f != nil && end > w.prepared) {
		if err := w.rotate(first); err != nil {
			return err
		}
	}
	w.last = last
	// Past the prepared end this extends the file: correct, only slower.
	if _, err := w.f.WriteAt(b, w.size); err != nil {
		w.broken = true
		return err
	}
	w.size += int64(len(b))
	if err := fdatasync(w.f); err != nil {
		w.broken = true
		return err
	}
	return nil
}

func (w *wal) receiveSpare() {
	if !w.asked {
		return
	}
	select {
	case sp := <-w.prep.ready:
		w.asked = false
		w.spare = sp
	default:
	}
}

// rotate closes the current segment and starts the next at LSN first: the
// prepared one when there is one, else an empty file; then asks for the
// one after.
func (w *wal) rotate(first uint64) error {
	if w.f != nil {
		_ = w.f.Close()
		if w.size == 0 {
			// No frame reached it (its first write failed): it holds
			// nothing to apply, and a disk that stays full would
			// otherwise leave one empty segment per failed write.
			_ = os.Remove(w.path)
		} else {
			w.closed = append(w.closed, walSeg{w.path, w.last})
		}
		w.f = nil
	}
	path := segmentPath(w.base, first)
	// A file of this name can only be left by a rotation of this process
	// that failed before writing: every start deletes the old segments and
	// numbers frames past them.
	var f *os.File
	var prepared int64
	if sp := w.spare; sp.f != nil {
		w.spare = spare{}
		if err := os.Rename(w.prep.path, path); err != nil {
			discardSpare(sp, w.prep.path)
		} else {
			f, prepared = sp.f, sp.size
		}
	}
	if f == nil {
		var err error
		if f, err = os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600); err != nil {
			w.askSpare()
			return err
		}
	}
	w.f, w.path, w.size, w.prepared, w.broken, w.last = f, path, 0, prepared, false, first-1
	w.askSpare()
	if err := syncDir(filepath.Dir(w.base)); err != nil {
		w.broken = true
		return err
	}
	return nil
}

// askSpare asks for the next prepared segment, unless one is on its way or
// at hand.
func (w *wal) askSpare() {
	if w.prep == nil || w.asked || w.spare.f != nil {
		return
	}
	w.spareSize = nextSpareSize(w.spareSize, w.limit)
	w.asked = true
	w.prep.want <- w.spareSize // never blocks: one request at a time
}

// prune deletes closed segments whose frames are all applied.
func (w *wal) prune(applied uint64) {
	for len(w.closed) > 0 && w.closed[0].last <= applied {
		_ = os.Remove(w.closed[0].path)
		w.closed = w.closed[1:]
	}
}

// close closes the current segment; its frames stay until the next Open
// applies them. Prepared segments not used yet are removed.
func (w *wal) close() error {
	if w.prep != nil {
		w.prep.close()
		discardSpare(w.spare, w.prep.path)
		w.spare = spare{}
	}
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// replayWAL applies the frames bbolt is missing, then deletes the
// segments: from here on bbolt holds everything they did. It first deletes
// the disk reserve (see space.go) to make room. If bbolt still cannot take
// them (a disk that stays full), the store starts all the same: the frames
// not applied are handed to the committer, which applies them as the disk
// allows, and their segments stay until it has.
func (s *Store) replayWAL(base string) error {
	s.wal.base = base
	s.wal.limit = cmp.Or(s.opts.segmentSize, walSegmentSize)
	var applied uint64
	if err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyWALApplied); len(v) == 8 {
			applied = binary.BigEndian.Uint64(v)
		}
		return nil
	}); err != nil {
		return err
	}
	paths, err := segments(base)
	if err != nil {
		return fmt.Errorf("list write-ahead log: %w", err)
	}
	// A segment being prepared when the last process stopped holds nothing.
	if err := os.Remove(sparePath(base)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("write-ahead log: %w", err)
	}
	if err := os.Remove(reservePath(base)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("release the disk reserve: %w", err)
	}
	top, done := applied, applied
	var (
		batch    []walEntry
		inBatch  int
		replayed int
		deferred []walEntry // frames bbolt could not take at start
		lasts    []uint64   // each segment's highest LSN
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if deferred != nil {
			deferred = append(deferred, batch...)
			batch, inBatch = batch[:0], 0
			return nil
		}
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i := range batch {
				if err := applyEntry(tx, &batch[i], nil); err != nil {
					return err
				}
			}
			return setApplied(tx, batch[len(batch)-1].lsn)
		})
		if err != nil {
			s.log.Error("boltq: cannot apply the write-ahead log at start; starting with it unapplied, to be applied as the disk allows",
				"err", err)
			deferred = append(make([]walEntry, 0, len(batch)), batch...)
		} else {
			replayed += inBatch
			done = batch[len(batch)-1].lsn
		}
		batch, inBatch = batch[:0], 0
		return nil
	}
	var buf []byte
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("write-ahead log: %w", err)
		}
		r := bufio.NewReaderSize(f, 1<<20)
		var last uint64
		for {
			var e walEntry
			e, buf, err = readFrame(r, buf)
			if err != nil {
				break
			}
			top = max(top, e.lsn)
			last = max(last, e.lsn)
			if e.lsn <= applied {
				continue
			}
			batch = append(batch, e)
			inBatch += len(e.msgs)
			if inBatch >= replayChunk {
				if err := flush(); err != nil {
					_ = f.Close()
					return fmt.Errorf("apply write-ahead log: %w", err)
				}
			}
		}
		_ = f.Close()
		lasts = append(lasts, last)
		if err != nil && !errors.Is(err, io.EOF) {
			// Only the last write before a crash can be cut short; anything
			// after it was never written, so the segment ends here.
			s.log.Warn("boltq: write-ahead log segment ends in an incomplete frame; it was never acknowledged", "segment", filepath.Base(p), "err", err)
		}
	}
	if err := flush(); err != nil {
		return fmt.Errorf("apply write-ahead log: %w", err)
	}
	s.wal.next = top + 1
	if deferred != nil {
		s.deferReplay(deferred, paths, lasts, done)
		return nil
	}
	// bbolt's commit synced what the segments held; they can go.
	for _, p := range paths {
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("remove applied write-ahead log segment: %w", err)
		}
	}
	if len(paths) > 0 {
		if err := syncDir(filepath.Dir(base)); err != nil {
			return fmt.Errorf("write-ahead log: %w", err)
		}
	}
	if replayed > 0 {
		s.log.Info("boltq: applied messages from the write-ahead log", "messages", replayed)
	}
	s.walApplied.Store(top)
	return nil
}

// deferReplay hands logged frames that bbolt could not take at start to
// the committer, which applies them in order before anything logged
// later, exactly as it applies a running log. Their segments stay, closed,
// until those frames are applied; applied is the highest LSN bbolt holds.
func (s *Store) deferReplay(entries []walEntry, paths []string, lasts []uint64, applied uint64) {
	for i, p := range paths {
		s.wal.closed = append(s.wal.closed, walSeg{p, lasts[i]})
	}
	s.walApplied.Store(applied)
	n := 0
	for len(entries) > 0 {
		k, msgs := 0, 0
		for k < len(entries) && (k == 0 || msgs < replayChunk) {
			msgs += len(entries[k].msgs)
			k++
		}
		chunk := entries[:k:k]
		entries = entries[k:]
		for _, e := range chunk {
			if e.dedupe != nil {
				s.logged[string(e.dedupe)] = loggedMark{e.exp, e.lsn}
			}
		}
		s.unapplied += msgs
		n += msgs
		_ = s.commitQ.push(&applyOp{entries: chunk, n: msgs}) // open, nothing runs yet
	}
	s.log.Warn("boltq: started with messages of the write-ahead log not yet applied; they are delivered once the disk has room",
		"messages", n)
}

// applyEntry writes a logged batch into bbolt: its messages at the tails of
// their conversations and its dedupe mark. placed, when not nil, collects
// the placements for the in-memory index.
func applyEntry(tx *bolt.Tx, e *walEntry, placed *[]placement) error {
	for i := range e.msgs {
		p, err := place(tx, &e.msgs[i])
		if err != nil {
			return err
		}
		if placed != nil {
			*placed = append(*placed, p)
		}
	}
	if e.rec != nil {
		if err := putRecord(tx, e.rec); err != nil {
			return err
		}
	}
	if e.dedupe != nil {
		return putDedupe(tx, e.dedupe, e.exp)
	}
	return nil
}

func putDedupe(tx *bolt.Tx, key []byte, exp int64) error {
	ev := u64(uint64(exp))
	if err := tx.Bucket(bucketDedupe).Put(key, ev); err != nil {
		return fatal(err)
	}
	xb := tx.Bucket(bucketDedupExp)
	xb.FillPercent = 0.9
	return fatal(xb.Put(append(ev[:8:8], key...), marker))
}

// loggedMark is a dedupe mark that is in the log and not yet in bbolt.
type loggedMark struct {
	exp int64
	lsn uint64
}

// enqueueOp is an Enqueue waiting for the log.
type enqueueOp struct {
	reply
	msgs   []queue.Message
	dedupe []byte
	ttl    time.Duration
	dup    bool
	rec    *storedRecord
}

// walLoop owns the log. Like the committer, each round takes everything
// that queued while the previous write and sync ran.
func (s *Store) walLoop() {
	defer s.walDone.Done()
	var group []*enqueueOp
	for {
		var stop bool
		group, stop = s.enqueues.take(group[:0], maxGroup)
		if len(group) > 0 {
			s.logGroup(group)
			clear(group)
			// Let handlers that are ready to enqueue run first: under load
			// the next group gathers them and the log syncs less often
			// for the same traffic; an idle process returns at once.
			runtime.Gosched()
			continue
		}
		if stop {
			return
		}
		select {
		case <-s.enqueues.kick:
		case <-s.appliedKick:
			s.pruneIdle()
		}
	}
}

// pruneIdle deletes the segments applied since the last write: the room
// comes back now, not at the next enqueue, which a store below its floor
// refuses. Below the floor it also gives up the current segment once all
// of it is applied, and a prepared one not yet used: the next write starts
// afresh.
func (s *Store) pruneIdle() {
	w := &s.wal
	applied := s.walApplied.Load()
	w.prune(applied)
	if s.space.lowErr() == nil {
		return
	}
	if w.f != nil && w.last <= applied {
		_ = w.f.Close()
		_ = os.Remove(w.path)
		w.f = nil
	}
	if w.spare.f != nil {
		discardSpare(w.spare, w.prep.path)
		w.spare = spare{}
	}
}

// logGroup checks a group of enqueues against the dedupe window and the
// capacity, logs the rest in one write and sync, answers every caller, and
// hands the logged batches to the committer.
func (s *Store) logGroup(ops []*enqueueOp) {
	if err := s.waitBacklog(); err != nil {
		for _, o := range ops {
			o.finish(err)
		}
		return
	}
	now := s.now()
	nowNano := now.UnixNano()
	results := make([]error, len(ops))

	// Marks still on their way to bbolt are checked before the read
	// transaction starts, so one applied in between is seen by it.
	s.mu.Lock()
	pending := s.pending + s.unapplied
	lookup := false
	for _, o := range ops {
		o.dup = false
		if o.dedupe == nil {
			continue
		}
		if m, ok := s.logged[string(o.dedupe)]; ok && m.exp > nowNano {
			o.dup = true
		} else {
			lookup = true
		}
	}
	s.mu.Unlock()
	if lookup {
		err := s.db.View(func(tx *bolt.Tx) error {
			dd := tx.Bucket(bucketDedupe)
			for _, o := range ops {
				if o.dedupe != nil && !o.dup {
					if v := dd.Get(o.dedupe); len(v) == 8 && int64(binary.BigEndian.Uint64(v)) > nowNano {
						o.dup = true
					}
				}
			}
			return nil
		})
		if err != nil {
			err = fmt.Errorf("%w: read dedupe marks: %v", queue.ErrUnavailable, err)
			for _, o := range ops {
				o.finish(err)
			}
			return
		}
	}

	w := &s.wal
	w.buf = w.buf[:0]
	entries := make([]walEntry, 0, len(ops))
	var inGroup map[string]struct{}
	n := 0
	for i, o := range ops {
		if o.dup {
			continue
		}
		if o.dedupe != nil {
			if _, ok := inGroup[string(o.dedupe)]; ok {
				o.dup = true
				continue
			}
			if inGroup == nil {
				inGroup = make(map[string]struct{})
			}
			inGroup[string(o.dedupe)] = struct{}{}
		}
		if max := s.opts.MaxPending; max > 0 && pending+len(o.msgs) > max {
			results[i] = queue.ErrFull
			continue
		}
		pending += len(o.msgs)
		n += len(o.msgs)
		e := walEntry{lsn: w.next, dedupe: o.dedupe, msgs: o.msgs, rec: o.rec}
		if o.dedupe != nil {
			e.exp = now.Add(o.ttl).UnixNano()
		}
		w.next++
		at := len(w.buf)
		if w.buf = appendFrame(w.buf, &e); len(w.buf)-at > walMaxFrame {
			results[i] = fmt.Errorf("boltq: batch of %d bytes is over the %d-byte limit", len(w.buf)-at, walMaxFrame)
			w.buf = w.buf[:at]
			pending -= len(o.msgs)
			n -= len(o.msgs)
			continue
		}
		entries = append(entries, e)
	}

	if len(entries) > 0 {
		s.mu.Lock()
		for _, e := range entries {
			if e.dedupe != nil {
				s.logged[string(e.dedupe)] = loggedMark{e.exp, e.lsn}
			}
		}
		s.unapplied += n
		s.mu.Unlock()
		err := w.write(w.buf, entries[0].lsn, entries[len(entries)-1].lsn)
		if err == nil {
			s.logWrites.Add(1)
			s.space.used(int64(len(w.buf)))
			owed := int64(owedFactor * len(w.buf))
			s.space.owed.Add(owed)
			err = s.commitQ.push(&applyOp{entries: entries, n: n, bytes: owed})
		} else {
			// Nobody is answered for these numbers and the next write
			// starts a segment of its own: the next frames take them, so
			// a disk that stays full does not run the numbers ahead.
			w.next = entries[0].lsn
		}
		if err != nil {
			s.log.Error("boltq: write-ahead log write failed", "err", err, "requests", len(entries))
			s.forget(entries, n)
			err = fmt.Errorf("%w: write-ahead log: %v", queue.ErrUnavailable, err)
			for i, o := range ops {
				if !o.dup && results[i] == nil {
					results[i] = err
				}
			}
		}
		w.prune(s.walApplied.Load())
	}
	for i, o := range ops {
		o.finish(results[i])
	}
}

// forget undoes the in-memory effects of logging entries: after a failed
// write (their callers get an error), or once they are applied.
func (s *Store) forget(entries []walEntry, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forgetLocked(entries, n)
}

func (s *Store) forgetLocked(entries []walEntry, n int) {
	for _, e := range entries {
		if e.dedupe != nil {
			if m, ok := s.logged[string(e.dedupe)]; ok && m.lsn == e.lsn {
				delete(s.logged, string(e.dedupe))
			}
		}
	}
	s.unapplied -= n
}

// waitBacklog holds the log back while the committer is Options.maxUnapplied
// messages behind: they are in memory until applied.
func (s *Store) waitBacklog() error {
	for {
		s.mu.Lock()
		behind := s.unapplied >= cmp.Or(s.opts.maxUnapplied, defaultMaxUnapplied)
		s.mu.Unlock()
		if !behind {
			return nil
		}
		select {
		case <-s.appliedKick:
		case <-s.closing:
			return fmt.Errorf("%w: closing with the write-ahead log's backlog unapplied", queue.ErrUnavailable)
		}
	}
}

// applyOp applies a logged group to bbolt. It never fails alone: if its
// transaction fails it goes back to the head of the committer's queue
// (order matters: the applied LSN only moves forward), and what is still
// unapplied at Close is applied at the next Open.
type applyOp struct {
	entries []walEntry
	n       int
	bytes   int64 // what applying them may take in bbolt (see space.owed)
	placed  []placement
}

func (o *applyOp) apply(tx *bolt.Tx, g *group) error {
	o.placed = o.placed[:0]
	for i := range o.entries {
		if err := applyEntry(tx, &o.entries[i], &o.placed); err != nil {
			return fatal(err)
		}
	}
	g.pending += o.n
	return fatal(setApplied(tx, o.entries[len(o.entries)-1].lsn))
}

// setApplied records lsn as applied; the record only moves forward.
func setApplied(tx *bolt.Tx, lsn uint64) error {
	meta := tx.Bucket(bucketMeta)
	if v := meta.Get(keyWALApplied); len(v) == 8 && binary.BigEndian.Uint64(v) >= lsn {
		return nil
	}
	return meta.Put(keyWALApplied, u64(lsn))
}

func (o *applyOp) commit(s *Store) {
	s.space.settled.Add(o.bytes)
	s.commitPlacements(o.placed)
	s.countRecords(o.entries)
	s.forgetLocked(o.entries, o.n)
	if lsn := o.entries[len(o.entries)-1].lsn; lsn > s.walApplied.Load() {
		s.walApplied.Store(lsn) // only the committer stores it
	}
	select {
	case s.appliedKick <- struct{}{}:
	default:
	}
}

func (o *applyOp) finish(error) {}
