package history

import (
	"encoding/binary"
	"reflect"
	"testing"
	"time"
)

// UpdateEncoded stores what decoding, Update and encoding store, for the
// records Encode writes and for shapes meant to mislead its shortcut.
func TestUpdateEncodedMatchesFullUpdate(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 30, 1, 2, 3, 4, time.UTC)
	base := func() Record {
		return Record{
			ID: NewID(at), Delivery: "d1", Source: "github", Event: "push", ReceivedAt: at, Kind: Accepted, Status: 202,
			Headers: map[string]string{"X-Github-Event": "push"},
			Body:    `{"ref":"refs/heads/main","note":"\"kind\":\"accepted\" ,\"routes\":[]"}`,
			Routes: []RouteOutcome{
				{Route: "ci", Outcome: Queued, MessageID: "m1", Conversation: "octo/repo", QueuedAt: at},
				{Route: "other", Outcome: Queued, MessageID: "m2"},
			},
		}
	}
	delivered := RouteOutcome{MessageID: "m1", Outcome: Delivered, Turn: "turn \"text\" <b>", Reply: "ok ✓", ChatID: "chat_1",
		Attempts: 1, SentAt: at.Add(time.Second), DoneAt: at.Add(2 * time.Second)}
	tests := []struct {
		name   string
		rec    func() Record
		route  string
		update RouteOutcome
		fast   bool // the routes alone are decoded
	}{
		{name: "delivered", rec: base, route: "ci", update: delivered, fast: true},
		{name: "second route", rec: base, route: "other", update: RouteOutcome{MessageID: "m2", Outcome: Dead, LastError: "403"}, fast: true},
		{name: "no route matches", rec: base, route: "nope", update: delivered, fast: true},
		{name: "headers that look like members", rec: func() Record {
			r := base()
			r.Headers = map[string]string{"Kind": `"kind":"duplicate"`, "Routes": `,"routes":[{}]}`, "X": `]}`}
			return r
		}, route: "ci", update: delivered, fast: true},
		{name: "duplicate", rec: func() Record {
			r := base()
			r.Kind, r.DuplicateOf = Duplicate, "orig"
			return r
		}, route: "ci", update: delivered},
		{name: "rejected", rec: func() Record {
			r := base()
			r.Kind, r.Reason, r.Routes = Rejected, "bad signature", nil
			return r
		}, route: "ci", update: delivered},
		{name: "no routes", rec: func() Record {
			r := base()
			r.Routes = nil
			return r
		}, route: "ci", update: delivered},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.rec()
			b, err := Encode(&r)
			if err != nil {
				t.Fatal(err)
			}
			n, w := binary.Uvarint(b[1:])
			if _, _, fast := routesOf(b[1+w : 1+w+int(n)]); fast != tc.fast {
				t.Errorf("shortcut taken = %v, want %v", fast, tc.fast)
			}

			wantOK := r.Kind == Accepted && r.Update("d1", tc.route, tc.update)
			got, ok, err := UpdateEncoded(b, "d1", tc.route, tc.update)
			if err != nil || ok != wantOK {
				t.Fatalf("UpdateEncoded: ok %v, err %v; want ok %v", ok, err, wantOK)
			}
			if !ok {
				return
			}
			want, err := Encode(&r)
			if err != nil {
				t.Fatal(err)
			}
			gr, err := Decode(got)
			if err != nil {
				t.Fatal(err)
			}
			wr, _ := Decode(want)
			if !reflect.DeepEqual(gr, wr) {
				t.Errorf("updated record\n%+v\nwant\n%+v", gr, wr)
			}
			if string(got) != string(want) {
				t.Errorf("stored bytes differ:\n%s\nwant\n%s", got, want)
			}
		})
	}
}
