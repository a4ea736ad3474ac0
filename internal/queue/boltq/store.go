// Bucket layout, all in one bbolt file:
//
//	msgs     enqueue sequence (8) → message (binary, see codec.go)
//	next     enqueue sequence (8) → sequence of the next message of the same conversation
//	convs    route NUL conversation key → number, head, tail, count (8 each)
//	dead     dead sequence (8) → DeadLetter (JSON)
//	deadidx  "m" message id → dead key; "d" len delivery id dead key → marker
//	chats    route NUL conversation key → revision (8) + Chat (JSON)
//	dedupe   dedupe key → expiry (8, Unix ns)
//	dedupexp expiry (8) + dedupe key → marker
//	meta     "version", "ping", "walapplied" (the last write-ahead log
//	         sequence number applied, see wal.go)
//
// Why: the pages written per fsync decide ingest throughput, so every bucket
// written per message is appended to or small. Messages are keyed by one
// global sequence (msgs' NextSequence), which also orders heads across
// conversations: enqueues append at the right edge of the tree and acks
// delete from the left, touching few pages however many conversations
// there are. Each conversation is a linked list through next (keyed the same
// way, so as local) from the head and tail its convs record holds; the next
// head is one Get away. The in-memory index therefore needs one record per
// conversation, never one per message, and Open rebuilds it from the convs
// records and one head each instead of reading every message. Conversation
// numbers are fixed-width identities for the unbounded names. dedupexp
// orders dedupe marks by expiry so the sweeper reads only expired ones. Dead
// letters are rare and read by people: JSON, with indexes for the ids the
// admin API takes.

package boltq

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/relayd/relayd/internal/queue"
)

var (
	bucketConvs    = []byte("convs")
	bucketMsgs     = []byte("msgs")
	bucketNext     = []byte("next")
	bucketDead     = []byte("dead")
	bucketDeadIdx  = []byte("deadidx")
	bucketChats    = []byte("chats")
	bucketDedupe   = []byte("dedupe")
	bucketDedupExp = []byte("dedupexp")
	bucketMeta     = []byte("meta")

	allBuckets = [][]byte{bucketConvs, bucketMsgs, bucketNext, bucketDead, bucketDeadIdx, bucketChats, bucketDedupe, bucketDedupExp, bucketMeta,
		bucketEvents, bucketRejected, bucketEvDeliv}

	keyVersion = []byte("version")
	keyPing    = []byte("ping")
	marker     = []byte{1} // index values; never empty, which bbolt's compaction would read as a bucket
)

const (
	formatVersion = 1

	// DefaultDedupeTTL applies to a batch with a DedupeKey and no DedupeTTL.
	DefaultDedupeTTL = 24 * time.Hour
	// DefaultDedupeSweepInterval is how often expired dedupe marks are deleted.
	DefaultDedupeSweepInterval = time.Minute

	sweepChunk = 256  // dedupe marks deleted per transaction: bounds the latency a sweep adds to the group it joins
	replayPage = 500  // dead letters replayed per transaction by ReplayAllDead
	maxGroup   = 4096 // requests per group commit
	lockWait   = 5 * time.Second
)

// ErrLeaseEnded is returned by a Lease method called after Ack, Retry,
// Release or Dead already ended the lease.
var ErrLeaseEnded = errors.New("boltq: lease already ended")

// Options tune a Store. The zero value is usable.
type Options struct {
	// MaxPending bounds the messages stored and not dead; Enqueue returns
	// queue.ErrFull past it. 0 means unlimited.
	MaxPending int
	// Now is the clock (due times, dedupe expiry, timestamps). Default time.Now.
	Now func() time.Time
	// Logger receives storage errors. Default: discard.
	Logger *slog.Logger
	// DedupeSweepInterval is how often expired dedupe marks are deleted.
	// 0 means DefaultDedupeSweepInterval; negative disables the sweeper
	// (expired marks are still ignored, just not deleted).
	DedupeSweepInterval time.Duration
	// MinFreeBytes is the free-space floor of the file's disk: below it
	// Enqueue fails with ErrLowSpace, so what is left goes to the commits
	// that free space (see space.go). 0 means no floor.
	MinFreeBytes int64
	// ReserveBytes is the size of the reserve file kept beside the bbolt
	// file and given up when a commit or the log's replay needs the room
	// (see space.go). 0 means no reserve.
	ReserveBytes int64
	// SpaceCheckInterval is how often free space is measured. 0 means
	// DefaultSpaceCheckInterval.
	SpaceCheckInterval time.Duration
	// Turns gives each route's turn policy (how many messages a lease
	// carries, the coalescing wait); nil: one message a lease, no wait.
	// SetTurnPolicies replaces it on reload.
	Turns queue.TurnPolicies
	// History bounds the history of requests kept (see history.go).
	History HistoryOptions

	// Test knobs; zero means the defaults.
	segmentSize  int64         // walSegmentSize
	maxUnapplied int           // defaultMaxUnapplied
	applyPace    time.Duration // applyPace
	ackPace      time.Duration // ackPace; < 0: none
	commitFault  func() error  // when it returns an error, the transaction fails as a full disk's would
}

