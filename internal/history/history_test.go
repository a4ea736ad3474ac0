package history

import (
	"testing"
	"time"
)

func TestIDsSortByTime(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	a, b := NewID(t0), NewID(t0.Add(time.Nanosecond))
	if !(a < b) {
		t.Fatalf("%s !< %s", a, b)
	}
	if got, ok := IDTime(a); !ok || !got.Equal(t0) {
		t.Fatalf("IDTime(%s) = %v, %v", a, got, ok)
	}
	if _, ok := IDTime("zz"); ok {
		t.Fatal("a malformed id has a time")
	}
}

func TestUpdateFindsTheRoute(t *testing.T) {
	r := Record{Delivery: "d", Kind: Accepted, Routes: []RouteOutcome{
		{Route: "a", Outcome: Filtered},
		{Route: "b", Outcome: Queued, MessageID: "m1", Delivery: "d/0", Turn: "t0"},
		{Route: "b", Outcome: Queued, MessageID: "m2", Delivery: "d/1", Turn: "t1"},
	}}
	tests := []struct {
		delivery, route string
		u               RouteOutcome
		want            int // index updated, -1 none
	}{
		{"d/1", "b", RouteOutcome{MessageID: "m2", Outcome: Delivered, Reply: "r"}, 2},
		{"d/0", "b", RouteOutcome{Outcome: Dead}, 1},
		{"d", "c", RouteOutcome{Outcome: Dead}, -1},
		{"d", "b", RouteOutcome{MessageID: "m9", Outcome: Dead}, -1},
	}
	for _, tt := range tests {
		rr := r
		rr.Routes = append([]RouteOutcome(nil), r.Routes...)
		ok := rr.Update(tt.delivery, tt.route, tt.u)
		if ok != (tt.want >= 0) {
			t.Errorf("%+v: matched %v", tt, ok)
			continue
		}
		if ok && (rr.Routes[tt.want].Outcome != tt.u.Outcome || rr.Routes[tt.want].Turn == "") {
			t.Errorf("%+v: route %d = %+v (an update keeps what it does not set)", tt, tt.want, rr.Routes[tt.want])
		}
	}
	if ds := r.Deliveries(); len(ds) != 3 || ds[0] != "d" {
		t.Fatalf("deliveries %v", ds)
	}
}

func TestQueryMatches(t *testing.T) {
	acc := Record{Source: "gh", Kind: Accepted, Routes: []RouteOutcome{{Route: "a", Outcome: Filtered}, {Route: "b", Outcome: Queued}}}
	rej := Record{Source: "gh", Kind: Rejected}
	tests := []struct {
		q    Query
		r    Record
		want bool
	}{
		{Query{}, acc, true},
		{Query{Source: "x"}, acc, false},
		{Query{Route: "a", Outcome: Queued}, acc, false},
		{Query{Route: "b", Outcome: Queued}, acc, true},
		{Query{Outcome: Rejected}, rej, true},
		{Query{Outcome: Rejected}, acc, false},
		{Query{Outcome: Accepted}, acc, true},
		{Query{Route: "a"}, rej, false},
	}
	for _, tt := range tests {
		if got := tt.q.Matches(&tt.r); got != tt.want {
			t.Errorf("%+v on %s: %v", tt.q, tt.r.Kind, got)
		}
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	r := Record{ID: "x", Delivery: "d", Kind: Accepted, Body: "{\"a\":\"\\u00e9\x00\"}\n", Headers: map[string]string{"a": "b"},
		Routes: []RouteOutcome{{Route: "r", Outcome: Queued, QueuedAt: time.Unix(5, 6).UTC()}}}
	b, err := Encode(&r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil || got.Body != r.Body || got.Headers["a"] != "b" || !got.Routes[0].QueuedAt.Equal(r.Routes[0].QueuedAt) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, bad := range [][]byte{nil, {9, 1, '{'}, {1, 200}} {
		if _, err := Decode(bad); err == nil {
			t.Errorf("Decode(%q) did not fail", bad)
		}
	}
}
