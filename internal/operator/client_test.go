package operator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/operator"
	"github.com/relayd/relayd/internal/operator/fake"
)

const key = "ck_live_0123456789abcdef"

type env struct {
	t    *testing.T
	fake *fake.Server
	srv  *httptest.Server
	c    *operator.Client
	tap  *tap
}

// tap sits in front of the fake and only observes (raw bodies), or, with
// forceSSE, plays a server that ignores x-response-format.
type tap struct {
	next     http.Handler
	mu       sync.Mutex
	bodies   [][]byte
	forceSSE bool
}

func (t *tap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	t.mu.Lock()
	t.bodies = append(t.bodies, b)
	force := t.forceSSE
	t.mu.Unlock()
	r.Body = io.NopCloser(bytes.NewReader(b))
	if force {
		r.Header.Del("x-response-format")
	}
	t.next.ServeHTTP(w, r)
}

func (t *tap) body(i int) []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bodies[i]
}

func newEnv(t *testing.T, fo fake.Options, co operator.Options) *env {
	t.Helper()
	f := fake.New(fo)
	tp := &tap{next: f}
	srv := httptest.NewServer(tp)
	t.Cleanup(srv.Close)
	co.BaseURL = srv.URL + "/" // a trailing slash must not double up
	if co.APIKey == "" {
		co.APIKey = key
	}
	return &env{t: t, fake: f, srv: srv, c: operator.New(co), tap: tp}
}

func (e *env) chat(r operator.ChatRequest) (operator.ChatResponse, error) {
	e.t.Helper()
	return e.c.Chat(context.Background(), r)
}

