package natsq

// History on JetStream: one stream, <Stream>_HISTORY, with a subject per
// record and at most one message per subject, so an update (a route's
// outcome) replaces the record. Its limits are the retention: MaxAge, and
// MaxMsgs for accepted events and rejected requests together.
//
//	<Stream>.hist.d<base64url(delivery)>  an accepted event, found by its delivery id
//	<Stream>.hist.x<record id>            a duplicate or a rejected request
//
// Listing walks the stream's sequence backwards: newest activity first (an
// updated record moves to the front), with the sequence as the cursor.

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relayd/relayd/internal/history"
	"github.com/relayd/relayd/internal/queue"
)

// HistoryOptions bound the history kept; zero fields take the defaults.
type HistoryOptions struct {
	Retention   time.Duration // default 168h
	MaxEvents   int           // default 100000
	MaxRejected int           // default 10000
}

type natsHistory struct {
	stream  jetstream.Stream
	prefix  string // "<Stream>.hist."
	updates chan outcomeUpdate
}

type outcomeUpdate struct {
	delivery, route string
	o               history.RouteOutcome
}

const (
	historyUpdates   = 4096 // outcome updates waiting for the writer; past it they are dropped
	historyFindTries = 5
)

// historyScanMax is the most stream messages one listing reads: a filter
// that matches little returns a short page with a Next to go on from.
var historyScanMax = 20000

// OpenHistory creates or updates the history stream and starts the writer
// of outcome updates, which stops at Close. Without it the history
// methods return history.ErrUnsupported.
func (s *Store) OpenHistory(ctx context.Context, o HistoryOptions) error {
	if o.Retention <= 0 {
		o.Retention = 168 * time.Hour
	}
	if o.MaxEvents <= 0 {
		o.MaxEvents = 100000
	}
	if o.MaxRejected <= 0 {
		o.MaxRejected = 10000
	}
	name := s.n.stream + "_HISTORY"
	prefix := s.n.stream + ".hist."
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	st, err := s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              name,
		Subjects:          []string{prefix + "*"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxAge:            o.Retention,
		MaxMsgs:           int64(o.MaxEvents + o.MaxRejected),
		MaxMsgsPerSubject: 1,
		Replicas:          s.o.Replicas,
		AllowDirect:       true,
	})
	if err != nil {
		return s.fail("history stream", err)
	}
	h := &natsHistory{stream: st, prefix: prefix, updates: make(chan outcomeUpdate, historyUpdates)}
	s.mu.Lock()
	s.hist = h
	s.mu.Unlock()
	s.wg.Add(1)
	go s.historyWriter(h)
	return nil
}

func (s *Store) history() (*natsHistory, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hist == nil {
		return nil, history.ErrUnsupported
	}
	return s.hist, nil
}

func (h *natsHistory) subject(r *history.Record) string {
	if r.Kind == history.Accepted && r.Delivery != "" {
		return h.deliverySubject(r.Delivery)
	}
	return h.prefix + "x" + r.ID
}

func (h *natsHistory) deliverySubject(d string) string {
	return h.prefix + "d" + base64.RawURLEncoding.EncodeToString([]byte(d))
}

// Record stores r. A duplicate is linked to its original first.
func (s *Store) Record(ctx context.Context, r history.Record) error {
	h, err := s.history()
	if err != nil {
		return nil // no history kept: nothing to do
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if r.Kind == history.Duplicate && r.DuplicateOf == "" {
		if orig, err := h.last(ctx, h.deliverySubject(r.Delivery)); err == nil {
			r.DuplicateOf = orig.ID
		}
	}
	return s.putRecord(ctx, h, &r, 0)
}

func (s *Store) putRecord(ctx context.Context, h *natsHistory, r *history.Record, lastSeq uint64) error {
	data, err := history.Encode(r)
	if err != nil {
		return err
	}
	var opts []jetstream.PublishOpt
	if lastSeq > 0 {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(lastSeq))
	}
	if _, err := s.js.Publish(ctx, h.subject(r), data, opts...); err != nil {
		return s.fail("history record", err)
	}
	return nil
}

// Outcome queues an update of a route's outcome; the writer applies it.
func (s *Store) Outcome(_ context.Context, delivery, route string, o history.RouteOutcome) {
	h, err := s.history()
	if err != nil {
		return
	}
	select {
	case h.updates <- outcomeUpdate{delivery, route, o}:
	default:
		s.log.Warn("history: outcome update dropped: the writer cannot keep up", "delivery", delivery, "route", route)
	}
}

