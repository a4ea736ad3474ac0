package operator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"time"
)

const (
	// DefaultBaseURL is the Operator API's public address.
	DefaultBaseURL = "https://operator.io"
	// DefaultTimeout is the longest silence allowed while waiting for an
	// answer, and the bound on a whole Health call.
	DefaultTimeout = 60 * time.Second
	// DefaultMaxTurn caps a whole turn, however steadily it streams.
	DefaultMaxTurn = 30 * time.Minute
	// MaxResponseBytes caps how much of an answer is read, so a broken or
	// hostile server cannot make relayd buffer without bound.
	MaxResponseBytes = 4 << 20
	// maxMessageLen caps the API's human message kept in errors and logs.
	maxMessageLen = 1024
)

// Response formats for Options.Response.
const (
	// ResponseStream reads the answer as SSE, the API's default: a long
	// turn shows progress, so only silence ends it.
	ResponseStream = "stream"
	// ResponseJSON sends x-response-format: json: nothing arrives until
	// the turn ends, so Timeout bounds the whole turn.
	ResponseJSON = "json"
)

// Options configures a Client. Only APIKey is required.
type Options struct {
	BaseURL  string // default DefaultBaseURL
	APIKey   string // sent as Authorization: Bearer; never logged
	Version  string // sent as Operator-Version when not empty
	Response string // ResponseStream (default) or ResponseJSON
	// Timeout is the longest silence allowed in a Chat: no byte of the
	// answer (status line included) for that long ends the attempt. It
	// also bounds a whole Health call. Default DefaultTimeout.
	Timeout time.Duration
	// MaxTurn caps a whole Chat, answer included. Default DefaultMaxTurn.
	MaxTurn    time.Duration
	HTTPClient *http.Client // default: a pooled client sized for dispatch
	UserAgent  string       // default "relayd"
}

// Client calls the Operator API. It is safe for concurrent use; the key and
// version can be swapped while requests run (config reload).
type Client struct {
	base    string
	timeout time.Duration
	maxTurn time.Duration
	json    bool
	hc      *http.Client
	ua      string
	key     atomic.Pointer[string]
	version atomic.Pointer[string]

	// What every chat request shares, made once (see chatRequest): the
	// parsed URL, and header values (net/http only reads them).
	chatURL  *http.Request // nil when the base URL does not parse
	uaValue  []string
	auth     atomic.Pointer[headerValue] // "Bearer " + the key
	verValue atomic.Pointer[headerValue] // nil values: none sent
	now      func() time.Time            // for Retry-After dates; replaced in tests
}

// New returns a Client. It does not contact the API; use Health for that.
func New(o Options) *Client {
	c := &Client{
		base:    strings.TrimRight(o.BaseURL, "/"),
		timeout: o.Timeout,
		maxTurn: o.MaxTurn,
		json:    o.Response == ResponseJSON,
		hc:      o.HTTPClient,
		ua:      o.UserAgent,
		now:     time.Now,
	}
	if c.base == "" {
		c.base = DefaultBaseURL
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.maxTurn <= 0 {
		c.maxTurn = DefaultMaxTurn
	}
	if c.ua == "" {
		c.ua = "relayd"
	}
	if c.hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		// Dispatch keeps up to operator.concurrency requests open to one
		// host; the default of 2 idle connections would churn handshakes.
		tr.MaxIdleConnsPerHost = 128
		c.hc = &http.Client{Transport: tr}
	}
	c.uaValue = []string{c.ua}
	if r, err := http.NewRequest(http.MethodPost, c.base+"/api/chat", nil); err == nil {
		c.chatURL = r
	}
	c.SetAPIKey(o.APIKey)
	c.SetVersion(o.Version)
	return c
}

// headerValue is a header's value, made once for every request.
type headerValue struct {
	of     string
	values []string
}

// SetAPIKey replaces the key used by the next requests (hot reload).
func (c *Client) SetAPIKey(key string) {
	c.key.Store(&key)
	c.auth.Store(&headerValue{of: key, values: []string{"Bearer " + key}})
}

// SetVersion replaces the Operator-Version sent ("" sends none).
func (c *Client) SetVersion(v string) {
	c.version.Store(&v)
	hv := &headerValue{of: v}
	if v != "" {
		hv.values = []string{v}
	}
	c.verValue.Store(hv)
}

func (c *Client) apiKey() string { return *c.key.Load() }