func TestChatRequestShape(t *testing.T) {
	e := newEnv(t, fake.Options{Keys: []string{key}}, operator.Options{Version: "2025-06-19", UserAgent: "relayd/test", Response: operator.ResponseJSON})
	first, err := e.chat(operator.ChatRequest{Text: "CI failed on acme/api", IdempotencyKey: "msg_1"})
	if err != nil {
		t.Fatal(err)
	}
	if first.Status != 200 || !strings.HasPrefix(first.ChatID, "chat_") || first.Text == "" {
		t.Fatalf("answer %+v", first)
	}
	second, err := e.chat(operator.ChatRequest{ChatID: first.ChatID, Text: "and again", IdempotencyKey: "msg_2"})
	if err != nil || second.ChatID != first.ChatID {
		t.Fatalf("continued: %+v %v", second, err)
	}

	reqs := e.fake.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	h := reqs[0].Header
	for k, want := range map[string]string{
		"Authorization":     "Bearer " + key,
		"Content-Type":      "application/json",
		"X-Response-Format": "json",
		"Operator-Version":  "2025-06-19",
		"Idempotency-Key":   "msg_1",
		"User-Agent":        "relayd/test",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if reqs[1].ChatID != first.ChatID || reqs[1].IdempotencyKey != "msg_2" {
		t.Fatalf("second request %+v", reqs[1])
	}
	// The body is exactly the documented shape; "id" only when continuing.
	wantFirst := `{"messages":[{"role":"user","parts":[{"type":"text","text":"CI failed on acme/api"}]}]}`
	if got := string(e.tap.body(0)); got != wantFirst {
		t.Fatalf("first body %s\nwant %s", got, wantFirst)
	}
	var second2 struct{ ID string }
	if err := json.Unmarshal(e.tap.body(1), &second2); err != nil || second2.ID != first.ChatID {
		t.Fatalf("second body %s", e.tap.body(1))
	}
	if got := e.fake.Chats()[first.ChatID]; len(got) != 2 || got[0] != "CI failed on acme/api" || got[1] != "and again" {
		t.Fatalf("chat %q", got)
	}
}

func TestOptionalHeadersOmitted(t *testing.T) {
	e := newEnv(t, fake.Options{}, operator.Options{})
	if _, err := e.chat(operator.ChatRequest{Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	h := e.fake.Requests()[0].Header
	for _, k := range []string{"Operator-Version", "Idempotency-Key"} {
		if _, ok := h[http.CanonicalHeaderKey(k)]; ok {
			t.Errorf("%s sent though not configured", k)
		}
	}
	if h.Get("User-Agent") != "relayd" {
		t.Errorf("User-Agent %q", h.Get("User-Agent"))
	}
	e.c.SetVersion("2025-06-19")
	if _, err := e.chat(operator.ChatRequest{Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	if got := e.fake.Requests()[1].Header.Get("Operator-Version"); got != "2025-06-19" {
		t.Fatalf("after SetVersion: %q", got)
	}
}

func boolp(b bool) *bool { return &b }

// TestClassifyAgainstFake runs every row of the API's status table through
// the real client and the fake.
func TestClassifyAgainstFake(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(*env) operator.ChatRequest
		outcome    operator.Outcome
		reason     string
		status     int
		code       string
		retryAfter time.Duration
	}{
		{"200 delivered", func(e *env) operator.ChatRequest { return operator.ChatRequest{Text: "hi"} },
			operator.Delivered, "", 0, "", 0},
		{"201 delivered", func(e *env) operator.ChatRequest {
			e.fake.FailNext(1, fake.Fault{Status: 201})
			return operator.ChatRequest{Text: "hi"}
		}, operator.Delivered, "", 0, "", 0},
		{"202 without body delivered", func(e *env) operator.ChatRequest {
			e.fake.FailNext(1, fake.Fault{Status: 202, NoBody: true})
			return operator.ChatRequest{Text: "hi"}
		}, operator.Delivered, "", 0, "", 0},
		{"400 empty text", func(e *env) operator.ChatRequest { return operator.ChatRequest{Text: ""} },
			operator.Permanent, "bad_request", 400, "bad_request", 0},
		{"401 bad key", func(e *env) operator.ChatRequest {
			e.c.SetAPIKey("ck_live_revoked")
			return operator.ChatRequest{Text: "hi"}
		},
			operator.Unauthorized, "unauthorized", 401, "unauthorized", 0},
		{"403", func(e *env) operator.ChatRequest {
			e.fake.FailNext(1, fake.Fault{Status: 403})
			return operator.ChatRequest{Text: "hi"}
		}, operator.Forbidden, "forbidden", 403, "forbidden", 0},
		{"404 continued chat is gone", func(e *env) operator.ChatRequest {
			return operator.ChatRequest{ChatID: "chat_forgotten", Text: "hi"}
		}, operator.ChatGone, "not_found", 404, "not_found", 0},
		{"404 without id", func(e *env) operator.ChatRequest {
			e.fake.FailNext(1, fake.Fault{Status: 404})
			return operator.ChatRequest{Text: "hi"}
		}, operator.Permanent, "not_found", 404, "not_found", 0},
		{"405", func(e *env) operator.ChatRequest {
			e.fake.FailNext(1, fake.Fault{Status: 405})
			return operator.ChatRequest{Text: "hi"}
		}, operator.Permanent, "method_not_allowed", 405, "method_not_allowed", 0},
		{"409 idempotency key taken", func(e *env) operator.ChatRequest {
			if _, err := e.chat(operator.ChatRequest{Text: "hi", IdempotencyKey: "m1"}); err != nil {
				e.t.Fatal(err)
			}
			return operator.ChatRequest{Text: "hi", IdempotencyKey: "m1"}
		}, operator.Duplicate, "", 409, "idempotency_conflict", 0},
		{"429 with Retry-After seconds", func(e *env) operator.ChatRequest {
			e.fake.FailNext(1, fake.Fault{Status: 429, RetryAfter: "2"})
			return operator.ChatRequest{Text: "hi"}
		}, operator.Retry, "rate_limited", 429, "rate_limited", 2 * time.Second},
		{"429 without Retry-After", func(e *env) operator.ChatRequest {
			e.fake.FailNext(1, fake.Fault{Status: 429})
			return operator.ChatRequest{Text: "hi"}
		}, operator.Retry, "rate_limited", 429, "rate_limited", 0},
		{"429 transient false still retried", func(e *env) operator.ChatRequest {
			e.fake.FailNext(1, fake.Fault{Status: 429, Transient: boolp(false)})
			return operator.ChatRequest{Text: "hi"}
		}, operator.Retry, "rate_limited", 429, "rate_limited", 0},
		{"500", func(e *env) operator.ChatRequest {
			e.fake.FailNext(1, fake.Fault{Status: 500})
			return operator.ChatRequest{Text: "hi"}
		}, operator.Retry, "server_error", 500, "internal_error", 0},
		{"503 down with Retry-After", func(e *env) operator.ChatRequest { e.fake.SetDown(true); return operator.ChatRequest{Text: "hi"} },
			operator.Retry, "server_error", 503, "unavailable", time.Second},
		{"502 HTML body", func(e *env) operator.ChatRequest {
			e.fake.FailNext(1, fake.Fault{Status: 502, Body: "<html>Bad Gateway</html>"})
			return operator.ChatRequest{Text: "hi"}
		}, operator.Retry, "server_error", 502, "", 0},
		{"500 transient false", func(e *env) operator.ChatRequest {
			e.fake.FailNext(1, fake.Fault{Status: 500, Code: "invalid_prompt", Transient: boolp(false)})
			return operator.ChatRequest{Text: "hi"}
		}, operator.Permanent, "permanent", 500, "invalid_prompt", 0},
		{"418 transient true", func(e *env) operator.ChatRequest {
			e.fake.FailNext(1, fake.Fault{Status: 418, Transient: boolp(true)})
			return operator.ChatRequest{Text: "hi"}
		}, operator.Retry, "transient", 418, "teapot", 0},
		{"422 transient false", func(e *env) operator.ChatRequest {
			e.fake.FailNext(1, fake.Fault{Status: 422, Code: "unprocessable", Transient: boolp(false)})
			return operator.ChatRequest{Text: "hi"}
		}, operator.Permanent, "permanent", 422, "unprocessable", 0},
		{"413 without transient flag", func(e *env) operator.ChatRequest {
			e.fake.FailNext(1, fake.Fault{Status: 413, Body: `{"code":"payload_too_large","message":"too big"}`})
			return operator.ChatRequest{Text: "hi"}
		}, operator.Permanent, "permanent", 413, "payload_too_large", 0},
		{"connection dropped", func(e *env) operator.ChatRequest {
			e.fake.FailNext(5, fake.Fault{Drop: true}) // several: the transport may resend once
			return operator.ChatRequest{Text: "hi", IdempotencyKey: "m1"}
		}, operator.Retry, "network", 0, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, fake.Options{Keys: []string{key}}, operator.Options{})
			req := tt.setup(e)
			_, err := e.chat(req)
			v := operator.Classify(err, req.ChatID != "")
			if v.Outcome != tt.outcome || v.Reason != tt.reason || v.Status != tt.status || v.Code != tt.code || v.RetryAfter != tt.retryAfter {
				t.Fatalf("Classify(%v) = %+v\nwant outcome %v reason %q status %d code %q retryAfter %v",
					err, v, tt.outcome, tt.reason, tt.status, tt.code, tt.retryAfter)
			}
			if tt.outcome != operator.Delivered && v.Message == "" {
				t.Fatalf("no message for %+v", v)
			}
		})
	}
}

func TestNoBodyAnswer(t *testing.T) {
	e := newEnv(t, fake.Options{}, operator.Options{})
	e.fake.FailNext(1, fake.Fault{Status: 202, NoBody: true})
	resp, err := e.chat(operator.ChatRequest{Text: "hi"})
	if err != nil || resp.Status != 202 || resp.ChatID != "" {
		t.Fatalf("%+v %v", resp, err)
	}
	if len(e.fake.Chats()) != 1 {
		t.Fatal("202 did not take the message")
	}
}

func TestRetryAfterHTTPDate(t *testing.T) {
	e := newEnv(t, fake.Options{}, operator.Options{})
	e.fake.FailNext(1, fake.Fault{Status: 429, RetryAfter: time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)})
	_, err := e.chat(operator.ChatRequest{Text: "hi"})
	v := operator.Classify(err, false)
	// Second precision and test scheduling: a generous window.
	if v.Outcome != operator.Retry || v.RetryAfter < 55*time.Minute || v.RetryAfter > time.Hour {
		t.Fatalf("%+v", v)
	}
	e.fake.FailNext(1, fake.Fault{Status: 503, RetryAfter: "Thu, 01 Jan 2015 00:00:00 GMT"})
	_, err = e.chat(operator.ChatRequest{Text: "hi"})
	if v := operator.Classify(err, false); v.Outcome != operator.Retry || v.RetryAfter != 0 {
		t.Fatalf("past date: %+v", v)
	}
}

func TestTimeout(t *testing.T) {
	e := newEnv(t, fake.Options{}, operator.Options{Timeout: 200 * time.Millisecond})
	e.fake.SetLatency(time.Hour, time.Hour)
	_, err := e.chat(operator.ChatRequest{Text: "hi"})
	if !errors.Is(err, operator.ErrSilence) {
		t.Fatalf("err %v does not wrap ErrSilence", err)
	}
	if errors.Is(err, context.Canceled) {
		t.Fatal("a client timeout reported as the caller's cancellation")
	}
	if v := operator.Classify(err, false); v.Outcome != operator.Retry || v.Reason != "timeout" {
		t.Fatalf("%+v", v)
	}
}

func TestCallerCancel(t *testing.T) {
	e := newEnv(t, fake.Options{}, operator.Options{})
	e.fake.SetLatency(time.Hour, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for len(e.fake.Requests()) == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	_, err := e.c.Chat(ctx, operator.ChatRequest{Text: "hi"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v: not context.Canceled", err)
	}
	if v := operator.Classify(err, false); v.Outcome != operator.Retry {
		t.Fatalf("a canceled attempt must stay queued: %+v", v)
	}
}

func TestConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(fake.New(fake.Options{}))
	url := srv.URL
	srv.Close()
	c := operator.New(operator.Options{BaseURL: url, APIKey: key})
	_, err := c.Chat(context.Background(), operator.ChatRequest{Text: "hi"})
	if v := operator.Classify(err, false); v.Outcome != operator.Retry || v.Reason != "network" {
		t.Fatalf("%v: %+v", err, v)
	}
	_, err = c.Health(context.Background())
	if v := operator.Classify(err, false); v.Outcome != operator.Retry || v.Reason != "network" {
		t.Fatalf("health %v: %+v", err, v)
	}
}

func TestSSEAnswerParsed(t *testing.T) {
	reply := "Found it: the flaky test is TestUpload. Proposing a retry wrapper."
	e := newEnv(t, fake.Options{Reply: func(string, string) string { return reply }}, operator.Options{Response: operator.ResponseJSON})
	e.tap.forceSSE = true // with Response json, a server that streams anyway
	resp, err := e.chat(operator.ChatRequest{Text: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	chats := e.fake.Chats()
	if resp.Text != reply || chats[resp.ChatID] == nil {
		t.Fatalf("SSE answer %+v; chats %v", resp, chats)
	}
	resp2, err := e.chat(operator.ChatRequest{ChatID: resp.ChatID, Text: "again"})
	if err != nil || resp2.ChatID != resp.ChatID {
		t.Fatalf("continued over SSE: %+v %v", resp2, err)
	}
}

func TestMalformedSuccessCountsAsDelivered(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"not JSON", "ok, thanks"},
		{"larger than the cap", `{"text":"` + strings.Repeat("x", operator.MaxResponseBytes) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, fake.Options{}, operator.Options{})
			e.fake.FailNext(1, fake.Fault{Status: 200, Body: tt.body})
			resp, err := e.chat(operator.ChatRequest{Text: "hi"})
			var mal *operator.MalformedResponseError
			if !errors.As(err, &mal) || resp.Status != 200 {
				t.Fatalf("%+v %v", resp, err)
			}
			if v := operator.Classify(err, false); v.Outcome != operator.Delivered || v.Message == "" {
				t.Fatalf("%+v", v)
			}
		})
	}
}

