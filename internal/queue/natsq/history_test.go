package natsq_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/history"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/queue/natsq"
	"github.com/relayd/relayd/internal/queue/natsq/natstest"
)

func TestHistoryOnJetStream(t *testing.T) {
	_, url := natstest.RunServer(t)
	s := open(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Event(ctx, "d-1"); !errors.Is(err, history.ErrUnsupported) {
		t.Fatalf("before OpenHistory: %v", err)
	}
	if err := s.OpenHistory(ctx, natsq.HistoryOptions{MaxEvents: 4, MaxRejected: 1}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	m := queue.Message{ID: "m1", Route: "ci", Delivery: "d-1", Prompt: "turn"}
	rec := history.Record{ID: history.NewID(now), Delivery: "d-1", Source: "github", Kind: history.Accepted, Body: `{"a":1}`,
		Routes: []history.RouteOutcome{{Route: "ci", Outcome: history.Queued, MessageID: "m1", Turn: "turn"}}}
	if _, err := s.Enqueue(ctx, queue.Batch{Messages: []queue.Message{m}, History: &rec, DedupeKey: "d-1"}); err != nil {
		t.Fatal(err)
	}
	s.Outcome(ctx, "d-1", "ci", history.RouteOutcome{MessageID: "m1", Outcome: history.Delivered, Reply: "done", Attempts: 1})
	var got history.Record
	deadline := time.Now().Add(20 * time.Second)
	for got.Routes == nil || got.Routes[0].Outcome != history.Delivered {
		var err error
		if got, err = s.Event(ctx, "d-1"); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("outcome not applied: %+v", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got.Body != rec.Body || got.Routes[0].Reply != "done" || got.Routes[0].Turn != "turn" {
		t.Fatalf("record %+v", got)
	}
	dup := rec
	dup.ID, dup.Kind, dup.Body, dup.Routes = history.NewID(now.Add(time.Millisecond)), history.Duplicate, "", nil
	if err := s.Record(ctx, dup); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := s.Record(ctx, history.Record{ID: history.NewID(now.Add(time.Duration(i+2) * time.Millisecond)),
			Delivery: fmt.Sprint("f-", i), Kind: history.Accepted, Routes: []history.RouteOutcome{{Route: "ci", Outcome: history.Filtered}}}); err != nil {
			t.Fatal(err)
		}
	}
	page, err := s.Events(ctx, history.Query{Limit: 2})
	if err != nil || len(page.Events) != 2 || page.Events[0].Delivery != "f-2" || page.Next == "" {
		t.Fatalf("first page %+v %v", page, err)
	}
	page, err = s.Events(ctx, history.Query{Limit: 10, Before: page.Next})
	if err != nil || len(page.Events) != 3 {
		t.Fatalf("second page %+v %v", page, err)
	}
	// The duplicate points at the original.
	if d := page.Events[1]; d.Kind != history.Duplicate || d.DuplicateOf != rec.ID {
		t.Fatalf("duplicate %+v", d)
	}
	// A listing reads a window of messages: a filter that matches only
	// the oldest record gets there by following next.
	restore := natsq.SetHistoryScanMax(2)
	var found []string
	calls := 0
	for q := (history.Query{Outcome: history.Delivered}); ; calls++ {
		page, err := s.Events(ctx, q)
		if err != nil || calls > 10 {
			t.Fatalf("windowed listing: %+v %v after %d calls", page, err, calls)
		}
		for _, r := range page.Events {
			found = append(found, r.Delivery)
		}
		if page.Next == "" {
			break
		}
		q.Before = page.Next
	}
	restore()
	if fmt.Sprint(found) != "[d-1]" || calls < 2 {
		t.Fatalf("windowed listing found %v in %d calls, want [d-1] in more than one", found, calls+1)
	}
	// The stream's limits are the retention: 5 records at most.
	if err := s.Record(ctx, history.Record{ID: history.NewID(now.Add(time.Second)), Delivery: "f-9", Kind: history.Accepted}); err != nil {
		t.Fatal(err)
	}
	page, _ = s.Events(ctx, history.Query{})
	if len(page.Events) != 5 {
		t.Fatalf("kept %d records, want 5", len(page.Events))
	}
	if _, err := s.Event(ctx, "d-1"); !errors.Is(err, history.ErrNotFound) {
		t.Fatalf("the oldest should have gone: %v", err)
	}
}
