// Package ingest accepts webhooks: it verifies, parses, routes and durably
// queues each one before answering.
package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/relayd/relayd/internal/event"
	"github.com/relayd/relayd/internal/metrics"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/verify"
)

// Options are the collaborators of a Handler.
type Options struct {
	Store   Store
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	Now     func() time.Time
	// RetryAfter is sent with 503 answers; default 5s.
	RetryAfter time.Duration
	// EnqueueTimeout bounds one durable write; default 10s.
	EnqueueTimeout time.Duration
}

// Handler serves every source path of the current Table.
type Handler struct {
	table    atomic.Pointer[Table]
	draining atomic.Bool
	o        Options
	bufs     sync.Pool
}

// New returns a Handler serving t.
func New(t *Table, o Options) *Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = 5 * time.Second
	}
	if o.EnqueueTimeout <= 0 {
		o.EnqueueTimeout = 10 * time.Second
	}
	h := &Handler{o: o}
	h.bufs.New = func() any { return new(bytes.Buffer) }
	h.table.Store(t)
	return h
}

// Swap replaces the served config atomically (reload).
func (h *Handler) Swap(t *Table) { h.table.Store(t) }

// Drain makes every later webhook get 503, for graceful shutdown: the
// sender retries against another replica or after the restart.
func (h *Handler) Drain() { h.draining.Store(true) }

// Echo returns an Echo server whose only routes are the source paths.
func (h *Handler) Echo() *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.Any("/*", h.serve)
	e.Any("/", h.serve)
	return e
}

// answer is the JSON body of a successful ingest.
type answer struct {
	Delivery  string   `json:"delivery"`
	Routes    []string `json:"routes,omitempty"`
	Duplicate bool     `json:"duplicate,omitempty"`
}