// Store is a durable queue, dead-letter store, chat-state store and dedupe
// window in one bbolt file. It is safe for concurrent use.
type Store struct {
	db   *bolt.DB
	now  func() time.Time
	log  *slog.Logger
	opts Options

	// mu guards the in-memory index and counters.
	mu        sync.Mutex
	closed    bool
	convs     map[uint64]*conv
	ready     readyHeap   // unleased heads with no next-attempt time, or promoted once due
	delayed   delayedHeap // unleased heads with a next-attempt time, until it passes
	pending   int         // messages stored and not dead, leased included
	inflight  int         // leased
	dead      int
	wake      chan struct{} // closed and replaced when a head is scheduled
	scheduled bool          // a head was scheduled since wake was last closed
	closing   chan struct{} // closed by Close

	chats     map[string]int // chat records by route, for ChatCounts; guarded by mu
	chatCache chatCache      // decoded chat records (see chatcache.go)

	// The write-ahead log (see wal.go). logged and unapplied are guarded by mu.
	enqueues    *requests[*enqueueOp]
	wal         wal                   // walLoop only, once open
	logged      map[string]loggedMark // dedupe marks logged and not yet applied
	unapplied   int                   // messages logged and not yet applied
	walApplied  atomic.Uint64         // highest LSN applied to bbolt
	appliedKick chan struct{}         // capacity 1: the committer applied a logged group
	logWrites   atomic.Uint64         // log writes, for tests and benchmarks
	walDone     sync.WaitGroup

	commitQ    *requests[op]
	fileSize   int64         // committer only: the file's size as of the last transaction
	urgent     atomic.Int64  // queued requests someone waits on
	urgentKick chan struct{} // capacity 1
	attempt    uint64        // committer only: number of the current write transaction
	commits    atomic.Uint64 // committed write transactions, for tests and benchmarks

	space space // free space and the reserve (see space.go)
	hist  hist  // the history of requests (see history.go)

	turns atomic.Pointer[queue.TurnPolicies]

	stopSweep context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the store at path and rebuilds the
// in-memory index from it. The parent directory is created 0o750, the file
// 0o600. Only one process may have the file open: Open waits for the file's
// lock at most lockWait, or until ctx's deadline. ctx bounds opening only,
// not the store's life.
func Open(ctx context.Context, path string, o Options) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("boltq: open %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("boltq: create data directory: %w", err)
	}
	wait := lockWait
	if dl, ok := ctx.Deadline(); ok {
		wait = max(min(wait, time.Until(dl)), time.Millisecond)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: wait,
		// The freelist is rebuilt at open rather than written at every
		// commit: after a large queue drains it would be megabytes per fsync.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("boltq: open %s: file is locked by another process: %w", path, err)
		}
		return nil, fmt.Errorf("boltq: open %s: %w", path, err)
	}
	s := &Store{
		db:          db,
		now:         o.Now,
		log:         o.Logger,
		opts:        o,
		convs:       make(map[uint64]*conv),
		chats:       make(map[string]int),
		wake:        make(chan struct{}),
		closing:     make(chan struct{}),
		enqueues:    newRequests[*enqueueOp](),
		commitQ:     newRequests[op](),
		logged:      make(map[string]loggedMark),
		appliedKick: make(chan struct{}, 1),
		urgentKick:  make(chan struct{}, 1),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.space.init(path, o)
	s.SetTurnPolicies(o.Turns)
	if err := s.init(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("boltq: open %s: %w", path, err)
	}
	if err := ctx.Err(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("boltq: open %s: %w", path, err)
	}
	if err := s.replayWAL(path); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("boltq: open %s: %w", path, err)
	}
	if err := s.rebuild(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("boltq: open %s: rebuild index: %w", path, err)
	}
	if err := s.initHistory(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("boltq: open %s: history: %w", path, err)
	}
	// No goroutine runs yet, so nothing can remap the file meanwhile.
	if fi, err := os.Stat(path); err == nil {
		dropMapped(db, fi.Size())
	}
	s.space.page = int64(db.Info().PageSize)

	s.wg.Add(1)
	go s.commitLoop()
	s.wal.prep = newPreparer(path, s.log, &s.space)
	go s.wal.prep.run()
	s.walDone.Add(1)
	go s.walLoop()
	ctx, cancel := context.WithCancel(context.Background())
	s.stopSweep = cancel
	s.space.free.Store(s.space.measure())
	s.wg.Add(1)
	go s.spaceLoop(ctx)
	if iv := sweepInterval(o.DedupeSweepInterval); iv > 0 {
		s.wg.Add(1)
		go s.sweepLoop(ctx, iv)
	}
	s.wg.Add(1)
	go s.historyLoop(ctx)
	return s, nil
}

