// Package fake is a faithful in-process Operator API for tests, --dev and
// mock-operator.
//
// It answers like the vendor's documentation: Bearer keys (ck_…), chat ids
// assigned on the first message and 404 for ids it does not know, JSON with
// x-response-format: json and an SSE stream otherwise, the error schema
// {"code","transient","message","data"}, and 409 when an Idempotency-Key is
// used again. Every /api/chat request is recorded, with overlapping
// requests for one chat counted, so tests can assert ordering.
//
// Faults are programmable from Go (SetDown, SetLatency, SetKeys, FailNext,
// FailRate, ForgetChat, Reset) and, for `relayd mock-operator`, over HTTP:
//
//	GET    /_fake/requests   recorded /api/chat requests (Authorization redacted)
//	GET    /_fake/chats      chat id -> user messages in order
//	GET    /_fake/stats      {"requests","chats","overlaps","down"}
//	POST   /_fake/faults     {"next":N,"fault":{…}} queues N forced answers;
//	                         {"rate":P,"faults":[{…},…]} fails a fraction P at random
//	DELETE /_fake/faults     clears both
//	POST   /_fake/down       {"down":true,"mode":"unavailable"|"drop"}
//	POST   /_fake/latency    {"min":"50ms","max":"2s"}
//	POST   /_fake/turn       {"wait":"2s","steps":5,"every":"3s","cut_after":0}; see Turn
//	POST   /_fake/keys       {"keys":["ck_…"]}; an empty list accepts any ck_ key
//	POST   /_fake/forget     {"chatId":"chat_…"}
//	POST   /_fake/reset      back to the state New returned
//
// A fault is {"status":429,"code":"rate_limited","transient":true,
// "retry_after":"2","body":"raw override","no_body":false,"drop":false,
// "process":false,"turn":{…}}; see Fault. The control surface has no
// authentication: serve it on loopback only.
//
// Long turns: the agent can work for minutes on one message, and the API
// has taken the message as soon as it starts. A Turn (SetTurn for every
// answer, or Fault.Turn for one) models that: silence after taking the
// message and before the status line (Wait), progress events at a pace
// (Steps, Every) while the agent works, and a connection cut in the middle
// of the answer (CutAfter). A JSON answer (x-response-format: json) shows
// nothing until the turn ends, so it is silent for all of Wait+Steps×Every.
package fake

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	randv2 "math/rand/v2"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/relayd/relayd/internal/xtime"
)

const (
	// MaxBodyBytes is the largest /api/chat body taken; larger gets 413.
	MaxBodyBytes = 4 << 20
	// idempotencyCapacity bounds the remembered Idempotency-Keys; the
	// oldest are forgotten first.
	idempotencyCapacity = 10000
)

// Options configures a Server.
type Options struct {
	// Keys are the accepted API keys. Empty accepts any key starting "ck_".
	Keys []string
	// Logger gets one info line per reply (never the key). nil discards.
	Logger *slog.Logger
	// Reply computes the agent's answer; nil uses a short acknowledgement.
	Reply func(chatID, text string) string
	// MaxRequests bounds the recorded requests (oldest dropped first);
	// 0 keeps all, which tests want and a long-running server does not.
	MaxRequests int
	// Turn shapes every answer (see Turn); the zero Turn answers at once.
	Turn Turn
}

// Request is one recorded /api/chat request.
type Request struct {
	Seq            int         `json:"seq"` // arrival order, from 1
	Method         string      `json:"method"`
	ChatID         string      `json:"chatId,omitempty"`         // the id the client sent
	AssignedChatID string      `json:"assignedChatId,omitempty"` // the chat the message landed in; "" if not taken
	Text           string      `json:"text"`
	Header         http.Header `json:"header"`
	IdempotencyKey string      `json:"idempotencyKey,omitempty"`
	Start          time.Time   `json:"start"`
	End            time.Time   `json:"end"`                  // zero while in flight
	Status         int         `json:"status"`               // 0: no answer (dropped or client gone)
	Code           string      `json:"code,omitempty"`       // error code answered
	Overlapped     bool        `json:"overlapped,omitempty"` // another request for ChatID was in flight
}

