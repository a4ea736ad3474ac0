package fake_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/xtest"
)

const key = "ck_live_test_0123456789"

// harness is a fake on a real loopback listener and a way to call it.
type harness struct {
	t   *testing.T
	f   *fake.Server
	srv *httptest.Server
}

func newHarness(t *testing.T, o fake.Options) *harness {
	t.Helper()
	f := fake.New(o)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return &harness{t: t, f: f, srv: srv}
}

type result struct {
	status int
	header http.Header
	body   []byte
	err    error
}

// errBody is the API's documented error schema.
type errBody struct {
	Code      string         `json:"code"`
	Transient *bool          `json:"transient"`
	Message   string         `json:"message"`
	Data      map[string]any `json:"data"`
}

func (r result) errBody(t *testing.T) errBody {
	t.Helper()
	var e errBody
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	if e.Code == "" || e.Transient == nil || e.Message == "" {
		t.Fatalf("error body %s lacks code/transient/message", r.body)
	}
	return e
}

type reqOpt func(*http.Request)

func withHeader(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }
func withoutHeader(k string) reqOpt { return func(r *http.Request) { r.Header.Del(k) } }

func chatBody(id, text string) string {
	m := map[string]any{"messages": []any{map[string]any{
		"role": "user", "parts": []any{map[string]any{"type": "text", "text": text}},
	}}}
	if id != "" {
		m["id"] = id
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func (h *harness) do(ctx context.Context, method, path, body string, opts ...reqOpt) result {
	h.t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, h.srv.URL+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-response-format", "json")
	for _, o := range opts {
		o(req)
	}
	// A fresh transport per call: no connection reuse, so a dropped
	// connection is seen as an error instead of being retried silently.
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

func (h *harness) chat(id, text string, opts ...reqOpt) result {
	h.t.Helper()
	return h.do(context.Background(), http.MethodPost, "/api/chat", chatBody(id, text), opts...)
}

type answer struct {
	ChatID string `json:"chatId"`
	Text   string `json:"text"`
}

func (h *harness) mustChat(id, text string, opts ...reqOpt) answer {
	h.t.Helper()
	r := h.chat(id, text, opts...)
	if r.err != nil || r.status != http.StatusOK {
		h.t.Fatalf("chat(%q): status %d err %v body %s", id, r.status, r.err, r.body)
	}
	var a answer
	if err := json.Unmarshal(r.body, &a); err != nil {
		h.t.Fatalf("answer %q: %v", r.body, err)
	}
	return a
}

func TestAuth(t *testing.T) {
	tests := []struct {
		name   string
		keys   []string
		auth   string // "" removes the header
		status int
	}{
		{"any ck_ key when none configured", nil, "Bearer ck_live_abc", 200},
		{"scheme is case-insensitive", nil, "bearer ck_live_abc", 200},
		{"missing header", nil, "", 401},
		{"not a ck_ key", nil, "Bearer sk_live_abc", 401},
		{"bare prefix", nil, "Bearer ck_", 401},
		{"basic scheme", nil, "Basic Y2tfbGl2ZV9hYmM=", 401},
		{"empty bearer", nil, "Bearer ", 401},
		{"configured key", []string{key}, "Bearer " + key, 200},
		{"other ck_ key refused when keys configured", []string{key}, "Bearer ck_live_other", 401},
		{"second of two keys", []string{"ck_live_a", key}, "Bearer " + key, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, fake.Options{Keys: tt.keys})
			opt := withHeader("Authorization", tt.auth)
			if tt.auth == "" {
				opt = withoutHeader("Authorization")
			}
			r := h.chat("", "hello", opt)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d (%s)", r.status, tt.status, r.body)
			}
			if tt.status == 401 {
				e := r.errBody(t)
				if e.Code != "unauthorized" || *e.Transient {
					t.Fatalf("error body %+v", e)
				}
				if len(h.f.Chats()) != 0 {
					t.Fatal("an unauthorized message was taken")
				}
			}
		})
	}
}

