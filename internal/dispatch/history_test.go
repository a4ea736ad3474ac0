package dispatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/history"
	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/queue/boltq"
)

var _ dispatch.History = (*boltq.Store)(nil)

// enqueueRecorded stores m with its event's history record.
func (h *harness) enqueueRecorded(m queue.Message) history.Record {
	h.t.Helper()
	rec := history.Record{ID: history.NewID(time.Now()), Delivery: m.Delivery, Source: m.Source, Kind: history.Accepted,
		Routes: []history.RouteOutcome{{Route: m.Route, Outcome: history.Queued, MessageID: m.ID, Turn: m.Prompt}}}
	if _, err := h.store.Enqueue(context.Background(), queue.Batch{Messages: []queue.Message{m}, History: &rec}); err != nil {
		h.t.Fatalf("enqueue: %v", err)
	}
	return rec
}

func (h *harness) outcome(delivery string) history.RouteOutcome {
	h.t.Helper()
	if err := h.store.Ping(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	rec, err := h.store.Event(context.Background(), delivery)
	if err != nil {
		h.t.Fatalf("event: %v", err)
	}
	return rec.Routes[0]
}

func TestHistoryOutcomes(t *testing.T) {
	h := newHarness(t)
	h.opts.History = h.store
	h.settings.Retry.MaxAttempts = 3
	h.fake.FailNext(1, fake.Fault{Status: 503})
	ok := newMsg("ci", "a", "first turn")
	h.enqueueRecorded(ok)
	h.start()
	h.settled()
	got := h.outcome(ok.Delivery)
	if got.Outcome != history.Delivered || got.Attempts != 2 || got.ChatID == "" || got.Reply == "" ||
		got.Turn == "" || got.SentAt.IsZero() || got.DoneAt.IsZero() || got.LastError == "" {
		t.Fatalf("delivered after a retry: %+v", got)
	}

	h.fake.FailNext(1, fake.Fault{Status: 400})
	bad := newMsg("ci", "b", "refused turn")
	h.enqueueRecorded(bad)
	h.settled()
	if got := h.outcome(bad.Delivery); got.Outcome != history.Dead || got.Attempts != 1 || got.LastError == "" {
		t.Fatalf("dead: %+v", got)
	}
}