// DownMode is how a down server fails.
type DownMode int

const (
	// DownUnavailable answers 503 {"code":"unavailable","transient":true}
	// with Retry-After: 1.
	DownUnavailable DownMode = iota
	// DownDrop closes the connection without an answer.
	DownDrop
)

// Fault is a forced answer to one /api/chat request.
type Fault struct {
	// Status is the answer's status; 0 means 500 (or nothing, with Drop).
	Status int `json:"status,omitempty"`
	// Code is the error body's code; "" uses the status's usual code.
	Code string `json:"code,omitempty"`
	// Transient is the error body's flag; nil uses the status's usual value
	// (true for 429 and 5xx). Use Body for a body without the flag.
	Transient *bool `json:"transient,omitempty"`
	// RetryAfter is sent verbatim as Retry-After when not empty.
	RetryAfter string `json:"retry_after,omitempty"`
	// Body replaces the whole answer body.
	Body string `json:"body,omitempty"`
	// NoBody sends no body at all (a 202 Accepted, say).
	NoBody bool `json:"no_body,omitempty"`
	// Drop closes the connection without an answer.
	Drop bool `json:"drop,omitempty"`
	// Process takes the message (stores it, assigns the chat, remembers the
	// idempotency key) before giving the forced answer: the server crashed
	// or failed after accepting. A 2xx fault always processes.
	Process bool `json:"process,omitempty"`
	// Turn, when set, takes the message and answers it as usual, shaped
	// by Turn instead of the server's own (SetTurn); the fields above are
	// then ignored.
	Turn *Turn `json:"turn,omitempty"`
}

// Turn shapes how long the agent works on a message and how its answer
// arrives. The zero Turn answers at once.
type Turn struct {
	// Wait is silence after the message was taken, before the status line.
	Wait time.Duration
	// Steps progress events (the agent's tool calls) come before the reply
	// text, each after a pause of Every: a stream that is slow but alive.
	Steps int
	Every time.Duration
	// CutAfter closes the connection after that many events of a stream
	// (counting the first, which carries the chat id), or halfway through
	// a JSON answer when > 0. 0 never cuts.
	CutAfter int
}

// turnJSON is Turn on the control surface, with durations as "3s".
type turnJSON struct {
	Wait     string `json:"wait,omitempty"`
	Steps    int    `json:"steps,omitempty"`
	Every    string `json:"every,omitempty"`
	CutAfter int    `json:"cut_after,omitempty"`
}

// MarshalJSON writes durations as strings such as "3s".
func (t Turn) MarshalJSON() ([]byte, error) {
	j := turnJSON{Steps: t.Steps, CutAfter: t.CutAfter}
	if t.Wait > 0 {
		j.Wait = t.Wait.String()
	}
	if t.Every > 0 {
		j.Every = t.Every.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads durations as strings such as "3s".
func (t *Turn) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var j turnJSON
	if err := dec.Decode(&j); err != nil {
		return err
	}
	wait, err1 := parseDur(j.Wait)
	every, err2 := parseDur(j.Every)
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	if wait < 0 || every < 0 || j.Steps < 0 || j.CutAfter < 0 {
		return errors.New("turn: durations and counts must not be negative")
	}
	*t = Turn{Wait: wait, Steps: j.Steps, Every: every, CutAfter: j.CutAfter}
	return nil
}

// Server is the fake Operator API. It implements http.Handler and is safe
// for concurrent use.
type Server struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	keys      []string
	chats     map[string]*conversation
	reqs      []*Request
	seq       int
	inflight  map[string]int
	overlaps  int
	idem      map[string]idemEntry
	idemOrder []string // FIFO of idem's keys, for eviction
	queued    []Fault
	failP     float64
	failWith  []Fault
	down      bool
	downMode  DownMode
	latMin    time.Duration
	latMax    time.Duration
	turn      Turn
}

type conversation struct {
	user    []string
	replies []string
}