func TestErrorBodyParsing(t *testing.T) {
	long := strings.Repeat("é", 2000)
	tests := []struct {
		name      string
		body      string
		code      string
		transient *bool
		message   string // prefix
		data      map[string]any
	}{
		{"documented schema", `{"code":"rate_limited","transient":true,"message":"slow down","data":{"limit":5}}`,
			"rate_limited", boolp(true), "slow down", map[string]any{"limit": 5.0}},
		{"nested under error", `{"error":{"code":"quota","transient":false,"message":"over quota"}}`,
			"quota", boolp(false), "over quota", nil},
		{"transient not a bool", `{"code":"x","transient":"yes","message":"m"}`, "x", nil, "m", nil},
		{"data not an object", `{"code":"x","message":"m","data":[1,2]}`, "x", nil, "m", map[string]any{"value": []any{1.0, 2.0}}},
		{"code not a string", `{"code":7,"transient":true,"message":"m"}`, "", boolp(true), "m", nil},
		{"not JSON", `upstream connect error`, "", nil, "", nil},
		{"empty", ``, "", nil, "", nil},
		{"long message truncated", `{"code":"x","message":"` + long + `"}`, "x", nil, strings.Repeat("é", 100), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, fake.Options{}, operator.Options{})
			e.fake.FailNext(1, fake.Fault{Status: 418, Body: tt.body, NoBody: tt.body == ""})
			_, err := e.chat(operator.ChatRequest{Text: "hi"})
			var ae *operator.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err %v is not an *APIError", err)
			}
			if ae.Status != 418 || ae.Code != tt.code || !strings.HasPrefix(ae.Message, tt.message) {
				t.Fatalf("%+v", ae)
			}
			if (ae.Transient == nil) != (tt.transient == nil) || (ae.Transient != nil && *ae.Transient != *tt.transient) {
				t.Fatalf("transient %v, want %v", ae.Transient, tt.transient)
			}
			if len(ae.Message) > 1100 {
				t.Fatalf("message of %d bytes kept", len(ae.Message))
			}
			if fmt.Sprint(ae.Data) != fmt.Sprint(tt.data) {
				t.Fatalf("data %v, want %v", ae.Data, tt.data)
			}
		})
	}
}