type answerWithRoutes struct {
	Delivery string   `json:"delivery"`
	Routes   []string `json:"routes"`
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (h *Handler) fail(c echo.Context, source string, status int, code, msg string) error {
	h.count(source, status)
	if status == http.StatusServiceUnavailable {
		c.Response().Header().Set("Retry-After", strconv.Itoa(int(h.o.RetryAfter/time.Second)))
	}
	return c.JSON(status, errorBody{errorDetail{Code: code, Message: msg}})
}

func (h *Handler) count(source string, status int) {
	if h.o.Metrics != nil {
		h.o.Metrics.HTTPRequests.WithLabelValues(source, strconv.Itoa(status)).Inc()
	}
}

// unknownSource labels requests for paths that match no source; request
// data never becomes a label value.
const unknownSource = "unknown"

func (h *Handler) serve(c echo.Context) error {
	req := c.Request()
	t := h.table.Load()
	src, ok := t.byPath[req.URL.Path]
	if !ok {
		return h.fail(c, unknownSource, http.StatusNotFound, "not_found", "no source at this path")
	}
	if req.Method == http.MethodOptions {
		return h.handshake(c, src)
	}
	if req.Method != http.MethodPost {
		c.Response().Header().Set("Allow", "POST, OPTIONS")
		return h.fail(c, src.Name, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
	}
	if h.draining.Load() {
		return h.fail(c, src.Name, http.StatusServiceUnavailable, "shutting_down", "relayd is shutting down; retry later")
	}
	if len(src.AllowNets) > 0 && !allowed(src.AllowNets, peerIP(req, t.trustProxy)) {
		h.verifyFailed(src, "forbidden_ip")
		return h.fail(c, src.Name, http.StatusForbidden, "forbidden", "sender address not allowed")
	}

	buf := h.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer h.bufs.Put(buf)
	if err := readBody(buf, c.Response(), req, t.maxBody, t.maxInflated); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) || errors.Is(err, errInflatedTooLarge) {
			return h.fail(c, src.Name, http.StatusRequestEntityTooLarge, "body_too_large", err.Error())
		}
		return h.fail(c, src.Name, http.StatusBadRequest, "invalid_body", "could not read body: "+err.Error())
	}
	raw := buf.Bytes()

	now := h.o.Now()
	res, err := src.Verifier.Verify(&verify.Request{Header: req.Header, Body: raw, Now: now, Context: req.Context()})
	if errors.Is(err, verify.ErrUnavailable) {
		// Not proven wrong: a certificate, key set or confirmation could
		// not be fetched. The sender retries.
		h.o.Logger.Warn("webhook not verified: a resource is unavailable", "source", src.Name, "err", err)
		return h.fail(c, src.Name, http.StatusServiceUnavailable, "verify_unavailable", "could not verify the request now; retry later")
	}
	if err != nil {
		reason, code := "mismatch", "signature_mismatch"
		var ve *verify.Error
		if errors.As(err, &ve) {
			reason = ve.Reason
			code = verifyCodes[ve.Reason]
		}
		h.verifyFailed(src, reason)
		h.o.Logger.Info("webhook rejected", "source", src.Name, "reason", reason,
			"delivery", req.Header.Get(src.DeliveryHeader))
		return h.fail(c, src.Name, http.StatusUnauthorized, code, verifyMessages[reason])
	}
	if res.Control != "" { // e.g. an SNS subscription confirmation, already dealt with
		h.o.Logger.Info("control message answered", "source", src.Name, "control", res.Control)
		h.count(src.Name, http.StatusOK)
		return c.JSON(http.StatusOK, answerWithRoutes{Delivery: newID(), Routes: []string{}})
	}

	// The one copy of the body: it outlives the pooled buffer, and the
	// parsed body's strings and the event's raw share it.
	text := string(raw)
	items, err := h.parse(src, req.Header, text)
	if err != nil {
		return h.fail(c, src.Name, http.StatusBadRequest, "invalid_body", err.Error())
	}

	headers := flattenHeaders(req.Header, src.hidden)
	delivery := h.exprDelivery(src, items, headers, now)
	if delivery == "" {
		delivery = requestDelivery(src, req.Header, items)
	}
	dedupeKey := ""
	if delivery != "" {
		dedupeKey = src.Name + "\x00" + delivery
	} else if res.ReplayKey != "" {
		dedupeKey = src.Name + "\x00sig:" + res.ReplayKey
	}
	if delivery == "" {
		delivery = newID()
	}

	if src.VerifyType == "github" && len(items) == 1 && items[0].event == "ping" {
		h.count(src.Name, http.StatusOK)
		return c.JSON(http.StatusOK, answerWithRoutes{Delivery: delivery, Routes: []string{}})
	}

	batch := queue.Batch{DedupeKey: dedupeKey, DedupeTTL: src.DedupeTTL}
	var routes []string
	for i, it := range items {
		ev := event.Event{
			Source: src.Name, Event: it.event, Delivery: it.delivery, Headers: headers,
			Body: it.body, ReceivedAt: now, Extra: it.extra,
		}
		if ev.Delivery == "" {
			ev.Delivery = delivery
			if len(items) > 1 {
				ev.Delivery = delivery + "/" + strconv.Itoa(i)
			}
		}
		msgs, names := h.route(src, &ev, text, now)
		batch.Messages = append(batch.Messages, msgs...)
		routes = appendUnique(routes, names...)
	}
	if len(batch.Messages) == 0 {
		h.count(src.Name, http.StatusOK)
		return c.JSON(http.StatusOK, answerWithRoutes{Delivery: delivery, Routes: []string{}})
	}

	// A client that hangs up must not cancel a write that may already be
	// committed: the answer would lie about what was stored.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), h.o.EnqueueTimeout)
	defer cancel()
	dup, err := h.o.Store.Enqueue(ctx, batch)
	switch {
	case errors.Is(err, queue.ErrFull):
		return h.fail(c, src.Name, http.StatusServiceUnavailable, "queue_full", "too many messages pending; retry later")
	case err != nil:
		h.o.Logger.Error("enqueue failed", "source", src.Name, "delivery", delivery, "err", err)
		return h.fail(c, src.Name, http.StatusServiceUnavailable, "storage_unavailable", "storage unavailable; retry later")
	case dup:
		h.o.Logger.Info("duplicate delivery", "source", src.Name, "delivery", delivery)
		h.count(src.Name, http.StatusOK)
		return c.JSON(http.StatusOK, answer{Delivery: delivery, Duplicate: true})
	}
	for _, m := range batch.Messages {
		if h.o.Metrics != nil {
			h.o.Metrics.MessagesEnqueued.WithLabelValues(m.Route).Inc()
		}
		// Debug: one line per webhook is a write per request on the hot
		// path; the dispatcher logs each delivery and metrics count these.
		h.o.Logger.Debug("message queued", "source", src.Name, "delivery", m.Delivery,
			"route", m.Route, "message_id", m.ID, "event", m.Event)
	}
	h.count(src.Name, http.StatusAccepted)
	return c.JSON(http.StatusAccepted, answerWithRoutes{Delivery: delivery, Routes: routes})
}

var verifyCodes = map[string]string{
	"missing":   "signature_missing",
	"mismatch":  "signature_mismatch",
	"stale":     "timestamp_stale",
	"malformed": "signature_malformed",
}

// Fixed texts: a message never echoes a secret or a signature.
var verifyMessages = map[string]string{
	"missing":   "signature or token missing",
	"mismatch":  "signature or token does not match",
	"stale":     "timestamp outside the allowed tolerance",
	"malformed": "signature header malformed",
}