func TestSetKeysRevokesAndRestores(t *testing.T) {
	h := newHarness(t, fake.Options{Keys: []string{key}})
	h.mustChat("", "one")
	h.f.SetKeys([]string{"ck_live_rotated"})
	if r := h.chat("", "two"); r.status != 401 {
		t.Fatalf("revoked key: status %d", r.status)
	}
	if r := h.do(context.Background(), "GET", "/api/cli/health", ""); r.status != 401 {
		t.Fatalf("revoked key on health: status %d", r.status)
	}
	h.f.SetKeys([]string{key})
	h.mustChat("", "three")
}

func TestConversation(t *testing.T) {
	h := newHarness(t, fake.Options{})
	a := h.mustChat("", "first")
	if !strings.HasPrefix(a.ChatID, "chat_") || a.Text == "" {
		t.Fatalf("first answer %+v", a)
	}
	b := h.mustChat(a.ChatID, "second")
	if b.ChatID != a.ChatID {
		t.Fatalf("continued chat answered %q, want %q", b.ChatID, a.ChatID)
	}
	c := h.mustChat("", "other")
	if c.ChatID == a.ChatID {
		t.Fatal("a message without id joined an existing chat")
	}
	chats := h.f.Chats()
	if got := chats[a.ChatID]; len(got) != 2 || got[0] != "first" || got[1] != "second" {
		t.Fatalf("chat history %q", got)
	}
	if got := chats[c.ChatID]; len(got) != 1 || got[0] != "other" {
		t.Fatalf("other chat %q", got)
	}
}

func TestUnknownChatIs404(t *testing.T) {
	h := newHarness(t, fake.Options{})
	r := h.chat("chat_doesnotexist", "hello")
	if r.status != 404 {
		t.Fatalf("status %d", r.status)
	}
	if e := r.errBody(t); e.Code != "not_found" || *e.Transient {
		t.Fatalf("body %+v", e)
	}

	a := h.mustChat("", "first")
	h.f.ForgetChat(a.ChatID)
	if r := h.chat(a.ChatID, "again"); r.status != 404 {
		t.Fatalf("forgotten chat: status %d", r.status)
	}
}

func TestBadRequests(t *testing.T) {
	tests := []struct {
		name   string
		method string
		body   string
		opts   []reqOpt
		status int
		code   string
	}{
		{"invalid JSON", "POST", `{"messages":`, nil, 400, "bad_request"},
		{"empty body", "POST", ``, nil, 400, "bad_request"},
		{"no messages", "POST", `{"id":null}`, nil, 400, "bad_request"},
		{"empty messages", "POST", `{"messages":[]}`, nil, 400, "bad_request"},
		{"empty text", "POST", chatBody("", ""), nil, 400, "bad_request"},
		{"blank text", "POST", chatBody("", "  \n"), nil, 400, "bad_request"},
		{"no text part", "POST", `{"messages":[{"role":"user","parts":[{"type":"image","url":"x"}]}]}`, nil, 400, "bad_request"},
		{"last message not from user", "POST", `{"messages":[{"role":"assistant","parts":[{"type":"text","text":"hi"}]}]}`, nil, 400, "bad_request"},
		{"id not a string", "POST", `{"id":42,"messages":[{"role":"user","parts":[{"type":"text","text":"hi"}]}]}`, nil, 400, "bad_request"},
		{"form content type", "POST", chatBody("", "hi"), []reqOpt{withHeader("Content-Type", "application/x-www-form-urlencoded")}, 400, "bad_request"},
		{"no content type", "POST", chatBody("", "hi"), []reqOpt{withoutHeader("Content-Type")}, 400, "bad_request"},
		{"too large", "POST", chatBody("", strings.Repeat("x", fake.MaxBodyBytes)), nil, 413, "payload_too_large"},
		{"GET", "GET", "", nil, 405, "method_not_allowed"},
		{"PUT", "PUT", chatBody("", "hi"), nil, 405, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, fake.Options{})
			r := h.do(context.Background(), tt.method, "/api/chat", tt.body, tt.opts...)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d (%s)", r.status, tt.status, r.body)
			}
			if e := r.errBody(t); e.Code != tt.code || *e.Transient {
				t.Fatalf("body %+v", e)
			}
			if tt.status == 405 && r.header.Get("Allow") != "POST" {
				t.Fatalf("Allow %q", r.header.Get("Allow"))
			}
			if len(h.f.Chats()) != 0 {
				t.Fatal("a rejected message was taken")
			}
			if reqs := h.f.Requests(); len(reqs) != 1 || reqs[0].Status != tt.status || reqs[0].Code != tt.code {
				t.Fatalf("recorded %+v", reqs)
			}
		})
	}
}