// chatBody is POST /api/chat's request body.
type chatBody struct {
	ID       string        `json:"id,omitempty"`
	Messages []chatMessage `json:"messages"`
}

type chatMessage struct {
	Role  string     `json:"role"`
	Parts []chatPart `json:"parts"`
}

type chatPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// Chat sends one user message. r.ChatID "" starts a new conversation; the
// answer's ChatID continues it. Failures are *APIError for non-2xx answers,
// *MalformedResponseError for a 2xx whose body could not be read as an
// answer, *PartialError for a 2xx answer cut off before its end, and
// wrapped transport errors otherwise; pass any of them to Classify.
//
// The response carries the chat id whenever the API named one: in a 2xx
// answer, in the part of a cut answer that arrived (then Partial is set),
// or in a 409's error body (data.chatId), the chat an earlier attempt with
// the same key went to.
//
// An attempt ends when the answer is silent for the client's Timeout
// (before the status line too) or the whole turn outlasts MaxTurn. Once a
// 2xx status line has arrived the turn is never to be sent again: a failure
// after it is a *PartialError, never a transport error.
//
// With an IdempotencyKey set, net/http may itself resend the request once
// when a reused keep-alive connection turns out to be closed by the server
// before any answer; the key is what makes that (and every retry by the
// caller) safe.
func (c *Client) Chat(ctx context.Context, r ChatRequest) (ChatResponse, error) {
	// The body is kept until the answer is in (net/http may send it
	// again on a connection found closed): a buffer of its own.
	body := appendChatBody(make([]byte, 0, len(r.ChatID)+len(r.Text)+80), r.ChatID, r.Text)
	ctx, cancelTurn := context.WithTimeoutCause(ctx, c.maxTurn, ErrTurnTooLong)
	defer cancelTurn()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	quiet := newSilence(c.timeout, func() { cancel(ErrSilence) })
	defer quiet.stop()
	// The silence is the server's: it counts from when the request is out.
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { quiet.poke() }})

	req, key, err := c.chatRequest(ctx, body, r.IdempotencyKey)
	if err != nil {
		return ChatResponse{}, fmt.Errorf("operator: build chat request: %w", err)
	}

	resp, err := c.hc.Do(req)
	if err != nil {
		return ChatResponse{}, fmt.Errorf("operator: POST /api/chat: %w", ended(ctx, err, key))
	}
	quiet.poke()
	resp.Body = &pokeReader{ReadCloser: resp.Body, s: quiet}
	defer closeBody(resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ae := c.apiError(resp, key)
		return ChatResponse{Status: resp.StatusCode, ChatID: ae.ChatID}, ae
	}
	out, err := readChat(resp)
	if err != nil {
		var mal *MalformedResponseError
		if errors.As(err, &mal) {
			return out, err
		}
		// The answer has begun: the API took the message.
		out.Partial = true
		return out, &PartialError{Status: resp.StatusCode, ChatID: out.ChatID, Err: ended(ctx, err, key)}
	}
	return out, nil
}

// ErrSilence ends an attempt whose answer was silent for longer than the
// client's Timeout; ErrTurnTooLong one that outlasted MaxTurn. Classify
// counts both as timeouts.
var (
	ErrSilence     = errors.New("no answer for longer than the timeout")
	ErrTurnTooLong = errors.New("turn longer than max_turn")
)

// ended explains a transport or read error: the client's own silence or
// turn limit when that is what cut it, else the error itself (scrubbed).
// Only the caller's own cancellation keeps context.Canceled in the chain.
func ended(ctx context.Context, err error, key string) error {
	if cause := context.Cause(ctx); errors.Is(cause, ErrSilence) || errors.Is(cause, ErrTurnTooLong) {
		return fmt.Errorf("%w (%v)", cause, scrub(err, key))
	}
	return scrub(err, key)
}

// PartialError is a 2xx answer cut off before its end: the stream broke,
// went silent, or outlasted MaxTurn after the status line. The API took
// the message and the agent is working on it, so it must not be sent
// again; Classify says Partial. The ChatResponse returned with it holds
// the text received so far and the chat id when it was seen.
type PartialError struct {
	Status int
	ChatID string
	Err    error
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("operator: HTTP %d answer cut off: %v", e.Status, e.Err)
}

func (e *PartialError) Unwrap() error { return e.Err }

// silence ends an attempt when poke has not been called for d.
type silence struct {
	d time.Duration
	t *time.Timer
}

