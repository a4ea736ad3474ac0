// Package history: what became of every request: the record types and their encoding.
//
// Every request that reached a source path becomes one Record: an accepted
// event with its routes' outcomes, a duplicate of an earlier delivery, or a
// rejected request (never with its body). Storage backends keep them with
// retention by age and count; ingest writes them, dispatch updates the
// outcomes of the routes, and the admin API reads them.
package history

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Outcomes of one route of an accepted event.
const (
	Filtered      = "filtered"       // the route's filter was false
	FilterError   = "filter_error"   // the filter failed at runtime
	TemplateError = "template_error" // the template failed at runtime
	Queued        = "queued"         // stored, waiting for delivery
	Superseded    = "superseded"     // a later event of the conversation replaced it
	Limited       = "limited"        // dropped by the route's turn limit
	Delivered     = "delivered"      // the agent got the turn
	Partial       = "partial"        // delivered; the answer was cut off after it began
	Dead          = "dead"           // moved to the dead letters
)

// Statuses of a record.
const (
	Accepted  = "accepted"
	Duplicate = "duplicate"
	Rejected  = "rejected"
)

// Record is one request that reached a source path.
type Record struct {
	ID         string            `json:"id"` // time-ordered: a later request has a greater id
	Delivery   string            `json:"delivery"`
	Source     string            `json:"source"`
	Event      string            `json:"event,omitempty"`
	ReceivedAt time.Time         `json:"received_at"`
	Remote     string            `json:"remote,omitempty"`
	Kind       string            `json:"kind"`             // Accepted, Duplicate or Rejected
	Status     int               `json:"status,omitempty"` // the HTTP status answered
	Reason     string            `json:"reason,omitempty"` // why it was rejected
	Headers    map[string]string `json:"headers,omitempty"`
	// Body is the raw body of an accepted event; never kept for others.
	Body        string         `json:"body,omitempty"`
	DuplicateOf string         `json:"duplicate_of,omitempty"` // the original's record id
	Routes      []RouteOutcome `json:"routes,omitempty"`
}

// RouteOutcome is what became of an accepted event on one route.
type RouteOutcome struct {
	Route   string `json:"route"`
	Outcome string `json:"outcome"`
	Error   string `json:"error,omitempty"` // of a filter or template
	// Delivery is the event's own delivery id when the request held
	// several events; "" when it is the record's.
	Delivery     string    `json:"delivery,omitempty"`
	Conversation string    `json:"conversation,omitempty"`
	MessageID    string    `json:"message_id,omitempty"`
	Turn         string    `json:"turn,omitempty"` // the rendered turn text
	Reply        string    `json:"reply,omitempty"`
	ChatID       string    `json:"chat_id,omitempty"`
	Attempts     int       `json:"attempts,omitempty"`
	LastError    string    `json:"last_error,omitempty"`
	QueuedAt     time.Time `json:"queued_at,omitzero"`
	SentAt       time.Time `json:"sent_at,omitzero"`
	DoneAt       time.Time `json:"done_at,omitzero"`
	// Replies are the posts of the agent's answer to the route's reply
	// sinks, one per sink and target.
	Replies []ReplyOutcome `json:"replies,omitempty"`
}

// ReplyOutcome is what became of one reply post.
type ReplyOutcome struct {
	ID       string    `json:"id"`               // the post's id
	Sink     string    `json:"sink"`             // the sink's type
	Target   string    `json:"target,omitempty"` // github_comment: "owner/name#12" or "owner/name@sha"
	Outcome  string    `json:"outcome"`          // queued, sent, retry or dead
	Attempts int       `json:"attempts,omitempty"`
	Error    string    `json:"error,omitempty"`
	At       time.Time `json:"at,omitzero"`
}

// Reply outcomes.
const (
	ReplyQueued = "queued"
	ReplySent   = "sent"
	ReplyRetry  = "retry"
	ReplyDead   = "dead"
)