type idemEntry struct {
	sum    [32]byte
	chatID string
}

var _ http.Handler = (*Server)(nil)

// New returns a Server with no chats and no faults.
func New(o Options) *Server {
	s := &Server{opts: o, log: o.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.resetLocked()
	return s
}

func (s *Server) resetLocked() {
	s.keys = append([]string(nil), s.opts.Keys...)
	s.chats = map[string]*conversation{}
	s.reqs = nil
	s.seq = 0
	s.inflight = map[string]int{}
	s.overlaps = 0
	s.idem = map[string]idemEntry{}
	s.idemOrder = nil
	s.queued = nil
	s.failP, s.failWith = 0, nil
	s.down, s.downMode = false, DownUnavailable
	s.latMin, s.latMax = 0, 0
	s.turn = s.opts.Turn
}

// ServeHTTP routes /api/chat, /api/cli/health and the /_fake/ control surface.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/api/chat":
		s.handleChat(w, r)
	case r.URL.Path == "/api/cli/health":
		s.handleHealth(w, r)
	case strings.HasPrefix(r.URL.Path, "/_fake/"):
		s.handleControl(w, r)
	default:
		writeError(w, http.StatusNotFound, "not_found", false, "no such endpoint", nil)
	}
}

// ---- programmable faults and state ----

// SetDown makes every API request fail (see SetDownMode) until SetDown(false).
func (s *Server) SetDown(down bool) { s.mu.Lock(); s.down = down; s.mu.Unlock() }

// SetDownMode chooses how a down server fails; the default is DownUnavailable.
func (s *Server) SetDownMode(m DownMode) { s.mu.Lock(); s.downMode = m; s.mu.Unlock() }

// SetLatency delays each /api/chat answer by a random duration in
// [min, max]. A client that gives up during the delay gets nothing and its
// message is not taken.
func (s *Server) SetLatency(minD, maxD time.Duration) {
	if maxD < minD {
		maxD = minD
	}
	s.mu.Lock()
	s.latMin, s.latMax = minD, maxD
	s.mu.Unlock()
}

// SetTurn shapes every answer that no fault overrides, until Reset
// returns to Options.Turn; Turn{} answers at once.
func (s *Server) SetTurn(t Turn) { s.mu.Lock(); s.turn = t; s.mu.Unlock() }

// SetKeys replaces the accepted keys (a rotated or revoked key). Empty
// accepts any key starting "ck_".
func (s *Server) SetKeys(keys []string) {
	s.mu.Lock()
	s.keys = append([]string(nil), keys...)
	s.mu.Unlock()
}

// FailNext forces the next n /api/chat requests to be answered with f,
// after any faults already queued.
func (s *Server) FailNext(n int, f Fault) {
	s.mu.Lock()
	for range n {
		s.queued = append(s.queued, f)
	}
	s.mu.Unlock()
}

// FailRate makes a fraction p of /api/chat requests fail with one of faults,
// picked at random (503 unavailable when faults is empty). p <= 0 stops it.
func (s *Server) FailRate(p float64, faults []Fault) {
	s.mu.Lock()
	s.failP, s.failWith = p, append([]Fault(nil), faults...)
	s.mu.Unlock()
}

// ClearFaults drops queued faults and the random failure rate.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	s.queued, s.failP, s.failWith = nil, 0, nil
	s.mu.Unlock()
}

// ForgetChat deletes a chat: later messages for it get 404.
func (s *Server) ForgetChat(id string) { s.mu.Lock(); delete(s.chats, id); s.mu.Unlock() }

// Reset returns to the state New gave: no chats, records, faults or latency,
// and the keys and turn from Options.
func (s *Server) Reset() { s.mu.Lock(); s.resetLocked(); s.mu.Unlock() }

// Requests returns a copy of the recorded /api/chat requests in arrival
// order, including ones still in flight (End is zero).
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.reqs))
	for i, r := range s.reqs {
		out[i] = *r
		out[i].Header = r.Header.Clone()
	}
	return out
}