func (s *Store) historyWriter(h *natsHistory) {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case u := <-h.updates:
			if err := s.applyOutcome(h, u); err != nil && s.ctx.Err() == nil {
				s.log.Warn("history: outcome not recorded", "delivery", u.delivery, "route", u.route, "err", err)
			}
		}
	}
}

// applyOutcome reads the record and writes it back updated, with
// compare-and-set on the subject's last sequence. The record may still be
// on its way (published beside the messages), hence the few tries.
func (s *Store) applyOutcome(h *natsHistory, u outcomeUpdate) error {
	subj := h.deliverySubject(u.delivery)
	for try := 1; ; try++ {
		ctx, cancel := s.opCtx(s.ctx)
		raw, err := h.stream.GetLastMsgForSubject(ctx, subj)
		if err == nil {
			var r history.Record
			if r, err = history.Decode(raw.Data); err != nil {
				cancel()
				return err
			}
			if !r.Update(u.delivery, u.route, u.o) {
				cancel()
				return nil
			}
			err = s.putRecord(ctx, h, &r, raw.Sequence)
			if err == nil {
				cancel()
				return nil
			}
		}
		cancel()
		if try == historyFindTries {
			return err
		}
		select {
		case <-s.ctx.Done():
			return s.ctx.Err()
		case <-time.After(time.Duration(try) * 50 * time.Millisecond):
		}
	}
}

func (h *natsHistory) last(ctx context.Context, subj string) (history.Record, error) {
	raw, err := h.stream.GetLastMsgForSubject(ctx, subj)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return history.Record{}, history.ErrNotFound
		}
		return history.Record{}, err
	}
	return history.Decode(raw.Data)
}

// Event returns the record of a delivery id, or of a duplicate's or
// rejected request's record id.
func (s *Store) Event(ctx context.Context, id string) (history.Record, error) {
	h, err := s.history()
	if err != nil {
		return history.Record{}, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	r, err := h.last(ctx, h.deliverySubject(id))
	if errors.Is(err, history.ErrNotFound) {
		r, err = h.last(ctx, h.prefix+"x"+id)
	}
	if err != nil && !errors.Is(err, history.ErrNotFound) {
		return r, s.fail("history", err)
	}
	return r, err
}

// Events lists records, newest activity first; Before and Next are stream
// sequences.
func (s *Store) Events(ctx context.Context, q history.Query) (history.Page, error) {
	page := history.Page{Events: []history.Record{}}
	h, err := s.history()
	if err != nil {
		return page, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	info, err := h.stream.Info(ctx)
	if err != nil {
		return page, s.fail("history stream info", err)
	}
	seq := info.State.LastSeq
	if q.Before != "" {
		b, err := strconv.ParseUint(q.Before, 10, 64)
		if err != nil {
			return page, fmt.Errorf("natsq: history cursor %q: not a sequence", q.Before)
		}
		seq = min(seq, b-1)
	}
	limit := q.PageLimit()
	for scanned := 0; seq >= info.State.FirstSeq && seq > 0; seq, scanned = seq-1, scanned+1 {
		if scanned == historyScanMax {
			page.Next = strconv.FormatUint(seq+1, 10)
			return page, nil
		}
		raw, err := h.stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // replaced by a later update, or expired
		}
		if err != nil {
			return page, s.fail("history", err)
		}
		r, err := history.Decode(raw.Data)
		if err != nil || !q.Matches(&r) {
			continue
		}
		if len(page.Events) == limit {
			page.Next = strconv.FormatUint(seq+1, 10)
			return page, nil
		}
		page.Events = append(page.Events, r.Summary())
	}
	return page, nil
}

// publishHistory stores a batch's record before its messages, so outcome
// updates find it. A failure costs the record, never the event.
func (s *Store) publishHistory(ctx context.Context, b queue.Batch) {
	if b.History == nil {
		return
	}
	h, err := s.history()
	if err != nil {
		return
	}
	if err := s.putRecord(ctx, h, b.History, 0); err != nil {
		s.log.Warn("history: event not recorded", "delivery", b.History.Delivery, "err", err)
	}
}