// Merge applies an update from dispatch: its outcome, and every field it
// sets.
func (r *RouteOutcome) Merge(u RouteOutcome) {
	if u.Outcome != "" {
		r.Outcome = u.Outcome
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&r.Error, u.Error)
	set(&r.Turn, u.Turn)
	set(&r.Reply, u.Reply)
	set(&r.ChatID, u.ChatID)
	set(&r.LastError, u.LastError)
	if u.Attempts > 0 {
		r.Attempts = u.Attempts
	}
	for _, t := range []struct{ dst, v *time.Time }{{&r.SentAt, &u.SentAt}, {&r.DoneAt, &u.DoneAt}} {
		if !t.v.IsZero() {
			*t.dst = *t.v
		}
	}
	for _, x := range u.Replies {
		i := slices.IndexFunc(r.Replies, func(y ReplyOutcome) bool { return y.ID == x.ID })
		if i < 0 {
			r.Replies = append(r.Replies, x)
			continue
		}
		r.Replies[i] = x
	}
}

// Update applies u to the route outcome it names (by message id, else by
// route and delivery) and reports whether one matched.
func (r *Record) Update(delivery, route string, u RouteOutcome) bool {
	for i := range r.Routes {
		ro := &r.Routes[i]
		if ro.Route != route {
			continue
		}
		if u.MessageID != "" && ro.MessageID != "" {
			if ro.MessageID != u.MessageID {
				continue
			}
		} else if d := ro.Delivery; d != "" && d != delivery {
			continue
		}
		ro.Merge(u)
		return true
	}
	return false
}

// Deliveries are the delivery ids the record is found by: its own, and
// its events' when the request held several.
func (r *Record) Deliveries() []string {
	ds := []string{r.Delivery}
	for _, ro := range r.Routes {
		if ro.Delivery != "" && ro.Delivery != r.Delivery && !contains(ds, ro.Delivery) {
			ds = append(ds, ro.Delivery)
		}
	}
	return ds
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

// Summary is the record without its body and headers, as listed.
func (r Record) Summary() Record {
	r.Body, r.Headers = "", nil
	rs := make([]RouteOutcome, len(r.Routes))
	for i, ro := range r.Routes {
		ro.Turn, ro.Reply = "", ""
		rs[i] = ro
	}
	r.Routes = rs
	return r
}

// Matches reports whether the record passes q's filters.
func (q Query) Matches(r *Record) bool {
	if q.Source != "" && r.Source != q.Source {
		return false
	}
	if q.Route == "" && q.Outcome == "" {
		return true
	}
	if q.Outcome == Duplicate || q.Outcome == Rejected || q.Outcome == Accepted {
		return r.Kind == q.Outcome && q.Route == ""
	}
	for _, ro := range r.Routes {
		if (q.Route == "" || ro.Route == q.Route) && (q.Outcome == "" || ro.Outcome == q.Outcome) {
			return true
		}
	}
	return false
}

// Query selects records, newest first.
type Query struct {
	Source  string
	Route   string
	Outcome string // a route outcome, or a record's kind (Accepted, Duplicate, Rejected)
	Limit   int    // DefaultLimit when <= 0, at most MaxLimit
	Before  string // only records with an id less than this one
}

// Limits of a Query.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// PageLimit is q's limit, resolved.
func (q Query) PageLimit() int {
	switch {
	case q.Limit <= 0:
		return DefaultLimit
	case q.Limit > MaxLimit:
		return MaxLimit
	}
	return q.Limit
}

// Page is one page of a listing; Next, when set, is the Before of the
// next page.
type Page struct {
	Events []Record `json:"events"`
	Next   string   `json:"next,omitempty"`
}

// ErrNotFound is returned for an id or delivery with no record.
var ErrNotFound = errors.New("history: no such event")

// ErrUnsupported is returned by a backend that keeps no history.
var ErrUnsupported = errors.New("history needs the bbolt backend for now")

// NewID returns a record id for a request received at t: 16 hex digits of
// nanoseconds, then 8 random ones, so ids sort by time as strings.
func NewID(t time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%016x%08x", uint64(t.UnixNano()), binary.BigEndian.Uint32(b[:]))
}

// IDTime is the time an id was made for; false for a malformed id.
func IDTime(id string) (time.Time, bool) {
	if len(id) < 16 {
		return time.Time{}, false
	}
	n, err := strconv.ParseUint(id[:16], 16, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, int64(n)), true
}

// encodingVersion starts every stored record.
const encodingVersion = 1

// Encode is the stored form of a record: a version byte, the uvarint
// length of the record in JSON without its body, that JSON, then the raw
// body. The body, the largest part, is neither escaped nor parsed.
func Encode(r *Record) ([]byte, error) {
	body := r.Body
	meta := *r
	meta.Body = ""
	js, err := json.Marshal(&meta)
	if err != nil {
		return nil, fmt.Errorf("history: encode %s: %w", r.ID, err)
	}
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(js)+len(body))
	b = append(b, encodingVersion)
	b = binary.AppendUvarint(b, uint64(len(js)))
	b = append(b, js...)
	return append(b, body...), nil
}