// Chats returns each chat's user messages in the order they were taken.
func (s *Server) Chats() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]string, len(s.chats))
	for id, c := range s.chats {
		out[id] = append([]string(nil), c.user...)
	}
	return out
}

// Overlaps counts requests that arrived while another request for the same
// chat id was still in flight: what per-conversation ordering forbids.
// Concurrent requests without an id (new conversations) never overlap.
func (s *Server) Overlaps() int { s.mu.Lock(); defer s.mu.Unlock(); return s.overlaps }

// ---- /api/chat ----

// answer is what processing a valid request decided.
type answer struct {
	status    int
	code      string
	transient bool
	message   string
	data      map[string]any
	header    map[string]string
	chatID    string
	reply     string
	newChat   bool
}

func (a answer) ok() bool { return a.status >= 200 && a.status <= 299 }

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	body, tooBig, readErr := readBody(r)
	var (
		parsed   parsedChat
		parseErr error
	)
	if !tooBig { // a cut body cannot parse; do not spend time finding out
		parsed, parseErr = parseChat(body)
	}
	rec := &Request{
		Method:         r.Method,
		ChatID:         parsed.id,
		Text:           parsed.text,
		Header:         r.Header.Clone(),
		IdempotencyKey: r.Header.Get("Idempotency-Key"),
	}
	trackID := ""
	if r.Method == http.MethodPost {
		trackID = parsed.id
	}
	s.begin(rec, trackID)
	defer s.end(rec, trackID, sw)

	if !s.sleep(r.Context()) {
		return // the client gave up; nothing was taken
	}
	if s.isDown(sw) {
		return
	}
	if r.Method != http.MethodPost {
		sw.Header().Set("Allow", http.MethodPost)
		s.fail(sw, rec, answer{status: http.StatusMethodNotAllowed, code: "method_not_allowed", message: "use POST"})
		return
	}
	fault, forced := s.nextFault()
	if forced && fault.Turn == nil && !fault.Process && !(fault.Status >= 200 && fault.Status <= 299) {
		s.writeFault(sw, rec, fault)
		return
	}

	a := s.process(r, body, tooBig, readErr, parsed, parseErr)
	if !a.ok() {
		s.fail(sw, rec, a)
		return
	}
	s.mu.Lock()
	rec.AssignedChatID = a.chatID
	s.mu.Unlock()
	s.log.Info("operator reply", "chat_id", a.chatID, "new_chat", a.newChat,
		"prompt", clip(parsed.text, 300), "reply", a.reply)
	if forced && fault.Turn == nil {
		s.writeFault(sw, rec, fault)
		return
	}
	s.mu.Lock()
	turn := s.turn
	s.mu.Unlock()
	if forced {
		turn = *fault.Turn
	}
	// From here the message is the agent's: a client that leaves only
	// stops the answer, not the work.
	ctx := r.Context()
	if xtime.Sleep(ctx, turn.Wait) != nil {
		return
	}
	if strings.EqualFold(r.Header.Get("x-response-format"), "json") {
		if xtime.Sleep(ctx, time.Duration(turn.Steps)*turn.Every) != nil {
			return
		}
		b, _ := json.Marshal(map[string]string{"chatId": a.chatID, "text": a.reply})
		if turn.CutAfter > 0 {
			sw.Header().Set("Content-Type", "application/json")
			sw.WriteHeader(a.status)
			_, _ = sw.Write(b[:len(b)/2])
			_ = http.NewResponseController(sw).Flush()
			s.cut(sw, rec)
			return
		}
		writeJSON(sw, a.status, map[string]string{"chatId": a.chatID, "text": a.reply})
		return
	}
	if !writeSSE(ctx, sw, a.chatID, a.reply, turn) {
		s.cut(sw, rec)
	}
}

// cut drops the connection in the middle of an answer.
func (s *Server) cut(w *statusWriter, rec *Request) {
	s.log.Info("operator turn: answer cut off", "chat_id", rec.AssignedChatID)
	w.drop, w.code = true, "cut"
}