func (h *Handler) verifyFailed(src *Source, reason string) {
	if h.o.Metrics != nil {
		h.o.Metrics.VerificationFailures.WithLabelValues(src.Name, reason).Inc()
	}
}

// route evaluates every route of src against ev, whose raw body is text,
// and renders the messages.
func (h *Handler) route(src *Source, ev *event.Event, text string, now time.Time) ([]queue.Message, []string) {
	// ev carries no Raw: Env would copy it into a new string; the env gets
	// the text the body was parsed from instead.
	env := ev.Env()
	env["raw"] = text
	var msgs []queue.Message
	var names []string
	for _, r := range src.Routes {
		ok, err := r.Match(env)
		if err != nil {
			h.o.Logger.Warn("filter failed; event not routed", "source", src.Name, "delivery", ev.Delivery, "route", r.Name, "err", err)
		}
		if !ok {
			if h.o.Metrics != nil {
				h.o.Metrics.EventsFiltered.WithLabelValues(r.Name).Inc()
			}
			continue
		}
		key, err := r.ConversationKey(env)
		if err != nil {
			h.o.Logger.Warn("conversation expression failed; using the route's default conversation",
				"source", src.Name, "delivery", ev.Delivery, "route", r.Name, "err", err)
			key = ""
		}
		prompt, err := r.Render(env)
		if err != nil {
			h.o.Logger.Error("template failed; event not routed", "source", src.Name, "delivery", ev.Delivery, "route", r.Name, "err", err)
			continue
		}
		// Key, delivery and event may point into the request body (the
		// parsed body shares its memory); a stored message must not keep
		// the whole body alive.
		msgs = append(msgs, queue.Message{
			ID: newID(), Route: r.Name, ConversationKey: strings.Clone(key), Prompt: prompt,
			Source: src.Name, Delivery: strings.Clone(ev.Delivery), Event: strings.Clone(ev.Event), EnqueuedAt: now,
		})
		names = append(names, r.Name)
	}
	return msgs, names
}

// parse turns the verified body into one or more events.
func (h *Handler) parse(src *Source, hdr http.Header, raw string) ([]item, error) {
	ct := hdr.Get("Content-Type")
	base := item{event: hdr.Get(src.EventHeader)}
	if src.EventHeader == "" {
		base.event = ""
	}

	// CloudEvents binary mode: attributes in ce- headers, data in the body.
	if hdr.Get("Ce-Specversion") != "" {
		attrs, err := cloudEventBinary(hdr)
		if err != nil {
			return nil, err
		}
		body, err := parseBody(src.BodyMode, ct, raw)
		if err != nil && isJSONType(ct) {
			return nil, fmt.Errorf("CloudEvent data: %w", err)
		}
		if err != nil {
			body = raw
		}
		return []item{{event: attrs["type"].(string), delivery: attrs["id"].(string), body: body,
			extra: map[string]any{"ce": attrs}}}, nil
	}
	switch mediaType(ct) {
	case "application/cloudevents+json":
		v, err := parseJSONText(raw)
		if err != nil {
			return nil, fmt.Errorf("CloudEvent: %w", err)
		}
		it, err := cloudEventStructured(v)
		if err != nil {
			return nil, err
		}
		return []item{it}, nil
	case "application/cloudevents-batch+json":
		v, err := parseJSONText(raw)
		if err != nil {
			return nil, fmt.Errorf("CloudEvents batch: %w", err)
		}
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("%w: CloudEvents batch is not an array", errBadEnvelope)
		}
		items := make([]item, 0, len(list))
		for _, e := range list {
			it, err := cloudEventStructured(e)
			if err != nil {
				return nil, err
			}
			items = append(items, it)
		}
		return items, nil
	}

	mode := src.BodyMode
	if src.Unwrap != "" {
		mode = "json"
	}
	body, err := parseBody(mode, ct, raw)
	if err != nil {
		return nil, fmt.Errorf("body is not valid JSON: %w", err)
	}
	switch src.Unwrap {
	case "s3":
		return unwrapS3(body)
	case "pubsub":
		return unwrapPubSub(body)
	case "cloudevents":
		it, err := cloudEventStructured(body)
		if err != nil {
			return nil, err
		}
		return []item{it}, nil
	}
	base.body = body
	return []item{base}, nil
}