func newSilence(d time.Duration, fire func()) *silence {
	return &silence{d: d, t: time.AfterFunc(d, fire)}
}

func (s *silence) poke() { s.t.Reset(s.d) }
func (s *silence) stop() { s.t.Stop() }

// pokeReader counts every byte of the answer body as a sign of life.
type pokeReader struct {
	io.ReadCloser
	s *silence
}

func (p *pokeReader) Read(b []byte) (int, error) {
	n, err := p.ReadCloser.Read(b)
	if n > 0 {
		p.s.poke()
	}
	return n, err
}

// Health calls GET /api/cli/health, the cheap way to check a key. A key the
// API refuses is an *APIError with Status 401 (Classify: Unauthorized); a
// 200 answer is returned as is, so callers also check Authenticated.
func (c *Client) Health(ctx context.Context) (Health, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/cli/health", nil)
	if err != nil {
		return Health{}, fmt.Errorf("operator: build health request: %w", err)
	}
	key := c.setHeaders(req)
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return Health{}, fmt.Errorf("operator: GET /api/cli/health: %w", scrub(err, key))
	}
	defer closeBody(resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Health{}, c.apiError(resp, key)
	}
	raw, err := readCapped(resp.Body)
	if err != nil {
		return Health{}, fmt.Errorf("operator: read health answer: %w", scrub(err, key))
	}
	var h Health
	if err := json.Unmarshal(raw, &h); err != nil {
		return Health{}, &MalformedResponseError{Status: resp.StatusCode, Err: err}
	}
	return h, nil
}

// Header values of every chat request.
var (
	hvJSON         = []string{"application/json"}
	hvAcceptStream = []string{"text/event-stream, application/json"}
	hvAcceptJSON   = []string{"application/json, text/event-stream"}
	hvFormatJSON   = []string{"json"}
)

// chatRequest is a POST /api/chat of body, with the headers setHeaders and
// Chat set, built from what every chat request shares: what
// http.NewRequestWithContext and Header.Set would make, without parsing
// the URL and allocating the header values again for each request.
func (c *Client) chatRequest(ctx context.Context, body []byte, idempotencyKey string) (*http.Request, string, error) {
	auth, ver := c.auth.Load(), c.verValue.Load()
	if c.chatURL == nil {
		// The base URL does not parse: NewRequestWithContext says why.
		_, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/api/chat", bytes.NewReader(body))
		return nil, "", err
	}
	h := make(http.Header, 8)
	h["Authorization"] = auth.values
	h["User-Agent"] = c.uaValue
	if ver.values != nil {
		h["Operator-Version"] = ver.values
	}
	h["Content-Type"] = hvJSON
	if c.json {
		h["Accept"] = hvAcceptJSON
		h["X-Response-Format"] = hvFormatJSON
	} else {
		h["Accept"] = hvAcceptStream
	}
	if idempotencyKey != "" {
		h["Idempotency-Key"] = []string{idempotencyKey}
	}
	u := *c.chatURL.URL
	req := &http.Request{
		Method: http.MethodPost, URL: &u, Host: c.chatURL.Host,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h,
		Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
		GetBody: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
	}
	if len(body) == 0 {
		req.Body, req.GetBody = http.NoBody, func() (io.ReadCloser, error) { return http.NoBody, nil }
	}
	return req.WithContext(ctx), auth.of, nil
}

// setHeaders sets the headers every request carries and returns the key it
// used, so errors can be scrubbed of exactly that key.
func (c *Client) setHeaders(req *http.Request) string {
	key := c.apiKey()
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("User-Agent", c.ua)
	if v := *c.version.Load(); v != "" {
		req.Header.Set("Operator-Version", v)
	}
	return key
}

// readChat turns a 2xx answer into a ChatResponse: SSE, JSON, or no body
// at all (202). A read error returns what arrived so far.
func readChat(resp *http.Response) (ChatResponse, error) {
	out := ChatResponse{Status: resp.StatusCode, ChatID: resp.Header.Get("X-Chat-Id")}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "text/event-stream" {
		ev, err := parseSSE(resp.Body)
		if ev.ChatID != "" {
			out.ChatID = ev.ChatID
		}
		out.Text = ev.Text
		if err != nil {
			return out, fmt.Errorf("read chat stream: %w", err)
		}
		return out, nil
	}
	raw, err := readCapped(resp.Body)
	if errors.Is(err, errTooLarge) {
		return out, &MalformedResponseError{Status: resp.StatusCode, Err: err}
	}
	if err != nil {
		return out, fmt.Errorf("read chat answer: %w", err)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return out, nil // 202 Accepted (or any 2xx) without a body
	}
	var ans struct {
		Text string `json:"text"`
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return out, &MalformedResponseError{Status: resp.StatusCode, Err: err}
	}
	if err := json.Unmarshal(raw, &ans); err != nil {
		return out, &MalformedResponseError{Status: resp.StatusCode, Err: err}
	}
	if id := chatIDOf(obj, "id"); id != "" {
		out.ChatID = id
	}
	out.Text = ans.Text
	return out, nil
}

