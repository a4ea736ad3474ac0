package boltq

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/history"
	"github.com/relayd/relayd/internal/queue"
	bolt "go.etcd.io/bbolt"
)

func acceptedRecord(at time.Time, delivery string, msgs ...queue.Message) *history.Record {
	r := &history.Record{ID: history.NewID(at), Delivery: delivery, Source: "github", Event: "push",
		ReceivedAt: at, Kind: history.Accepted, Status: 202, Body: `{"x":1}`,
		Headers: map[string]string{"x-github-event": "push"}}
	for _, m := range msgs {
		r.Routes = append(r.Routes, history.RouteOutcome{Route: m.Route, Outcome: history.Queued, MessageID: m.ID,
			Conversation: m.ConversationKey, Turn: m.Prompt, QueuedAt: at})
	}
	r.Routes = append(r.Routes, history.RouteOutcome{Route: "other", Outcome: history.Filtered})
	return r
}

func TestHistoryStoredWithMessagesAndAcrossRestart(t *testing.T) {
	clock := newClock()
	s, path := openTemp(t, Options{Now: clock.Now})
	ctx := ctxT(t)
	m := newMsg("m1", "ci", "k")
	m.Delivery = "d1"
	writes := s.logWrites.Load()
	rec := acceptedRecord(clock.Now(), "d1", m)
	if _, err := s.Enqueue(ctx, queue.Batch{Messages: []queue.Message{m}, History: rec, DedupeKey: "d1"}); err != nil {
		t.Fatal(err)
	}
	if n := s.logWrites.Load() - writes; n != 1 {
		t.Fatalf("log writes for one event with its record = %d, want 1", n)
	}
	// Records without messages and outcome updates never write the log.
	rej := history.Record{ID: history.NewID(clock.Now().Add(time.Millisecond)), Source: "github", Kind: history.Rejected,
		Status: 401, Reason: "signature_mismatch", Remote: "192.0.2.1:5000", ReceivedAt: clock.Now()}
	if err := s.Record(ctx, rej); err != nil {
		t.Fatal(err)
	}
	s.Outcome(ctx, "d1", "ci", history.RouteOutcome{MessageID: "m1", Outcome: history.Delivered, Reply: "done", ChatID: "c1", Attempts: 1})
	if n := s.logWrites.Load() - writes; n != 1 {
		t.Fatalf("log writes = %d, want still 1", n)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	check := func(s *Store) {
		t.Helper()
		got, err := s.Event(ctx, "d1")
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != rec.ID || got.Body != rec.Body || len(got.Routes) != 2 {
			t.Fatalf("record = %+v", got)
		}
		if ro := got.Routes[0]; ro.Outcome != history.Delivered || ro.Reply != "done" || ro.ChatID != "c1" || ro.Turn != m.Prompt {
			t.Fatalf("route outcome = %+v", ro)
		}
		page, err := s.Events(ctx, history.Query{})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Events) != 2 || page.Events[0].ID != rej.ID || page.Events[1].ID != rec.ID {
			t.Fatalf("listing = %+v", page.Events)
		}
		if page.Events[1].Body != "" {
			t.Fatal("listing carries bodies")
		}
		if ev, rj := s.HistoryCounts(); ev != 1 || rj != 1 {
			t.Fatalf("counts = %d, %d", ev, rj)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check(openAt(t, path, Options{Now: clock.Now}))
}

func TestHistoryRecordedFromLogAfterCrash(t *testing.T) {
	clock := newClock()
	s, path := openTemp(t, Options{Now: clock.Now})
	m := newMsg("m1", "ci", "")
	rec := acceptedRecord(clock.Now(), m.Delivery, m)
	// Nothing reaches bbolt: the record lives only in the log frame.
	release := blockCommitter(t, s)
	if _, err := s.Enqueue(ctxT(t), queue.Batch{Messages: []queue.Message{m}, History: rec}); err != nil {
		t.Fatal(err)
	}
	crashed := copyFiles(t, path)
	release()
	s2 := openAt(t, crashed, Options{Now: clock.Now})
	got, err := s2.Event(ctxT(t), rec.ID)
	if err != nil || got.Routes[0].MessageID != "m1" {
		t.Fatalf("after replay: %+v %v", got, err)
	}
}

func TestHistoryQueryFilters(t *testing.T) {
	clock := newClock()
	s, _ := openTemp(t, Options{Now: clock.Now})
	ctx := ctxT(t)
	for i := range 7 {
		r := history.Record{ID: history.NewID(clock.Now().Add(time.Duration(i) * time.Second)), Delivery: fmt.Sprint("d", i),
			Source: "github", Kind: history.Accepted,
			Routes: []history.RouteOutcome{{Route: "ci", Outcome: history.Filtered}}}
		if i%2 == 0 {
			r.Routes[0].Outcome = history.TemplateError
		}
		if err := s.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		q    history.Query
		want []string
	}{
		{history.Query{Limit: 3}, []string{"d6", "d5", "d4"}},
		{history.Query{Outcome: history.TemplateError}, []string{"d6", "d4", "d2", "d0"}},
		{history.Query{Route: "nope"}, nil},
		{history.Query{Source: "stripe"}, nil},
	}
	for _, tt := range tests {
		page, err := s.Events(ctx, tt.q)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range page.Events {
			got = append(got, r.Delivery)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%+v: got %v, want %v", tt.q, got, tt.want)
		}
	}
	// Paging walks on from Next.
	page, _ := s.Events(ctx, history.Query{Limit: 3})
	page2, _ := s.Events(ctx, history.Query{Limit: 3, Before: page.Next})
	if len(page2.Events) != 3 || page2.Events[0].Delivery != "d3" {
		t.Fatalf("second page = %+v", page2)
	}
	if _, err := s.Event(ctx, "missing"); !errors.Is(err, history.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
}

func TestHistoryRetention(t *testing.T) {
	clock := newClock()
	s, _ := openTemp(t, Options{Now: clock.Now, History: HistoryOptions{Retention: time.Hour, MaxEvents: 5, MaxRejected: 2, SweepInterval: -1}})
	ctx := ctxT(t)
	old := clock.Now().Add(-2 * time.Hour)
	for i := range 600 {
		at := clock.Now().Add(time.Duration(i) * time.Millisecond)
		if i < 3 {
			at = old.Add(time.Duration(i))
		}
		if err := s.Record(ctx, history.Record{ID: history.NewID(at), Delivery: fmt.Sprint("d", i), Kind: history.Accepted}); err != nil {
			t.Fatal(err)
		}
		if i < 4 {
			if err := s.Record(ctx, history.Record{ID: history.NewID(at), Kind: history.Rejected, Status: 401}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	rounds := 0
	for more := true; more; rounds++ {
		var err error
		if more, err = s.SweepHistory(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if rounds < 2 {
		t.Fatalf("swept in %d rounds; chunks should bound a round", rounds)
	}
	if ev, rj := s.HistoryCounts(); ev != 5 || rj != 1 {
		t.Fatalf("after sweep: %d events, %d rejected; want 5, 1 (the old ones go by age)", ev, rj)
	}
	page, _ := s.Events(ctx, history.Query{})
	if len(page.Events) != 6 || page.Events[0].Delivery != "d599" {
		t.Fatalf("kept %+v", page.Events)
	}
	if ok, _ := s.HasDelivery(ctx, "d0"); ok {
		t.Fatal("delivery index kept a swept record")
	}
}

// TestHistoryListingReadsAWindowPerPage stores 30,000 records in a real
// file (a smaller window than Events' keeps the proportions of 100,000): a
// filter that matches three of them finds all three by following Next, and
// no call reads more than the window.
func TestHistoryListingReadsAWindowPerPage(t *testing.T) {
	const total, window = 30000, 1500
	clock := newClock()
	s, _ := openTemp(t, Options{Now: clock.Now, History: HistoryOptions{MaxEvents: 2 * total, SweepInterval: -1}})
	rare := map[int]bool{7: true, total/2 + 1: true, total - 3: true} // 0 is the oldest
	var want []string
	for start := 0; start < total; start += 10000 {
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i := start; i < start+10000; i++ {
				r := &history.Record{ID: history.NewID(clock.Now().Add(time.Duration(i-total) * time.Millisecond)),
					Delivery: fmt.Sprint("d", i), Source: "github", Kind: history.Accepted,
					Routes: []history.RouteOutcome{{Route: "ci", Outcome: history.Delivered}}}
				if i%1000 == 0 {
					r = &history.Record{ID: r.ID, Source: "github", Kind: history.Rejected, Status: 401}
				}
				if rare[i] {
					r.Routes = append(r.Routes, history.RouteOutcome{Route: "rare", Outcome: history.Dead})
					want = append([]string{r.Delivery}, want...)
				}
				sr, err := encodeRecord(r)
				if err != nil {
					return err
				}
				if err := putRecord(tx, sr); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		q     history.Query
		want  []string
		calls int // pages it takes to reach the end
	}{
		{"rare route", history.Query{Route: "rare", Limit: 10}, want, total / window},
		{"rare outcome", history.Query{Outcome: history.Dead}, want, total / window},
		{"no match", history.Query{Source: "stripe"}, nil, total / window},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			calls := 0
			for q := tt.q; ; calls++ {
				page, read, err := s.events(q, window)
				if err != nil {
					t.Fatal(err)
				}
				if read > window {
					t.Fatalf("call %d read %d records, more than the window %d", calls, read, window)
				}
				for _, r := range page.Events {
					got = append(got, r.Delivery)
				}
				if page.Next == "" {
					break
				}
				if calls > total/window+1 {
					t.Fatalf("still a next after %d calls", calls)
				}
				q.Before = page.Next
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if calls+1 != tt.calls {
				t.Errorf("reached the end in %d calls, want %d", calls+1, tt.calls)
			}
		})
	}
	// A filter that matches often fills its page from the newest records.
	page, read, err := s.events(history.Query{Route: "ci", Limit: 50}, window)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 50 || page.Next != page.Events[49].ID || read > 60 {
		t.Fatalf("full page: %d events, next %q, read %d", len(page.Events), page.Next, read)
	}
}
