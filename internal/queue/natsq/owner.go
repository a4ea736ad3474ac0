package natsq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/xtime"
)

// Partition ownership. Each partition is owned by one replica at a time,
// through a claim in the owners bucket (key p.<N>: owner id and expiry,
// changed only by compare-and-set on its revision). Replicas register
// there too (key m.<id>, with an expiry), so each knows how many are live
// and owns at most its fair share, ceil(partitions / replicas). See the
// package documentation.

// stop modes of a partition, by precedence.
const (
	modeNone   = iota
	modeResync // read the partition again from its start, keeping the claim
	modeGive   // give the partition back: wait for turns out, then delete the claim
	modeLost   // the claim is someone else's: drop everything at once
)

// part is a partition this replica owns. Its fields are guarded by
// Store.mu, except cc, owned by runPart.
type part struct {
	n        int
	rev      uint64    // the claim's revision
	validTil time.Time // hand out turns only before this
	mode     int       // a stop asked for, see mode*
	signal   chan struct{}
	draining bool          // no new turns: stopping
	idle     chan struct{} // closed when out reaches 0 while draining
	stopped  bool          // its messages are no longer ours
	stalled  bool          // a turn was not handed out for a lapsed claim
	epoch    int           // consumer incarnation, for deliveries still under way

	convs     map[string]*conv
	seqs      map[uint64]*item // held, by stream sequence
	held      int
	bodies    int // held messages whose body is kept here (item.m)
	bodyBytes int // their size as stored
	out       int // turns out
	lastCSeq  uint64
	records   map[string]attemptRecord // retry records as read when attached
	// The sequences acked most recently, so that a message whose ack was
	// lost with a connection is acked again when it comes back, not sent.
	acked    map[uint64]struct{}
	ackedLog []uint64 // ring, ackedAt is the next slot
	ackedAt  int
}

// rememberedAcks is how many acks an owner remembers per partition (see
// rememberAck): far more than turns end while a lost connection goes
// unnoticed.
const rememberedAcks = 4096

// rememberAck records seq as acked, forgetting the oldest past n: acks
// are lost only with a connection, and the partition is read again right
// after a reconnect. One forgotten is sent again: at least once.
func (p *part) rememberAck(seq uint64, n int) {
	if p.acked == nil {
		p.acked, p.ackedLog = map[uint64]struct{}{}, make([]uint64, 0, n)
	}
	if len(p.ackedLog) < n {
		p.ackedLog = append(p.ackedLog, seq)
	} else {
		delete(p.acked, p.ackedLog[p.ackedAt])
		p.ackedLog[p.ackedAt] = seq
		p.ackedAt = (p.ackedAt + 1) % n
	}
	p.acked[seq] = struct{}{}
}

// claim is the value of a partition's key in the owners bucket.
type claim struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
	// What the owner holds of the partition, for Stats on other replicas.
	Ready    int `json:"ready"`
	Delayed  int `json:"delayed"`
	Inflight int `json:"inflight"`
}

type member struct {
	Until time.Time `json:"until"`
}