func TestContentTypeWithCharset(t *testing.T) {
	h := newHarness(t, fake.Options{})
	h.mustChat("", "hi", withHeader("Content-Type", "application/json; charset=utf-8"))
}

func TestUnknownPath(t *testing.T) {
	h := newHarness(t, fake.Options{})
	r := h.do(context.Background(), "GET", "/api/instances", "")
	if r.status != 404 || r.errBody(t).Code != "not_found" {
		t.Fatalf("status %d body %s", r.status, r.body)
	}
}

// sseEvents splits a stream into its data payloads.
func sseEvents(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, d)
		}
	}
	return out
}

func TestSSEWithoutResponseFormat(t *testing.T) {
	reply := "Looked at the failing run: the cache key changed."
	h := newHarness(t, fake.Options{Reply: func(chatID, text string) string { return reply }})
	r := h.chat("", "why did CI fail?", withoutHeader("x-response-format"))
	if r.err != nil || r.status != 200 {
		t.Fatalf("status %d err %v", r.status, r.err)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type %q", ct)
	}
	events := sseEvents(t, r.body)
	if len(events) < 4 || events[len(events)-1] != "[DONE]" {
		t.Fatalf("events %q", events)
	}
	var (
		text            strings.Builder
		startID, finish string
		types           []string
	)
	for _, e := range events[:len(events)-1] {
		var ev struct{ Type, Delta, ChatID string }
		if err := json.Unmarshal([]byte(e), &ev); err != nil {
			t.Fatalf("event %q: %v", e, err)
		}
		types = append(types, ev.Type)
		switch ev.Type {
		case "start":
			startID = ev.ChatID
		case "text-delta":
			text.WriteString(ev.Delta)
		case "finish":
			finish = ev.ChatID
		}
	}
	if types[0] != "start" || types[len(types)-1] != "finish" {
		t.Fatalf("event order %q", types)
	}
	if text.String() != reply {
		t.Fatalf("deltas %q, want %q", text.String(), reply)
	}
	chats := h.f.Chats()
	if len(chats) != 1 || chats[startID] == nil || finish != startID {
		t.Fatalf("start %q finish %q chats %v", startID, finish, chats)
	}
}

func TestJSONFormatIsCaseInsensitive(t *testing.T) {
	h := newHarness(t, fake.Options{})
	r := h.chat("", "hi", withHeader("X-Response-Format", "JSON"))
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
}

func TestIdempotencyKey(t *testing.T) {
	h := newHarness(t, fake.Options{})
	a := h.mustChat("", "deploy failed", withHeader("Idempotency-Key", "msg_1"))

	// The same key and body again: the message was already taken.
	r := h.chat("", "deploy failed", withHeader("Idempotency-Key", "msg_1"))
	if r.status != 409 {
		t.Fatalf("repeat: status %d", r.status)
	}
	e := r.errBody(t)
	if e.Code != "idempotency_conflict" || *e.Transient || e.Data["chatId"] != a.ChatID || e.Data["sameBody"] != true {
		t.Fatalf("repeat body %+v", e)
	}
	// The same key with another body still clashes.
	r = h.chat(a.ChatID, "something else", withHeader("Idempotency-Key", "msg_1"))
	if r.status != 409 || r.errBody(t).Data["sameBody"] != false {
		t.Fatalf("reuse: status %d body %s", r.status, r.body)
	}
	// A failed attempt does not take its key: a 404 then a retry as a new
	// conversation (what a dispatcher does for a gone chat) goes through.
	if r := h.chat("chat_gone", "retry me", withHeader("Idempotency-Key", "msg_2")); r.status != 404 {
		t.Fatalf("gone chat: %d", r.status)
	}
	h.mustChat("", "retry me", withHeader("Idempotency-Key", "msg_2"))
	// Without a key nothing is deduplicated.
	h.mustChat("", "no key")
	h.mustChat("", "no key")
	if n := len(h.f.Chats()); n != 4 {
		t.Fatalf("%d chats, want 4", n)
	}
	if got := h.f.Chats()[a.ChatID]; len(got) != 1 {
		t.Fatalf("duplicate stored: %q", got)
	}
}