// process validates and, when valid, takes the message. It holds the lock
// only around state changes, and calls Reply outside it.
func (s *Server) process(r *http.Request, body []byte, tooBig bool, readErr error, p parsedChat, parseErr error) answer {
	if !s.authorized(r) {
		return answer{status: http.StatusUnauthorized, code: "unauthorized", message: "invalid API key"}
	}
	switch {
	case tooBig:
		return answer{status: http.StatusRequestEntityTooLarge, code: "payload_too_large",
			message: fmt.Sprintf("body larger than %d bytes", MaxBodyBytes)}
	case readErr != nil:
		return answer{status: http.StatusBadRequest, code: "bad_request", message: "could not read body"}
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return answer{status: http.StatusBadRequest, code: "bad_request", message: "Content-Type must be application/json"}
	}
	if parseErr != nil {
		return answer{status: http.StatusBadRequest, code: "bad_request", message: parseErr.Error()}
	}

	key := r.Header.Get("Idempotency-Key")
	sum := sha256.Sum256(body)
	s.mu.Lock()
	var conv *conversation
	chatID, newChat := p.id, p.id == ""
	if !newChat {
		if conv = s.chats[chatID]; conv == nil {
			s.mu.Unlock()
			return answer{status: http.StatusNotFound, code: "not_found", message: "chat not found"}
		}
	}
	if key != "" {
		if prev, ok := s.idem[key]; ok {
			s.mu.Unlock()
			return answer{status: http.StatusConflict, code: "idempotency_conflict",
				message: "idempotency key already used",
				data:    map[string]any{"chatId": prev.chatID, "sameBody": prev.sum == sum}}
		}
	}
	if newChat {
		chatID = newID("chat_")
		conv = &conversation{}
		s.chats[chatID] = conv
	}
	conv.user = append(conv.user, p.text)
	n := len(conv.user)
	if key != "" {
		s.rememberKeyLocked(key, idemEntry{sum: sum, chatID: chatID})
	}
	s.mu.Unlock()

	reply := defaultReply(n)
	if s.opts.Reply != nil {
		reply = s.opts.Reply(chatID, p.text)
	}
	s.mu.Lock()
	if c := s.chats[chatID]; c != nil {
		c.replies = append(c.replies, reply)
	}
	s.mu.Unlock()
	return answer{status: http.StatusOK, chatID: chatID, reply: reply, newChat: newChat}
}

func (s *Server) rememberKeyLocked(key string, e idemEntry) {
	s.idem[key] = e
	s.idemOrder = append(s.idemOrder, key)
	if len(s.idemOrder) > idempotencyCapacity {
		old := s.idemOrder[0]
		s.idemOrder = s.idemOrder[1:]
		delete(s.idem, old)
	}
}

func (s *Server) fail(w *statusWriter, rec *Request, a answer) {
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	s.log.Info("operator error", "status", a.status, "code", a.code, "chat_id", rec.ChatID)
	writeError(w, a.status, a.code, a.transient, a.message, a.data)
	w.code = a.code
}

func (s *Server) writeFault(w *statusWriter, rec *Request, f Fault) {
	if f.Drop {
		s.log.Info("operator fault: connection dropped", "chat_id", rec.ChatID)
		w.drop = true
		return
	}
	status := f.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	s.log.Info("operator fault", "status", status, "chat_id", rec.ChatID)
	switch {
	case f.NoBody:
		w.WriteHeader(status)
	case f.Body != "":
		ct := "text/plain; charset=utf-8"
		if json.Valid([]byte(f.Body)) {
			ct = "application/json"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, f.Body)
	case status >= 200 && status <= 299:
		// A forced success still carries the real chat id, as the API would.
		writeJSON(w, status, map[string]string{"chatId": rec.AssignedChatID, "text": "accepted"})
	default:
		code := f.Code
		if code == "" {
			code = defaultCode(status)
		}
		transient := status == http.StatusTooManyRequests || status >= 500
		if f.Transient != nil {
			transient = *f.Transient
		}
		writeError(w, status, code, transient, http.StatusText(status)+" (injected)", nil)
		w.code = code
	}
}