func newMemberID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// signalLocked asks p's runner to stop in mode m (or a stronger one).
func (s *Store) signalLocked(p *part, m int) {
	if m <= p.mode {
		return
	}
	p.mode = m
	// A resync keeps handing out what is held: it only reads the
	// partition again, and what comes again is dropped as held.
	p.draining = m >= modeGive
	if m == modeLost {
		p.stopped = true
	}
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

// own keeps this replica's membership and its share of the partitions
// until Close.
func (s *Store) own() {
	defer s.wg.Done()
	every := max(s.o.OwnerTTL/3, 10*time.Millisecond)
	for {
		if s.paused.Load() {
			if xtime.Sleep(s.ctx, every) != nil {
				return
			}
			continue
		}
		if err := s.ownRound(); err != nil && s.ctx.Err() == nil {
			s.log.Warn("refreshing partition claims failed", "err", err)
		}
		if xtime.Sleep(s.ctx, every) != nil {
			return
		}
	}
}

// ownRound refreshes the membership and the claims, gives back partitions
// above the fair share and takes free ones below it.
func (s *Store) ownRound() error {
	ctx, cancel := s.opCtx(s.ctx)
	defer cancel()
	ttl := s.o.OwnerTTL
	start := s.o.Now()
	mv, _ := json.Marshal(member{Until: start.Add(ttl)})
	if _, err := s.owners.Put(ctx, memberKey(s.id), mv); err != nil {
		return err
	}
	entries, err := s.readOwners(ctx)
	if err != nil {
		return err
	}
	members := 1
	for k, e := range entries {
		id, ok := strings.CutPrefix(k, "m.")
		if !ok || id == s.id {
			continue
		}
		var m member
		if json.Unmarshal(e.Value(), &m) != nil {
			continue
		}
		switch {
		case m.Until.After(start):
			members++
		case m.Until.Before(start.Add(-10 * ttl)):
			// Long gone: tidy up.
			_ = s.owners.Delete(ctx, k, jetstream.LastRevision(e.Revision()))
		}
	}
	share := int(math.Ceil(float64(len(s.parts)) / float64(members)))

	// Refresh what we own.
	s.mu.Lock()
	mine := make([]*part, 0, len(s.owned))
	for _, p := range s.owned {
		if p.mode != modeLost {
			mine = append(mine, p)
		}
	}
	s.mu.Unlock()
	owning := 0
	for _, p := range mine {
		s.mu.Lock()
		c := claim{Owner: s.id, Until: start.Add(ttl)}
		c.Ready, c.Delayed, c.Inflight = p.countsLocked(start)
		rev := p.rev
		s.mu.Unlock()
		v, _ := json.Marshal(c)
		nrev, err := s.owners.Update(ctx, claimKey(p.n), v, rev)
		if isRevisionErr(err) {
			// An update whose answer was lost (an outage) moved the
			// revision on without telling us: still ours if it says so.
			if e, gerr := s.owners.Get(ctx, claimKey(p.n)); gerr == nil && claimOwner(e) == s.id {
				nrev, err = s.owners.Update(ctx, claimKey(p.n), v, e.Revision())
			}
		}
		s.mu.Lock()
		s.pruneLocked(p, start)
		switch {
		case err == nil:
			p.rev = nrev
			p.validTil = start.Add(ttl - ttl/3)
			if p.stalled {
				p.stalled = false
				for _, c := range p.convs {
					s.scheduleLocked(c, start)
				}
			}
		case isRevisionErr(err):
			s.log.Warn("lost a partition claim; another replica owns it now", "partition", p.n)
			s.signalLocked(p, modeLost)
		}
		if p.mode < modeGive {
			owning++
		}
		s.mu.Unlock()
	}

	// Other owners' counts, for Stats.
	rep := map[int]queue.Stats{}
	for _, pn := range s.parts {
		e, ok := entries[claimKey(pn)]
		if !ok {
			continue
		}
		var c claim
		if json.Unmarshal(e.Value(), &c) == nil && c.Owner != s.id && c.Until.After(start) {
			rep[pn] = queue.Stats{Ready: c.Ready, Delayed: c.Delayed, Inflight: c.Inflight}
		}
	}

	s.mu.Lock()
	s.rep = rep
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	if owning > share {
		// Give back the partitions with the fewest turns out.
		var give []*part
		for _, p := range s.owned {
			if p.mode < modeGive {
				give = append(give, p)
			}
		}
		slices.SortFunc(give, func(a, b *part) int { return a.out - b.out })
		for _, p := range give[:owning-share] {
			s.signalLocked(p, modeGive)
		}
	}
	s.mu.Unlock()
	if owning >= share {
		return nil
	}

	// Take free or expired claims, in a random order so that replicas
	// starting together do not all race for the same ones.
	free := slices.Clone(s.parts)
	mrand.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
	for _, pn := range free {
		if owning >= share || s.ctx.Err() != nil {
			break
		}
		s.mu.Lock()
		_, have := s.owned[pn]
		s.mu.Unlock()
		if have {
			continue
		}
		c := claim{Owner: s.id, Until: start.Add(ttl)}
		v, _ := json.Marshal(c)
		var rev uint64
		var err error
		e, ok := entries[claimKey(pn)]
		if !ok {
			rev, err = s.owners.Create(ctx, claimKey(pn), v)
		} else {
			var old claim
			if json.Unmarshal(e.Value(), &old) == nil && old.Until.After(start) && old.Owner != s.id {
				continue // owned, by another replica
			}
			rev, err = s.owners.Update(ctx, claimKey(pn), v, e.Revision())
		}
		if err != nil {
			continue // someone was quicker
		}
		owning++
		p := &part{n: pn, rev: rev, validTil: start.Add(ttl - ttl/3), signal: make(chan struct{}, 1)}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = s.owners.Delete(ctx, claimKey(pn), jetstream.LastRevision(rev))
			return nil
		}
		s.owned[pn] = p
		s.mu.Unlock()
		s.log.Debug("took partition", "partition", pn)
		s.wg.Add(1)
		go s.runPart(p)
	}
	return nil
}