func TestFaults(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name       string
		fault      fake.Fault
		status     int
		code       string
		transient  *bool // nil: not checked
		retryAfter string
		rawBody    string // exact body when set
		taken      bool   // the message is stored despite the answer
	}{
		{"429 with Retry-After", fake.Fault{Status: 429, RetryAfter: "2"}, 429, "rate_limited", &yes, "2", "", false},
		{"429 with HTTP date", fake.Fault{Status: 429, RetryAfter: "Wed, 21 Oct 2037 07:28:00 GMT"}, 429, "rate_limited", &yes, "Wed, 21 Oct 2037 07:28:00 GMT", "", false},
		{"500 default transient", fake.Fault{Status: 500}, 500, "internal_error", &yes, "", "", false},
		{"500 transient false", fake.Fault{Status: 500, Transient: &no}, 500, "internal_error", &no, "", "", false},
		{"403", fake.Fault{Status: 403}, 403, "forbidden", &no, "", "", false},
		{"418 with own code and transient", fake.Fault{Status: 418, Code: "teapot", Transient: &yes}, 418, "teapot", &yes, "", "", false},
		{"status 0 is 500", fake.Fault{}, 500, "internal_error", &yes, "", "", false},
		{"raw body", fake.Fault{Status: 502, Body: "<html>bad gateway</html>"}, 502, "", nil, "", "<html>bad gateway</html>", false},
		{"202 without body processes", fake.Fault{Status: 202, NoBody: true}, 202, "", nil, "", "", true},
		{"503 after processing", fake.Fault{Status: 503, Process: true}, 503, "unavailable", &yes, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, fake.Options{})
			h.f.FailNext(1, tt.fault)
			r := h.chat("", "hello", withHeader("Idempotency-Key", "k1"))
			if r.err != nil || r.status != tt.status {
				t.Fatalf("status %d err %v", r.status, r.err)
			}
			if got := r.header.Get("Retry-After"); got != tt.retryAfter {
				t.Fatalf("Retry-After %q, want %q", got, tt.retryAfter)
			}
			switch {
			case tt.rawBody != "":
				if string(r.body) != tt.rawBody {
					t.Fatalf("body %q", r.body)
				}
			case tt.fault.NoBody:
				if len(r.body) != 0 {
					t.Fatalf("body %q, want none", r.body)
				}
			case tt.code != "":
				e := r.errBody(t)
				if e.Code != tt.code || (tt.transient != nil && *e.Transient != *tt.transient) {
					t.Fatalf("body %+v", e)
				}
			}
			if taken := len(h.f.Chats()) == 1; taken != tt.taken {
				t.Fatalf("taken %v, want %v", taken, tt.taken)
			}
			// Only one forced answer was queued: the retry is answered for
			// real, 409 when the first attempt took the message.
			want := 200
			if tt.taken {
				want = 409
			}
			if r := h.chat("", "hello", withHeader("Idempotency-Key", "k1")); r.status != want {
				t.Fatalf("retry: status %d, want %d", r.status, want)
			}
		})
	}
}

func TestFailNextQueuesInOrder(t *testing.T) {
	h := newHarness(t, fake.Options{})
	h.f.FailNext(2, fake.Fault{Status: 503})
	h.f.FailNext(1, fake.Fault{Status: 429})
	var got []int
	for range 4 {
		got = append(got, h.chat("", "x").status)
	}
	if want := []int{503, 503, 429, 200}; !equalInts(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
}

func TestFailRate(t *testing.T) {
	h := newHarness(t, fake.Options{})
	h.f.FailRate(1, []fake.Fault{{Status: 502}, {Status: 504}})
	for range 5 {
		if s := h.chat("", "x").status; s != 502 && s != 504 {
			t.Fatalf("status %d", s)
		}
	}
	h.f.FailRate(1, nil)
	if r := h.chat("", "x"); r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Fatalf("default random fault: %d", r.status)
	}
	h.f.FailRate(0, nil)
	for range 5 {
		if s := h.chat("", "x").status; s != 200 {
			t.Fatalf("status %d with rate 0", s)
		}
	}
	h.f.FailNext(3, fake.Fault{Status: 500})
	h.f.ClearFaults()
	if s := h.chat("", "x").status; s != 200 {
		t.Fatalf("status %d after ClearFaults", s)
	}
}