// TestKeyNeverInErrors makes the API echo the key back in every way it could
// and checks nothing that leaves the client carries it.
func TestKeyNeverInErrors(t *testing.T) {
	echo := fmt.Sprintf(`{"code":"bad_key_%[1]s","transient":false,"message":"key Bearer %[1]s is not valid","data":{"auth":"Bearer %[1]s","%[1]s":[%[1]q]}}`, key)
	faults := []fake.Fault{
		{Status: 400, Body: echo},
		{Status: 401, Body: echo},
		{Status: 500, Body: echo},
		{Status: 429, Body: "rate limited for " + key},
		{Drop: true},
	}
	e := newEnv(t, fake.Options{Keys: []string{key}}, operator.Options{Timeout: 300 * time.Millisecond})
	var errs []error
	for _, f := range faults {
		e.fake.FailNext(1, f)
		_, err := e.chat(operator.ChatRequest{Text: "hi"})
		errs = append(errs, err)
	}
	e.fake.SetLatency(time.Hour, time.Hour)
	_, err := e.chat(operator.ChatRequest{Text: "hi"})
	errs = append(errs, err)
	e.fake.SetLatency(0, 0)
	e.c.SetAPIKey("ck_live_wrong")
	_, err = e.c.Health(context.Background())
	errs = append(errs, err)

	for i, err := range errs {
		if err == nil {
			t.Fatalf("case %d: no error", i)
		}
		v := operator.Classify(err, false)
		var ae *operator.APIError
		if errors.As(err, &ae) && i < 3 && !strings.Contains(ae.Message+fmt.Sprint(ae.Data)+ae.Code, "[redacted]") {
			t.Fatalf("case %d: the echoed key was not where the test expects: %+v", i, ae)
		}
		for _, s := range []string{err.Error(), fmt.Sprintf("%+v %#v", err, ae), fmt.Sprintf("%+v", v)} {
			if strings.Contains(s, key) || strings.Contains(s, "ck_live_wrong") {
				t.Fatalf("case %d: key in %q", i, s)
			}
		}
	}
}