func isJSONType(ct string) bool {
	mt := mediaType(ct)
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// requestDelivery is the sender's id for the whole request: a delivery
// header, GitLab's Idempotency-Key, or the id of a single enveloped event.
func requestDelivery(src *Source, hdr http.Header, items []item) string {
	if src.DeliveryHeader != "" {
		if d := hdr.Get(src.DeliveryHeader); d != "" {
			return d
		}
	}
	if src.VerifyType == "gitlab" {
		if d := hdr.Get("Idempotency-Key"); d != "" {
			return d
		}
	}
	if len(items) == 1 {
		return items[0].delivery
	}
	// Several enveloped events: their ids together identify the request.
	hash := sha256.New()
	for _, it := range items {
		if it.delivery == "" {
			return ""
		}
		io.WriteString(hash, it.delivery)
		hash.Write([]byte{0})
	}
	if len(items) == 0 {
		return ""
	}
	return "batch-" + hex.EncodeToString(hash.Sum(nil)[:12])
}

// exprDelivery evaluates the source's delivery expression on each item and,
// when every item has a value, makes them the items' delivery ids and
// returns the request's; "" otherwise, leaving the items alone.
func (h *Handler) exprDelivery(src *Source, items []item, headers map[string]string, now time.Time) string {
	if src.deliveryKey == nil || len(items) == 0 {
		return ""
	}
	ids := make([]string, len(items))
	for i, it := range items {
		ev := event.Event{Source: src.Name, Event: it.event, Headers: headers, Body: it.body, ReceivedAt: now, Extra: it.extra}
		id, err := src.deliveryKey.Eval(ev.Env())
		if err != nil {
			h.o.Logger.Debug("delivery expression failed", "source", src.Name, "err", err)
			return ""
		}
		if id == "" {
			return ""
		}
		ids[i] = id
	}
	for i := range items {
		items[i].delivery = ids[i]
	}
	// With the header rules off, requestDelivery combines the items' ids.
	return requestDelivery(&Source{}, nil, items)
}

// handshake answers the CloudEvents/Event Grid webhook validation request.
func (h *Handler) handshake(c echo.Context, src *Source) error {
	origin := c.Request().Header.Get("WebHook-Request-Origin")
	if origin == "" {
		c.Response().Header().Set("Allow", "POST, OPTIONS")
		h.count(src.Name, http.StatusNoContent)
		return c.NoContent(http.StatusNoContent)
	}
	c.Response().Header().Set("WebHook-Allowed-Origin", origin)
	c.Response().Header().Set("WebHook-Allowed-Rate", "*")
	c.Response().Header().Set("Allow", "POST, OPTIONS")
	h.count(src.Name, http.StatusOK)
	return c.NoContent(http.StatusOK)
}

var errInflatedTooLarge = errors.New("inflated body exceeds the limit")

// readBody reads the request body into buf through a limiting reader, so
// an oversized body is refused without being held in memory first.
func readBody(buf *bytes.Buffer, w http.ResponseWriter, req *http.Request, maxBody, maxInflated int64) error {
	if req.ContentLength > maxBody {
		return &http.MaxBytesError{Limit: maxBody}
	}
	body := http.MaxBytesReader(w, req.Body, maxBody)
	var r io.Reader = body
	switch strings.ToLower(req.Header.Get("Content-Encoding")) {
	case "", "identity":
		if req.ContentLength > 0 {
			buf.Grow(int(req.ContentLength))
		}
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		r = io.LimitReader(zr, maxInflated+1)
	default:
		return fmt.Errorf("unsupported Content-Encoding %q", req.Header.Get("Content-Encoding"))
	}
	n, err := buf.ReadFrom(r)
	if err != nil {
		return err
	}
	if n > maxInflated {
		return errInflatedTooLarge
	}
	return nil
}

func flattenHeaders(h http.Header, hidden map[string]bool) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		lk := strings.ToLower(k)
		if len(v) == 0 || hidden[lk] {
			continue
		}
		out[lk] = v[0]
	}
	return out
}

func peerIP(r *http.Request, trustProxy bool) netip.Addr {
	if trustProxy {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			// The last entry is the one our own proxy added; earlier ones
			// are whatever the client claimed.
			parts := strings.Split(xff[len(xff)-1], ",")
			if ip, err := netip.ParseAddr(strings.TrimSpace(parts[len(parts)-1])); err == nil {
				return ip.Unmap()
			}
		}
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func allowed(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func appendUnique(list []string, names ...string) []string {
	for _, n := range names {
		found := false
		for _, l := range list {
			if l == n {
				found = true
				break
			}
		}
		if !found {
			list = append(list, n)
		}
	}
	return list
}

// newID returns a unique, roughly time-ordered id: 12 hex digits of
// milliseconds, then 26 random base32 characters.
func newID() string {
	return strconv.FormatInt(time.Now().UnixMilli(), 16) + "-" + rand.Text()
}