func sweepInterval(d time.Duration) time.Duration {
	if d == 0 {
		return DefaultDedupeSweepInterval
	}
	return d
}

func (s *Store) init() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyVersion); v != nil {
			if len(v) != 8 || binary.BigEndian.Uint64(v) != formatVersion {
				return fmt.Errorf("unsupported storage format %x (this relayd reads version %d)", v, formatVersion)
			}
			return nil
		}
		return meta.Put(keyVersion, u64(formatVersion))
	})
}

// rebuild loads one record per conversation: its number and count from
// convs, and its head's due time from the head message's fixed header.
func (s *Store) rebuild() error {
	var stale [][]byte
	err := s.db.View(func(tx *bolt.Tx) error {
		msgs := tx.Bucket(bucketMsgs)
		cc := tx.Bucket(bucketConvs).Cursor()
		for k, v := cc.First(); k != nil; k, v = cc.Next() {
			r, err := parseConvRec(v)
			if err != nil {
				return fmt.Errorf("conversation %q: %w", k, err)
			}
			if r.count == 0 || msgs.Get(u64(r.head)) == nil {
				stale = append(stale, bytes.Clone(k))
				continue
			}
			h, err := readHead(msgs, r.head)
			if err != nil {
				return fmt.Errorf("conversation %q: %w", k, err)
			}
			c := &conv{num: r.num, count: int(r.count), head: h}
			s.convs[r.num] = c
			s.pending += c.count
			s.schedule(c)
		}
		dc := tx.Bucket(bucketDead).Cursor()
		for k, _ := dc.First(); k != nil; k, _ = dc.Next() {
			s.dead++
		}
		chc := tx.Bucket(bucketChats).Cursor()
		for k, _ := chc.First(); k != nil; k, _ = chc.Next() {
			s.chats[routeOfName(k)]++
		}
		return nil
	})
	if err != nil || len(stale) == 0 {
		return err
	}
	// Conversation records whose head is gone (only a bug would leave them)
	// are removed so the next enqueue starts the conversation afresh.
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketConvs)
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// head is what the index keeps of a conversation's first message.
type head struct {
	seq   uint64
	at    int64 // NextAttemptAt (0: due now)
	order int64 // at, or EnqueuedAt when at is 0: "oldest first" among due heads
}

// readHead reads what the index keeps of message seq.
func readHead(msgs *bolt.Bucket, seq uint64) (head, error) {
	v := msgs.Get(u64(seq))
	if v == nil {
		return head{}, fmt.Errorf("%w: message %d is missing", errCorrupt, seq)
	}
	at, enq, err := msgTimes(v)
	if err != nil {
		return head{}, err
	}
	return head{seq: seq, at: at, order: orderTime(at, enq)}, nil
}

func orderTime(at, enqueued int64) int64 {
	if at != 0 {
		return at
	}
	return enqueued
}

// Close stops the store's goroutines, commits requests already submitted,
// and closes the file. Outstanding leases are forgotten: their messages are
// still stored and are delivered again after the next Open. Blocked Next
// calls and later calls return queue.ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.closing)
		s.mu.Unlock()

		// The log drains first: what it logs still has to reach the committer.
		s.enqueues.close()
		s.walDone.Wait()
		s.commitQ.close()
		s.stopSweep()
		s.wg.Wait()
		s.flushHistory()
		s.syncFreelist()
		walErr := s.wal.close()
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("boltq: close: %w", err)
		} else if walErr != nil {
			s.closeErr = fmt.Errorf("boltq: close write-ahead log: %w", walErr)
		}
	})
	return s.closeErr
}