func (s *Server) nextFault() (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queued) > 0 {
		f := s.queued[0]
		s.queued = s.queued[1:]
		return f, true
	}
	if s.failP > 0 && randv2.Float64() < s.failP {
		if len(s.failWith) == 0 {
			return Fault{Status: http.StatusServiceUnavailable, RetryAfter: "1"}, true
		}
		return s.failWith[randv2.IntN(len(s.failWith))], true
	}
	return Fault{}, false
}

// isDown answers for a down server and reports whether it did.
func (s *Server) isDown(w *statusWriter) bool {
	s.mu.Lock()
	down, mode := s.down, s.downMode
	s.mu.Unlock()
	if !down {
		return false
	}
	if mode == DownDrop {
		w.drop = true
		return true
	}
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, "unavailable", true, "service unavailable", nil)
	w.code = "unavailable"
	return true
}

// sleep waits the configured latency; false when the client went away.
func (s *Server) sleep(ctx context.Context) bool {
	s.mu.Lock()
	lo, hi := s.latMin, s.latMax
	s.mu.Unlock()
	d := lo
	if hi > lo {
		d += time.Duration(randv2.Int64N(int64(hi-lo) + 1))
	}
	return xtime.Sleep(ctx, d) == nil
}

func (s *Server) begin(rec *Request, trackID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	rec.Seq = s.seq
	rec.Start = time.Now()
	if trackID != "" {
		if s.inflight[trackID] > 0 {
			s.overlaps++
			rec.Overlapped = true
		}
		s.inflight[trackID]++
	}
	s.reqs = append(s.reqs, rec)
	if m := s.opts.MaxRequests; m > 0 && len(s.reqs) > m {
		s.reqs = append(s.reqs[:0:0], s.reqs[len(s.reqs)-m:]...)
	}
}

func (s *Server) end(rec *Request, trackID string, w *statusWriter) {
	s.mu.Lock()
	if trackID != "" {
		if s.inflight[trackID]--; s.inflight[trackID] <= 0 {
			delete(s.inflight, trackID)
		}
	}
	rec.End = time.Now()
	rec.Status = w.status
	rec.Code = w.code
	s.mu.Unlock()
	if w.drop {
		dropConn(w)
	}
}

func (s *Server) authorized(r *http.Request) bool {
	tok, ok := bearer(r)
	if !ok {
		return false
	}
	s.mu.Lock()
	keys := s.keys
	s.mu.Unlock()
	if len(keys) == 0 {
		return strings.HasPrefix(tok, "ck_") && len(tok) > len("ck_")
	}
	match := 0
	for _, k := range keys {
		match |= subtle.ConstantTimeCompare([]byte(tok), []byte(k))
	}
	return match == 1
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const p = "bearer "
	if len(h) <= len(p) || !strings.EqualFold(h[:len(p)], p) {
		return "", false
	}
	tok := strings.TrimSpace(h[len(p):])
	return tok, tok != ""
}

// ---- /api/cli/health ----

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	if s.isDown(sw) {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", false, "use GET", nil)
		return
	}
	if !s.authorized(r) {
		writeError(w, http.StatusUnauthorized, "unauthorized", false, "invalid API key", nil)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"authenticated": true, "userId": "user_fake", "planSlug": "pro",
		"hasPlan": true, "tokenLimit": 15000000,
	})
}

// ---- request parsing ----

type parsedChat struct {
	id   string
	text string
}

// readBody reads at most MaxBodyBytes; tooBig reports a longer body.
func readBody(r *http.Request) (body []byte, tooBig bool, err error) {
	if r.Body == nil {
		return nil, false, nil
	}
	body, err = io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if len(body) > MaxBodyBytes {
		return body[:MaxBodyBytes], true, nil
	}
	return body, false, err
}