// pruneLocked forgets the conversations of p that hold nothing and whose
// last turn end no longer matters to their route's coalescing wait.
func (s *Store) pruneLocked(p *part, now time.Time) {
	for k, c := range p.convs {
		if len(c.items) > 0 || c.out != nil || c.queued {
			continue
		}
		route, _, _ := strings.Cut(k, "\x00")
		if now.Sub(c.lastEnd) > s.policy(route).Wait {
			delete(p.convs, k)
		}
	}
}

// isRevisionErr reports a compare-and-set that found another revision, or
// no key.
func isRevisionErr(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound) ||
		errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// claimOwner reads the owner of a claim entry ("" if unreadable).
func claimOwner(e jetstream.KeyValueEntry) string {
	var c claim
	if json.Unmarshal(e.Value(), &c) != nil {
		return ""
	}
	return c.Owner
}

// readOwners returns the owners bucket's current entries by key.
func (s *Store) readOwners(ctx context.Context) (map[string]jetstream.KeyValueEntry, error) {
	out := map[string]jetstream.KeyValueEntry{}
	if err := readAll(ctx, s.owners, func(e jetstream.KeyValueEntry) { out[e.Key()] = e }); err != nil {
		return nil, fmt.Errorf("owners: %w", err)
	}
	return out, nil
}

// readAll calls each with every entry kv holds now (deleted keys left out),
// in one pass of a watcher over the bucket.
func readAll(ctx context.Context, kv jetstream.KeyValue, each func(jetstream.KeyValueEntry)) error {
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watcher closed")
			}
			if e == nil { // the end of the current values
				return nil
			}
			each(e)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// countsLocked is what p holds: heads due, messages waiting for a time or
// behind their conversation's head, and messages of turns out.
func (p *part) countsLocked(now time.Time) (ready, delayed, inflight int) {
	for _, c := range p.convs {
		n := len(c.items)
		switch {
		case n == 0:
		case c.out != nil:
			inflight += len(c.out.items)
			delayed += n - len(c.out.items)
		case c.items[0].due.After(now):
			delayed += n
		default:
			ready++
			delayed += n - 1
		}
	}
	return ready, delayed, inflight
}

// runPart reads partition p for as long as this replica owns it: it
// (re)creates the partition's consumer, so that every message of the
// partition not yet acked is delivered here in stream order, including
// those a previous owner held, and stops when asked.
func (s *Store) runPart(p *part) {
	defer s.wg.Done()
	log := s.log.With("partition", p.n)
	var cc jetstream.ConsumeContext
	for wait := 100 * time.Millisecond; ; {
		s.mu.Lock()
		mode := p.mode
		s.mu.Unlock()
		if mode == modeNone {
			var err error
			if cc, err = s.attach(p); err != nil {
				log.Warn("could not read the partition", "err", err)
				if xtime.Sleep(s.ctx, wait) != nil {
					break
				}
				wait = min(2*wait, 5*time.Second)
				continue
			}
			wait = 100 * time.Millisecond
			select {
			case <-p.signal:
			case <-s.ctx.Done():
			}
		}
		if s.ctx.Err() != nil {
			break
		}
		// Before a partition goes to another replica, let the turns out
		// end, unless it is someone else's already.
		s.mu.Lock()
		var idle chan struct{}
		if p.out > 0 && p.mode == modeGive {
			p.idle = make(chan struct{})
			idle = p.idle
		}
		s.mu.Unlock()
		if idle != nil {
			select {
			case <-idle:
			case <-p.signal: // lost meanwhile
			case <-s.ctx.Done():
			}
		}
		if cc != nil {
			cc.Stop()
			cc = nil
		}
		s.mu.Lock()
		mode = p.mode
		if mode == modeResync && s.ctx.Err() == nil {
			// Read the partition again from its start, keeping what is
			// held and out: the consumer's deliveries come in stream
			// order and what was lost is newer than anything held (a
			// delivery after a gap is not taken), so what is new to this
			// replica goes behind what it holds.
			p.mode, p.draining, p.idle = modeNone, false, nil
			p.epoch++
			s.mu.Unlock()
			continue
		}
		p.stopped = true
		delete(s.owned, p.n)
		rev := p.rev
		s.mu.Unlock()
		if mode == modeGive && s.ctx.Err() == nil {
			ctx, cancel := s.opCtx(context.Background())
			// Acks of the last turns are on their way: flushed first, so
			// the next owner's consumer does not deliver them again.
			_ = s.nc.FlushTimeout(s.o.Timeout)
			if err := s.owners.Delete(ctx, claimKey(p.n), jetstream.LastRevision(rev)); err != nil {
				log.Debug("could not give the partition back; its claim will expire", "err", err)
			}
			cancel()
			log.Debug("gave partition back")
		}
		return
	}
	if cc != nil {
		cc.Stop()
	}
}