// syncFreelist writes bbolt's freelist with one last transaction, so the
// next Open reads it instead of walking every page of the file to rebuild
// it (slow for a large queue, and it makes the whole file resident). While
// running, the freelist is not written: after a large queue drains it would
// be megabytes a commit. After a crash the next Open rebuilds it.
func (s *Store) syncFreelist() {
	s.db.NoFreelistSync = false // no transaction runs: the goroutines are stopped
	if err := s.db.Update(func(*bolt.Tx) error { return nil }); err != nil {
		s.log.Warn("boltq: write the freelist at close; the next start rebuilds it", "err", err)
	}
}

// view runs a read transaction, mapping a closed database to queue.ErrClosed.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return queue.ErrClosed
	}
	err := s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return queue.ErrClosed
	}
	return err
}

// Enqueue stores b atomically and durably: it returns once b's messages and
// dedupe mark are in the write-ahead log and the log is fsync'd. They are
// applied to the queue (and become visible to Next) just after. duplicate is true, and
// nothing is stored, when b.DedupeKey was stored less than its TTL ago
// (b.DedupeTTL, or DefaultDedupeTTL when 0). Messages without EnqueuedAt get
// the store's clock. If ctx ends while the commit is under way the batch may
// still be stored; a sender retry is then caught by the dedupe mark.
func (s *Store) Enqueue(ctx context.Context, b queue.Batch) (bool, error) {
	if len(b.Messages) == 0 && b.DedupeKey == "" {
		return false, nil
	}
	msgs := make([]queue.Message, len(b.Messages))
	copy(msgs, b.Messages)
	var now time.Time
	for i := range msgs {
		m := &msgs[i]
		if err := validMessage(m); err != nil {
			return false, err
		}
		if m.EnqueuedAt.IsZero() {
			if now.IsZero() {
				now = s.now()
			}
			m.EnqueuedAt = now
		}
		if w := s.policy(m.Route).Wait; w > 0 && !m.IsReply() && m.Attempts == 0 && m.NextAttemptAt.IsZero() {
			// Due after the wait if it starts its conversation; applying
			// it drops the wait when the conversation has messages already.
			m.NextAttemptAt = m.EnqueuedAt.Add(w)
		}
	}
	ttl := b.DedupeTTL
	if ttl <= 0 {
		ttl = DefaultDedupeTTL
	}
	o := &enqueueOp{msgs: msgs, ttl: ttl}
	if b.History != nil {
		sr, err := encodeRecord(b.History)
		if err != nil {
			return false, err
		}
		o.rec = sr
	}
	if b.DedupeKey != "" {
		o.dedupe = dedupeName(b.DedupeKey)
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if err := s.space.lowErr(); err != nil {
		return false, lowSpaceErr(err)
	}
	o.init()
	if err := s.enqueues.push(o); err != nil {
		return false, err
	}
	select {
	case <-o.wait():
		if err := o.result(); err != nil {
			return false, err
		}
		return o.dup, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

func validMessage(m *queue.Message) error {
	switch {
	case m.ID == "":
		return errors.New("boltq: message without id")
	case m.Route == "":
		return fmt.Errorf("boltq: message %s without route", m.ID)
	case bytes.IndexByte([]byte(m.Route), 0) >= 0:
		return fmt.Errorf("boltq: message %s: route name contains NUL", m.ID)
	}
	return nil
}

// Ping commits a tiny write transaction: the storage is writable and syncs.
func (s *Store) Ping(ctx context.Context) error {
	return s.do(ctx, &pingOp{})
}

// Stats counts messages by state from in-memory counters. Ready counts
// conversation heads that are due and not leased (one per conversation at
// most: only a head can be delivered); Delayed counts the rest of the
// pending messages that are not leased (heads backing off and messages
// behind their conversation's head); Inflight counts leases; Dead counts
// dead letters.
func (s *Store) Stats(ctx context.Context) (queue.Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return queue.Stats{}, queue.ErrClosed
	}
	s.promote(unixNano(s.now()))
	return queue.Stats{
		Ready:    len(s.ready),
		Delayed:  s.pending - len(s.ready) - s.inflight + s.unapplied,
		Inflight: s.inflight,
		Dead:     s.dead,
	}, nil
}

// ChatCounts returns the number of chat records by route (routes with none
// are absent), from counts kept as records are created and deleted.
func (s *Store) ChatCounts(ctx context.Context) (map[string]int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, queue.ErrClosed
	}
	return maps.Clone(s.chats), nil
}