func TestHealth(t *testing.T) {
	e := newEnv(t, fake.Options{Keys: []string{key}}, operator.Options{})
	h, err := e.c.Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := operator.Health{Authenticated: true, UserID: "user_fake", PlanSlug: "pro", HasPlan: true, TokenLimit: 15000000}
	if h != want {
		t.Fatalf("%+v", h)
	}
	e.fake.SetKeys([]string{"ck_live_rotated"})
	_, err = e.c.Health(context.Background())
	if v := operator.Classify(err, false); v.Outcome != operator.Unauthorized {
		t.Fatalf("%+v", v)
	}
	e.c.SetAPIKey("ck_live_rotated")
	if _, err := e.c.Health(context.Background()); err != nil {
		t.Fatalf("after SetAPIKey: %v", err)
	}
}

// TestSetAPIKeyConcurrent swaps the key while requests run; every request
// carries one whole accepted key (run with -race).
func TestSetAPIKeyConcurrent(t *testing.T) {
	keys := []string{"ck_live_a_0000000000", "ck_live_b_1111111111"}
	e := newEnv(t, fake.Options{Keys: keys}, operator.Options{APIKey: keys[0]})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			e.c.SetAPIKey(keys[i%2])
			e.c.SetVersion(fmt.Sprint(i))
			time.Sleep(100 * time.Microsecond)
		}
	})
	var fails sync.Map
	var senders sync.WaitGroup
	for range 4 {
		senders.Go(func() {
			for range 20 {
				if _, err := e.chat(operator.ChatRequest{Text: "hi"}); err != nil {
					fails.Store(err.Error(), true)
				}
			}
		})
	}
	senders.Wait()
	cancel()
	wg.Wait()
	fails.Range(func(k, _ any) bool { t.Errorf("request failed: %v", k); return true })
	if n := len(e.fake.Requests()); n != 80 {
		t.Fatalf("%d requests", n)
	}
}