// parseChat reads {"id"?, "messages":[{"role","parts":[{"type","text"}]}]}.
// The text is the last message's text parts, which must come from the user.
// It returns what it could parse even on error, for the request record.
func parseChat(body []byte) (parsedChat, error) {
	if p, ok := parseChatFast(body); ok {
		return p, nil
	}
	return parseChatSlow(body)
}

// parseChatSlow reads any body encoding/json reads, and says what is wrong
// with the others.
func parseChatSlow(body []byte) (parsedChat, error) {
	var in struct {
		ID       json.RawMessage `json:"id"`
		Messages []struct {
			Role  string `json:"role"`
			Parts []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"parts"`
		} `json:"messages"`
	}
	var p parsedChat
	if len(bytes.TrimSpace(body)) == 0 {
		return p, fmt.Errorf("empty body")
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return p, fmt.Errorf("invalid JSON: %v", err)
	}
	if len(in.ID) > 0 && string(in.ID) != "null" {
		if err := json.Unmarshal(in.ID, &p.id); err != nil {
			return p, fmt.Errorf("id must be a string")
		}
	}
	if len(in.Messages) == 0 {
		return p, fmt.Errorf("messages is required")
	}
	last := in.Messages[len(in.Messages)-1]
	var texts []string
	for _, part := range last.Parts {
		if part.Type == "text" {
			texts = append(texts, part.Text)
		}
	}
	p.text = strings.Join(texts, "\n")
	if last.Role != "user" {
		return p, fmt.Errorf("the last message must have role user")
	}
	if strings.TrimSpace(p.text) == "" {
		return p, fmt.Errorf("message text is empty")
	}
	return p, nil
}

// ---- answers ----

type statusWriter struct {
	http.ResponseWriter
	status int
	code   string
	// drop closes the connection without an answer once the request is
	// recorded as ended, so a client's resend never looks like an overlap.
	drop bool
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, code string, transient bool, msg string, data map[string]any) {
	body := map[string]any{"code": code, "transient": transient, "message": msg}
	if data != nil {
		body["data"] = data
	}
	writeJSON(w, status, body)
}

// sseEvent is one event of a UI message stream (a struct rather than a
// map: the fake answers thousands of turns a second in benchmarks).
type sseEvent struct {
	Type       string   `json:"type"`
	ID         string   `json:"id,omitempty"`
	MessageID  string   `json:"messageId,omitempty"`
	ChatID     string   `json:"chatId,omitempty"`
	ToolCallID string   `json:"toolCallId,omitempty"`
	Output     *sseStep `json:"output,omitempty"`
	Delta      string   `json:"delta,omitempty"`
}

type sseStep struct {
	Step   int    `json:"step"`
	Of     int    `json:"of"`
	Status string `json:"status"`
}

// writeSSE streams the reply the way a UI message stream does: start,
// the turn's progress steps (tool results, each after turn.Every), text
// deltas, finish, then [DONE]. The chat id rides on start and finish. It
// reports false when turn.CutAfter says to cut the stream there; it stops
// early, reporting true, when the client goes away.
func writeSSE(ctx context.Context, w http.ResponseWriter, chatID, reply string, turn Turn) bool {
	// The stream is written into one buffer; an event is its frame's end
	// there and the pause before it.
	type event struct {
		wait time.Duration
		end  int
	}
	buf := make([]byte, 0, 512+64*len(reply)/4)
	var evs []event
	frame := func(wait time.Duration, data func([]byte) []byte) {
		buf = append(buf, "data: "...)
		buf = data(buf)
		buf = append(buf, "\n\n"...)
		evs = append(evs, event{wait, len(buf)})
	}
	add := func(wait time.Duration, v sseEvent) {
		frame(wait, func(b []byte) []byte { return appendEvent(b, &v) })
	}
	add(0, sseEvent{Type: "start", MessageID: newID("msg_"), ChatID: chatID})
	add(0, sseEvent{Type: "start-step"})
	for i := range turn.Steps {
		add(turn.Every, sseEvent{Type: "tool-output-available", ToolCallID: fmt.Sprintf("call_%d", i+1),
			Output: &sseStep{Step: i + 1, Of: turn.Steps, Status: "done"}})
	}
	add(0, sseEvent{Type: "text-start", ID: "txt_0"})
	for piece := range strings.SplitAfterSeq(reply, " ") {
		if piece != "" {
			add(0, sseEvent{Type: "text-delta", ID: "txt_0", Delta: piece})
		}
	}
	add(0, sseEvent{Type: "text-end", ID: "txt_0"})
	add(0, sseEvent{Type: "finish-step"})
	add(0, sseEvent{Type: "finish", ChatID: chatID})
	frame(0, func(b []byte) []byte { return append(b, "[DONE]"...) })

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	// Chunked as a stream is, even when it ends before its first flush.
	h.Set("Transfer-Encoding", "chunked")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// Events due at once go out in one write, as a server streaming
	// faster than the network would send them; an event after a pause is
	// flushed before the pause, so a slow stream shows each step as it
	// comes.
	sent := 0
	write := func(upto int) {
		_, _ = w.Write(buf[sent:upto])
		sent = upto
		_ = rc.Flush()
	}
	start := 0 // where the next event's frame starts
	for i, ev := range evs {
		if turn.CutAfter > 0 && i == turn.CutAfter {
			write(start)
			return false
		}
		if ev.wait > 0 {
			write(start)
			if xtime.Sleep(ctx, ev.wait) != nil {
				return true
			}
		}
		start = ev.end
	}
	// No flush: the response ends here, and net/http sends the rest with
	// the stream's last chunk, in one write.
	_, _ = w.Write(buf[sent:])
	return true
}

// appendEvent appends v as json.Marshal encodes it, without reflection:
// the fake answers thousands of turns a second in benchmarks.
func appendEvent(dst []byte, v *sseEvent) []byte {
	dst = append(dst, `{"type":`...)
	dst = appendJSONString(dst, v.Type)
	for _, m := range [...]struct{ key, val string }{
		{`,"id":`, v.ID}, {`,"messageId":`, v.MessageID}, {`,"chatId":`, v.ChatID}, {`,"toolCallId":`, v.ToolCallID},
	} {
		if m.val != "" {
			dst = append(dst, m.key...)
			dst = appendJSONString(dst, m.val)
		}
	}
	if o := v.Output; o != nil {
		dst = append(dst, `,"output":{"step":`...)
		dst = strconv.AppendInt(dst, int64(o.Step), 10)
		dst = append(dst, `,"of":`...)
		dst = strconv.AppendInt(dst, int64(o.Of), 10)
		dst = append(dst, `,"status":`...)
		dst = appendJSONString(dst, o.Status)
		dst = append(dst, '}')
	}
	if v.Delta != "" {
		dst = append(dst, `,"delta":`...)
		dst = appendJSONString(dst, v.Delta)
	}
	return append(dst, '}')
}

// appendJSONString appends s quoted as json.Marshal quotes it: as is when
// it is printable ASCII that needs no escape, else through json.Marshal.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// dropConn closes the connection without an answer, as a crashed server or
// a cut network would.
func dropConn(w *statusWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		_ = conn.Close()
		return
	}
	// HTTP/2 or a recorder: abort the response; net/http does not log this.
	panic(http.ErrAbortHandler)
}

func defaultCode(status int) string {
	switch status {
	case 400:
		return "bad_request"
	case 401:
		return "unauthorized"
	case 403:
		return "forbidden"
	case 404:
		return "not_found"
	case 405:
		return "method_not_allowed"
	case 409:
		return "idempotency_conflict"
	case 413:
		return "payload_too_large"
	case 418:
		return "teapot"
	case 429:
		return "rate_limited"
	case 500:
		return "internal_error"
	case 502:
		return "bad_gateway"
	case 503:
		return "unavailable"
	case 504:
		return "gateway_timeout"
	}
	return "error"
}

func defaultReply(n int) string {
	if n == 1 {
		return "On it. I read the event and started looking into it; I will report back in this conversation."
	}
	return fmt.Sprintf("Noted (message %d in this conversation). Updating my findings with it.", n)
}

func newID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