// apiError reads a non-2xx answer's error body. Bodies that are not the
// API's JSON error schema still give an *APIError with the status.
func (c *Client) apiError(resp *http.Response, key string) *APIError {
	e := &APIError{Status: resp.StatusCode}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		e.RetryAfter, _ = ParseRetryAfter(ra, c.now())
	}
	raw, _ := readCapped(resp.Body) // a cut error body still leaves the status
	parseErrorBody(raw, e)
	e.Code = redact(e.Code, key)
	e.Message = truncate(redact(e.Message, key), maxMessageLen)
	if e.Data != nil {
		e.Data = redactValue(e.Data, key).(map[string]any)
		e.ChatID = chatIDIn(e.Data)
	}
	return e
}

// parseErrorBody fills e from {"code","transient","message","data"}, also
// accepting the same object nested under "error". Each field is decoded on
// its own so one odd field does not lose the others.
func parseErrorBody(raw []byte, e *APIError) {
	var top map[string]json.RawMessage
	if json.Unmarshal(raw, &top) != nil {
		return
	}
	if nested, ok := top["error"]; ok {
		var inner map[string]json.RawMessage
		if json.Unmarshal(nested, &inner) == nil {
			top = inner
		}
	}
	var s string
	if json.Unmarshal(top["code"], &s) == nil {
		e.Code = s
	}
	s = ""
	if json.Unmarshal(top["message"], &s) == nil {
		e.Message = s
	}
	var b bool
	if json.Unmarshal(top["transient"], &b) == nil {
		e.Transient = &b
	}
	if d, ok := top["data"]; ok {
		var m map[string]any
		var v any
		switch {
		case json.Unmarshal(d, &m) == nil && m != nil:
			e.Data = m
		case json.Unmarshal(d, &v) == nil && v != nil:
			e.Data = map[string]any{"value": v}
		}
	}
}

// MalformedResponseError is a 2xx answer whose body was not an answer. The
// API did take the message, so Classify counts it as delivered (without a
// chat id) rather than sending the prompt again.
type MalformedResponseError struct {
	Status int
	Err    error
}

func (e *MalformedResponseError) Error() string {
	return fmt.Sprintf("operator: HTTP %d with an unreadable answer: %v", e.Status, e.Err)
}

func (e *MalformedResponseError) Unwrap() error { return e.Err }

var errTooLarge = fmt.Errorf("answer larger than %d bytes", MaxResponseBytes)

// readCapped reads at most MaxResponseBytes; a longer body is errTooLarge
// rather than a silently truncated answer.
func readCapped(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxResponseBytes+1))
	if err != nil {
		return b, err
	}
	if len(b) > MaxResponseBytes {
		return b[:MaxResponseBytes], errTooLarge
	}
	return b, nil
}

// closeBody drains a little of what is left so the connection can be reused,
// without reading an unbounded body.
func closeBody(b io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(b, 64<<10))
	_ = b.Close()
}

// scrub removes the key from an error's text while keeping the chain for
// errors.Is / errors.As. Transport errors do not carry headers, so this is a
// second line of defence that only rewrites when the key actually appears.
func scrub(err error, key string) error {
	if err == nil || key == "" || !strings.Contains(err.Error(), key) {
		return err
	}
	return &redactedError{msg: redact(err.Error(), key), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

const redacted = "[redacted]"

func redact(s, key string) string {
	if key == "" {
		return s
	}
	return strings.ReplaceAll(s, key, redacted)
}

// redactValue scrubs the key from every string in a decoded JSON value, since
// an API that echoes a request back could put it anywhere in "data".
func redactValue(v any, key string) any {
	switch t := v.(type) {
	case string:
		return redact(t, key)
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[redact(k, key)] = redactValue(x, key)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = redactValue(x, key)
		}
		return out
	default:
		return v
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary so the message stays valid UTF-8.
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