func TestClassifyTable(t *testing.T) {
	tr, fa := boolp(true), boolp(false)
	tests := []struct {
		err       error
		continued bool
		outcome   operator.Outcome
		reason    string
	}{
		{nil, false, operator.Delivered, ""},
		{&operator.APIError{Status: 200}, false, operator.Delivered, ""},
		{&operator.MalformedResponseError{Status: 200, Err: errors.New("x")}, false, operator.Delivered, ""},
		{&operator.PartialError{Status: 200, Err: io.ErrUnexpectedEOF}, true, operator.Partial, ""},
		{fmt.Errorf("x: %w", &operator.PartialError{Status: 200, Err: context.Canceled}), false, operator.Partial, ""},
		{&operator.APIError{Status: 429, Transient: fa}, false, operator.Retry, "rate_limited"},
		{fmt.Errorf("operator: %w", operator.ErrSilence), false, operator.Retry, "timeout"},
		{fmt.Errorf("operator: %w", operator.ErrTurnTooLong), false, operator.Retry, "timeout"},
		{&operator.APIError{Status: 400, Transient: tr}, false, operator.Permanent, "bad_request"},
		{&operator.APIError{Status: 401}, true, operator.Unauthorized, "unauthorized"},
		{&operator.APIError{Status: 403}, false, operator.Forbidden, "forbidden"},
		{&operator.APIError{Status: 404}, true, operator.ChatGone, "not_found"},
		{&operator.APIError{Status: 404}, false, operator.Permanent, "not_found"},
		{&operator.APIError{Status: 405}, false, operator.Permanent, "method_not_allowed"},
		{&operator.APIError{Status: 409}, false, operator.Duplicate, ""},
		{&operator.APIError{Status: 429, RetryAfter: 3 * time.Second}, false, operator.Retry, "rate_limited"},
		{&operator.APIError{Status: 500}, false, operator.Retry, "server_error"},
		{&operator.APIError{Status: 503, Transient: tr}, false, operator.Retry, "server_error"},
		{&operator.APIError{Status: 504, Transient: fa}, false, operator.Permanent, "permanent"},
		{&operator.APIError{Status: 418}, false, operator.Permanent, "permanent"},
		{&operator.APIError{Status: 418, Transient: tr}, false, operator.Retry, "transient"},
		{&operator.APIError{Status: 422, Transient: fa}, false, operator.Permanent, "permanent"},
		{&operator.APIError{Status: 302}, false, operator.Permanent, "permanent"},
		{&operator.APIError{Status: 302, Transient: tr}, false, operator.Retry, "transient"},
		{fmt.Errorf("wrapped: %w", &operator.APIError{Status: 429}), false, operator.Retry, "rate_limited"},
		{fmt.Errorf("operator: %w", context.DeadlineExceeded), false, operator.Retry, "timeout"},
		{fmt.Errorf("operator: %w", context.Canceled), false, operator.Retry, "network"},
		{errors.New("connection reset by peer"), false, operator.Retry, "network"},
	}
	for _, tt := range tests {
		v := operator.Classify(tt.err, tt.continued)
		if v.Outcome != tt.outcome || v.Reason != tt.reason {
			t.Errorf("Classify(%v, %v) = %v/%q, want %v/%q", tt.err, tt.continued, v.Outcome, v.Reason, tt.outcome, tt.reason)
		}
		switch v.Outcome {
		case operator.Retry:
			if !contains(operator.RetryReasons, v.Reason) {
				t.Errorf("retry reason %q not in RetryReasons", v.Reason)
			}
		case operator.Permanent, operator.Unauthorized, operator.Forbidden, operator.ChatGone:
			if !contains(operator.PermanentReasons, v.Reason) {
				t.Errorf("reason %q not in PermanentReasons", v.Reason)
			}
		}
	}
	if v := operator.Classify(&operator.APIError{Status: 429, RetryAfter: 3 * time.Second}, false); v.RetryAfter != 3*time.Second {
		t.Errorf("RetryAfter lost: %+v", v)
	}
	if v := operator.Classify(&operator.APIError{Status: 400, RetryAfter: 3 * time.Second}, false); v.RetryAfter != 0 {
		t.Errorf("RetryAfter kept on a permanent failure: %+v", v)
	}
}

func TestOutcomeString(t *testing.T) {
	want := map[operator.Outcome]string{
		operator.Delivered: "delivered", operator.Retry: "retry", operator.Permanent: "permanent",
		operator.Unauthorized: "unauthorized", operator.Forbidden: "forbidden",
		operator.ChatGone: "chat_gone", operator.Duplicate: "duplicate", operator.Partial: "partial",
		operator.Outcome(99): "unknown",
	}
	for o, s := range want {
		if o.String() != s {
			t.Errorf("%d.String() = %q, want %q", o, o.String(), s)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func BenchmarkChat(b *testing.B) {
	f := fake.New(fake.Options{})
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := operator.New(operator.Options{BaseURL: srv.URL, APIKey: key})
	ctx := context.Background()
	resp, err := c.Chat(ctx, operator.ChatRequest{Text: "start"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Chat(ctx, operator.ChatRequest{ChatID: resp.ChatID, Text: "CI failed on acme/api (main)"}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClassify(b *testing.B) {
	err := fmt.Errorf("dispatch: %w", &operator.APIError{Status: 503, Transient: boolp(true)})
	b.ReportAllocs()
	for b.Loop() {
		_ = operator.Classify(err, true)
	}
}