func TestDropFault(t *testing.T) {
	tests := []struct {
		name  string
		fault fake.Fault
		taken bool
	}{
		{"before processing", fake.Fault{Drop: true}, false},
		{"after processing", fake.Fault{Drop: true, Process: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, fake.Options{})
			h.f.FailNext(1, tt.fault)
			r := h.chat("", "hello")
			if r.err == nil {
				t.Fatalf("want a transport error, got status %d", r.status)
			}
			if taken := len(h.f.Chats()) == 1; taken != tt.taken {
				t.Fatalf("taken %v, want %v", taken, tt.taken)
			}
			if reqs := h.f.Requests(); len(reqs) != 1 || reqs[0].Status != 0 {
				t.Fatalf("recorded %+v", reqs)
			}
		})
	}
}

func TestDown(t *testing.T) {
	h := newHarness(t, fake.Options{})
	h.f.SetDown(true)
	for _, path := range []string{"/api/chat", "/api/cli/health"} {
		method := "POST"
		if path == "/api/cli/health" {
			method = "GET"
		}
		r := h.do(context.Background(), method, path, chatBody("", "x"))
		if r.status != 503 || r.header.Get("Retry-After") == "" {
			t.Fatalf("%s: status %d Retry-After %q", path, r.status, r.header.Get("Retry-After"))
		}
		if e := r.errBody(t); e.Code != "unavailable" || !*e.Transient {
			t.Fatalf("%s: body %+v", path, e)
		}
	}
	h.f.SetDownMode(fake.DownDrop)
	if r := h.chat("", "x"); r.err == nil {
		t.Fatalf("drop mode answered %d", r.status)
	}
	h.f.SetDown(false)
	h.mustChat("", "x")
	if n := len(h.f.Chats()); n != 1 {
		t.Fatalf("%d chats: a message sent while down was taken", n)
	}
}

func TestLatencyHonoursClientContext(t *testing.T) {
	h := newHarness(t, fake.Options{})
	h.f.SetLatency(time.Hour, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan result, 1)
	go func() { done <- h.do(ctx, "POST", "/api/chat", chatBody("", "slow")) }()
	select {
	case r := <-done:
		if !errors.Is(r.err, context.DeadlineExceeded) {
			t.Fatalf("err %v status %d", r.err, r.status)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the latency did not honour the client's context")
	}
	waitFor(t, func() bool { reqs := h.f.Requests(); return len(reqs) == 1 && !reqs[0].End.IsZero() })
	if reqs := h.f.Requests(); reqs[0].Status != 0 {
		t.Fatalf("recorded status %d for an abandoned request", reqs[0].Status)
	}
	if len(h.f.Chats()) != 0 {
		t.Fatal("an abandoned message was taken")
	}
	h.f.SetLatency(0, time.Millisecond)
	h.mustChat("", "fast")
}

func TestOverlapDetection(t *testing.T) {
	h := newHarness(t, fake.Options{})
	a := h.mustChat("", "first")
	h.mustChat(a.ChatID, "second") // sequential: no overlap
	if n := h.f.Overlaps(); n != 0 {
		t.Fatalf("sequential requests counted %d overlaps", n)
	}

	b := h.mustChat("", "first")
	c := h.mustChat("", "first")

	// Hold requests in flight with a long latency; inFlightKeep cancels
	// them once the fake has seen them all, so nothing depends on timing.
	h.f.SetLatency(time.Hour, time.Hour)
	if n := inFlightKeep(t, h, "", ""); n != 0 {
		t.Fatalf("two new conversations counted %d overlaps", n)
	}
	if n := inFlightKeep(t, h, b.ChatID, c.ChatID); n != 0 {
		t.Fatalf("two different chats counted %d overlaps", n)
	}
	if n := inFlightKeep(t, h, b.ChatID, b.ChatID); n != 1 {
		t.Fatalf("two requests for one chat counted %d overlaps, want 1", n)
	}
	var flagged int
	for _, r := range h.f.Requests() {
		if r.Overlapped {
			flagged++
		}
	}
	if flagged != 1 {
		t.Fatalf("%d requests flagged as overlapped", flagged)
	}
}

// inFlightKeep holds one request per id in flight at once and returns the
// overlap count seen while they all were; state is kept.
func inFlightKeep(t *testing.T, h *harness, ids ...string) int {
	t.Helper()
	base := len(h.f.Requests())
	before := h.f.Overlaps()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.do(ctx, "POST", "/api/chat", chatBody(id, "concurrent"))
		}()
		waitFor(t, func() bool { return len(h.f.Requests()) == base+i+1 })
	}
	n := h.f.Overlaps() - before
	cancel()
	wg.Wait()
	waitFor(t, func() bool {
		for _, r := range h.f.Requests() {
			if r.End.IsZero() {
				return false
			}
		}
		return true
	})
	return n
}