// UpdateEncoded is Update on a record as Encode stored it: b is the
// stored record, out the record to store instead; ok is false when no
// route outcome matched, or the record is not an accepted event's. Only
// the record's routes are decoded and encoded again: dispatch updates
// every message's outcome, and the rest of a record (headers, times, the
// body) is most of it.
//
// It relies on how Encode writes a record, json.Marshal's struct order:
// "kind" comes after string members only, so its first occurrence is the
// record's own (a quote inside a string is always escaped), and "routes"
// comes last. A record of another shape is decoded in full.
func UpdateEncoded(b []byte, delivery, route string, u RouteOutcome) (out []byte, ok bool, err error) {
	if len(b) < 2 || b[0] != encodingVersion {
		return nil, false, errors.New("history: decode: not a record of this version")
	}
	n, w := binary.Uvarint(b[1:])
	if w <= 0 || n > uint64(len(b)-1-w) {
		return nil, false, errors.New("history: decode: record cut short")
	}
	js, body := b[1+w:1+w+int(n)], b[1+w+int(n):]
	routes, at, fast := routesOf(js)
	if !fast {
		r, err := Decode(b)
		if err != nil || r.Kind != Accepted || !r.Update(delivery, route, u) {
			return nil, false, err
		}
		out, err := Encode(&r)
		return out, err == nil, err
	}
	r := Record{Routes: routes}
	if !r.Update(delivery, route, u) {
		return nil, false, nil
	}
	rs, err := json.Marshal(r.Routes)
	if err != nil {
		return nil, false, fmt.Errorf("history: encode routes: %w", err)
	}
	size := at + len(routesKey) + len(rs) + 1
	out = make([]byte, 0, 1+binary.MaxVarintLen64+size+len(body))
	out = append(out, encodingVersion)
	out = binary.AppendUvarint(out, uint64(size))
	out = append(out, js[:at]...)
	out = append(out, routesKey...)
	out = append(out, rs...)
	out = append(out, '}')
	return append(out, body...), true, nil
}

var (
	kindAccepted = []byte(`"kind":"` + Accepted + `"`)
	routesKey    = []byte(`,"routes":`)
)

// routesOf finds an accepted record's routes in its JSON: decoded, and
// where their member starts. fast is false when the JSON is not of the
// shape Encode writes for an accepted record with routes.
func routesOf(js []byte) (routes []RouteOutcome, at int, fast bool) {
	k := bytes.Index(js, []byte(`"kind":`))
	if k < 0 || !bytes.HasPrefix(js[k:], kindAccepted) {
		return nil, 0, false
	}
	at = bytes.LastIndex(js, routesKey)
	if at < k || !bytes.HasSuffix(js, []byte("]}")) {
		return nil, 0, false
	}
	if json.Unmarshal(js[at+len(routesKey):len(js)-1], &routes) != nil {
		return nil, 0, false
	}
	return routes, at, true
}

// Decode reads a record Encode wrote.
func Decode(b []byte) (Record, error) {
	var r Record
	if len(b) < 2 || b[0] != encodingVersion {
		return r, errors.New("history: decode: not a record of this version")
	}
	n, w := binary.Uvarint(b[1:])
	if w <= 0 || n > uint64(len(b)-1-w) {
		return r, errors.New("history: decode: record cut short")
	}
	js := b[1+w : 1+w+int(n)]
	if err := json.Unmarshal(js, &r); err != nil {
		return r, fmt.Errorf("history: decode: %w", err)
	}
	r.Body = string(b[1+w+int(n):])
	return r, nil
}

// Trial is one event rendered by a dry run: what the route would have
// done with it, nothing sent or stored.
type Trial struct {
	Event        string `json:"event"` // the record's id
	Delivery     string `json:"delivery"`
	Matched      bool   `json:"matched"`
	Conversation string `json:"conversation,omitempty"`
	Turn         string `json:"turn,omitempty"` // redacted, fenced and cut to the budget, as it would be sent
	Error        string `json:"error,omitempty"`
}