// attach makes sure the claim is still ours, re-creates p's consumer
// (delivering every unacked message of the partition from the start),
// reads the retry records and starts consuming.
func (s *Store) attach(p *part) (jetstream.ConsumeContext, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 4*s.o.Timeout)
	defer cancel()
	s.mu.Lock()
	rev := p.rev
	s.mu.Unlock()
	e, err := s.owners.Get(ctx, claimKey(p.n))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, err
	}
	if err != nil || e.Revision() != rev && claimOwner(e) != s.id {
		s.mu.Lock()
		// A refresh may have moved the revision on meanwhile.
		if p.rev == rev {
			s.signalLocked(p, modeLost)
		}
		s.mu.Unlock()
		return nil, errors.New("claim changed")
	}
	name := s.n.consumerName(p.n)
	if err := s.js.DeleteConsumer(ctx, s.n.stream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	// Messages of releases before per-conversation subjects are read too,
	// while there are any: the server finds the next message of a single
	// filter faster than of several.
	cfg := jetstream.ConsumerConfig{FilterSubject: s.n.partSubject(p.n) + ".>"}
	old, err := subjectCounts(ctx, s.stream, s.n.partSubject(p.n))
	if err != nil {
		return nil, err
	}
	if len(old) > 0 {
		cfg = jetstream.ConsumerConfig{FilterSubjects: s.n.partFilters(p.n)}
	}
	cons, err := s.js.CreateOrUpdateConsumer(ctx, s.n.stream, jetstream.ConsumerConfig{
		Durable:        name,
		Description:    "relayd partition " + strconv.Itoa(p.n),
		FilterSubject:  cfg.FilterSubject,
		FilterSubjects: cfg.FilterSubjects,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		// The owner holds what it fetched for as long as it owns the
		// partition; a new owner re-creates the consumer. The wait only
		// brings back a delivery lost on its way here.
		AckWait:       consumerAckWait,
		MaxAckPending: s.o.Window,
		MaxDeliver:    -1,
		// Its state need not survive the server: acked messages leave the
		// stream, and an owner that finds the consumer gone re-creates it.
		// On disk, the server would rewrite the whole ack-pending set
		// after every few acks.
		MemoryStorage: true,
	})
	if err != nil {
		return nil, err
	}
	records, err := s.readRecords(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	p.epoch++
	epoch := p.epoch
	if p.convs == nil { // taken, rather than read again
		p.convs, p.seqs = map[string]*conv{}, map[uint64]*item{}
		p.held, p.bodies, p.bodyBytes = 0, 0, 0
	}
	p.lastCSeq, p.records = 0, records
	s.mu.Unlock()
	cc, err := cons.Consume(func(m jetstream.Msg) { s.receive(p, epoch, m) },
		// Batches stay small whatever the window: each message comes
		// with its body, dropped on arrival past a conversation's first
		// ones, and a batch is buffered whole.
		jetstream.PullMaxMessages(min(s.o.Window, fetchBatch)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				s.mu.Lock()
				if p.epoch == epoch {
					s.signalLocked(p, modeResync)
				}
				s.mu.Unlock()
			}
		}))
	if err != nil {
		return nil, err
	}
	return cc, nil
}

// fetchBatch bounds the messages a partition's pull asks for at once.
const fetchBatch = 1024

// consumerAckWait is the partition consumers' ack wait (see attach).
const consumerAckWait = 5 * time.Minute

// readRecords reads every retry record: the attempts and due times of the
// messages a previous owner put back.
func (s *Store) readRecords(ctx context.Context) (map[string]attemptRecord, error) {
	out := map[string]attemptRecord{}
	err := readAll(ctx, s.attempts, func(e jetstream.KeyValueEntry) {
		var r attemptRecord
		if json.Unmarshal(e.Value(), &r) == nil {
			out[e.Key()] = r
		}
	})
	if err != nil {
		return nil, fmt.Errorf("attempts: %w", err)
	}
	return out, nil
}

// resign gives up every claim and the membership at Close, so other
// replicas take the partitions at once rather than after OwnerTTL.
func (s *Store) resign() {
	ctx, cancel := s.opCtx(context.Background())
	defer cancel()
	s.mu.Lock()
	owned := s.owned
	s.owned = map[int]*part{}
	for _, p := range owned {
		p.stopped = true
	}
	s.mu.Unlock()
	if !s.nc.IsConnected() {
		return
	}
	_ = s.nc.FlushTimeout(s.o.Timeout)
	for _, p := range owned {
		_ = s.owners.Delete(ctx, claimKey(p.n), jetstream.LastRevision(p.rev))
	}
	_ = s.owners.Delete(ctx, memberKey(s.id))
}