func TestRequestsRecord(t *testing.T) {
	h := newHarness(t, fake.Options{})
	a := h.mustChat("", "first", withHeader("Idempotency-Key", "m1"), withHeader("Operator-Version", "2025-06-19"))
	h.chat("chat_unknown", "lost")
	reqs := h.f.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if r.Seq != 1 || r.Method != "POST" || r.ChatID != "" || r.AssignedChatID != a.ChatID || r.Text != "first" ||
		r.IdempotencyKey != "m1" || r.Status != 200 || r.Header.Get("Operator-Version") != "2025-06-19" ||
		r.Header.Get("Authorization") != "Bearer "+key || r.Start.IsZero() || r.End.Before(r.Start) {
		t.Fatalf("first record %+v", r)
	}
	r = reqs[1]
	if r.Seq != 2 || r.ChatID != "chat_unknown" || r.AssignedChatID != "" || r.Status != 404 || r.Code != "not_found" {
		t.Fatalf("second record %+v", r)
	}
	// Records are copies.
	reqs[0].Header.Set("Authorization", "changed")
	if h.f.Requests()[0].Header.Get("Authorization") == "changed" {
		t.Fatal("Requests exposes internal state")
	}
}

func TestMaxRequests(t *testing.T) {
	h := newHarness(t, fake.Options{MaxRequests: 3})
	for range 5 {
		h.mustChat("", "x")
	}
	reqs := h.f.Requests()
	if len(reqs) != 3 || reqs[0].Seq != 3 || reqs[2].Seq != 5 {
		t.Fatalf("kept %d requests starting at %d", len(reqs), reqs[0].Seq)
	}
}

func TestHealth(t *testing.T) {
	h := newHarness(t, fake.Options{})
	r := h.do(context.Background(), "GET", "/api/cli/health", "")
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	var got map[string]any
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"authenticated": true, "userId": "user_fake", "planSlug": "pro", "hasPlan": true, "tokenLimit": 15000000.0}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s = %v, want %v", k, got[k], v)
		}
	}
	if r := h.do(context.Background(), "GET", "/api/cli/health", "", withHeader("Authorization", "Bearer nope")); r.status != 401 || r.errBody(t).Code != "unauthorized" {
		t.Fatalf("bad key: %d", r.status)
	}
	if r := h.do(context.Background(), "POST", "/api/cli/health", ""); r.status != 405 {
		t.Fatalf("POST: %d", r.status)
	}
}

func TestReset(t *testing.T) {
	h := newHarness(t, fake.Options{Keys: []string{key}})
	a := h.mustChat("", "x", withHeader("Idempotency-Key", "k"))
	h.f.SetKeys([]string{"ck_other"})
	h.f.SetDown(true)
	h.f.FailNext(5, fake.Fault{Status: 500})
	h.f.Reset()
	if len(h.f.Requests()) != 0 || len(h.f.Chats()) != 0 || h.f.Overlaps() != 0 {
		t.Fatal("state survived Reset")
	}
	h.mustChat("", "x", withHeader("Idempotency-Key", "k")) // keys, faults, down, idempotency reset
	if r := h.chat(a.ChatID, "y"); r.status != 404 {
		t.Fatalf("chat survived Reset: %d", r.status)
	}
}

func TestLogsRepliesWithoutKey(t *testing.T) {
	var buf xtest.Buffer
	h := newHarness(t, fake.Options{Logger: slog.New(slog.NewJSONHandler(&buf, nil)),
		Reply: func(chatID, text string) string { return "reply to " + text }})
	a := h.mustChat("", "the prompt")
	h.chat("", "x", withHeader("Authorization", "Bearer ck_live_wrong_key_123"))
	h.f.FailNext(1, fake.Fault{Status: 503})
	h.chat(a.ChatID, "y")
	logs := buf.String()
	for _, want := range []string{a.ChatID, "reply to the prompt", `"level":"INFO"`} {
		if !strings.Contains(logs, want) {
			t.Fatalf("logs lack %q:\n%s", want, logs)
		}
	}
	for _, secret := range []string{key, "ck_live_wrong_key_123"} {
		if strings.Contains(logs, secret) {
			t.Fatalf("logs contain a key:\n%s", logs)
		}
	}
}

func TestControlSurface(t *testing.T) {
	h := newHarness(t, fake.Options{})
	ctl := func(method, path, body string) result {
		t.Helper()
		return h.do(context.Background(), method, path, body, withoutHeader("Authorization"))
	}
	expect := func(r result, status int) {
		t.Helper()
		if r.err != nil || r.status != status {
			t.Fatalf("status %d (want %d) err %v body %s", r.status, status, r.err, r.body)
		}
	}

	expect(ctl("POST", "/_fake/faults", `{"next":1,"fault":{"status":429,"retry_after":"7"}}`), 204)
	if r := h.chat("", "x"); r.status != 429 || r.header.Get("Retry-After") != "7" {
		t.Fatalf("injected fault: %d", r.status)
	}
	expect(ctl("POST", "/_fake/faults", `{"rate":1,"faults":[{"status":502}]}`), 204)
	if r := h.chat("", "x"); r.status != 502 {
		t.Fatalf("rate fault: %d", r.status)
	}
	expect(ctl("DELETE", "/_fake/faults", ""), 204)
	a := h.mustChat("", "x")

	expect(ctl("POST", "/_fake/down", `{"down":true}`), 204)
	if r := h.chat("", "x"); r.status != 503 {
		t.Fatalf("down: %d", r.status)
	}
	expect(ctl("POST", "/_fake/down", `{"down":false}`), 204)

	expect(ctl("POST", "/_fake/keys", `{"keys":["ck_live_only"]}`), 204)
	if r := h.chat("", "x"); r.status != 401 {
		t.Fatalf("rotated keys: %d", r.status)
	}
	expect(ctl("POST", "/_fake/keys", `{"keys":[]}`), 204)

	expect(ctl("POST", "/_fake/latency", `{"min":"0s","max":"1ms"}`), 204)
	expect(ctl("POST", "/_fake/forget", `{"chatId":"`+a.ChatID+`"}`), 204)
	if r := h.chat(a.ChatID, "x"); r.status != 404 {
		t.Fatalf("forgotten: %d", r.status)
	}

	r := ctl("GET", "/_fake/requests", "")
	expect(r, 200)
	if bytes.Contains(r.body, []byte(key)) {
		t.Fatal("/_fake/requests shows the API key")
	}
	var reqs []fake.Request
	if err := json.Unmarshal(r.body, &reqs); err != nil || len(reqs) == 0 || reqs[0].Header.Get("Authorization") != "[redacted]" {
		t.Fatalf("requests %s: %v", r.body, err)
	}
	r = ctl("GET", "/_fake/stats", "")
	expect(r, 200)
	var st struct{ Requests, Chats, Overlaps int }
	if err := json.Unmarshal(r.body, &st); err != nil || st.Requests != len(reqs) {
		t.Fatalf("stats %s: %v", r.body, err)
	}
	expect(ctl("GET", "/_fake/chats", ""), 200)

	for _, bad := range []struct{ path, body string }{
		{"/_fake/faults", `{"next":2}`},
		{"/_fake/faults", `{"rate":2}`},
		{"/_fake/faults", `{"unknown":1}`},
		{"/_fake/down", `{"down":true,"mode":"sideways"}`},
		{"/_fake/latency", `{"min":"soon"}`},
		{"/_fake/forget", `{}`},
		{"/_fake/keys", `not json`},
	} {
		expect(ctl("POST", bad.path, bad.body), 400)
	}
	expect(ctl("GET", "/_fake/nothing", ""), 404)
	expect(ctl("POST", "/_fake/reset", ""), 204)
	if len(h.f.Requests()) != 0 {
		t.Fatal("reset over HTTP kept requests")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
