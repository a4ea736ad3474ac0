// Package ingest is the HTTP edge: it runs each webhook through its source's compiled pipeline and answers.
//
// A request is admitted, read, verified, parsed, routed and durably queued
// before it is answered; each stage that refuses it returns an httpError,
// and serve answers and counts in one place.
package ingest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/labstack/echo/v4"

	"github.com/relayd/relayd/internal/event"
	"github.com/relayd/relayd/internal/history"
	"github.com/relayd/relayd/internal/metrics"
	"github.com/relayd/relayd/internal/payload"
	"github.com/relayd/relayd/internal/queue"
	replies "github.com/relayd/relayd/internal/reply"
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
	// Recorder keeps the history of requests; nil keeps none. An event
	// that produced messages travels with them in its queue.Batch instead.
	Recorder Recorder
}

// Handler serves every source path of the current Table.
type Handler struct {
	table    atomic.Pointer[Table]
	draining atomic.Bool
	o        Options
	chunks   chunkPool // body chunks for reuse, none over maxChunk
	budget   budget    // bytes of the bodies being read at once
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
	e.Use(h.observe)
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
	// Errors are the routes whose filter or template failed at runtime,
	// sent when no route took the event.
	Errors []string `json:"errors,omitempty"`
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// reply is a successful answer; a nil body answers with no content.
type reply struct {
	status int
	body   any
}

func ok(status int, delivery string, routes []string) reply {
	if routes == nil {
		routes = []string{}
	}
	return reply{status, answerWithRoutes{Delivery: delivery, Routes: routes}}
}

// unknownSource labels requests for paths that match no source; request
// data never becomes a label value.
const unknownSource = "unknown"

// serve answers and counts every request, in this one place; handle and
// its stages decide what the answer is.
func (h *Handler) serve(c echo.Context) error {
	t := h.table.Load()
	src := t.byPath[c.Request().URL.Path]
	name := unknownSource
	if src != nil {
		name = src.Name
	}
	rep, herr := h.handle(c, t, src)
	if herr != nil {
		if src != nil {
			h.recordRejected(c.Request(), t, src, herr)
		}
		return h.fail(c, name, herr)
	}
	h.count(name, rep.status)
	if rep.body == nil {
		return c.NoContent(rep.status)
	}
	return c.JSON(rep.status, rep.body)
}

func (h *Handler) fail(c echo.Context, source string, e *httpError) error {
	h.count(source, e.status)
	if e.reason != "" && h.o.Metrics != nil {
		h.o.Metrics.VerificationFailures.WithLabelValues(source, e.reason).Inc()
	}
	switch e.status {
	case http.StatusMethodNotAllowed:
		c.Response().Header().Set("Allow", allow)
	case http.StatusServiceUnavailable:
		c.Response().Header().Set("Retry-After", strconv.Itoa(int(h.o.RetryAfter/time.Second)))
	}
	return c.JSON(e.status, errorBody{errorDetail{Code: e.code, Message: e.msg}})
}

func (h *Handler) count(source string, status int) {
	if h.o.Metrics != nil {
		h.o.Metrics.HTTPRequests.WithLabelValues(source, strconv.Itoa(status)).Inc()
	}
}

const allow = "POST, OPTIONS"

// handle runs one request through its source's compiled pipeline: admit,
// read, verify, parse, route, enqueue. src is nil when no source has the
// path.
func (h *Handler) handle(c echo.Context, t *Table, src *Source) (reply, *httpError) {
	req := c.Request()
	switch {
	case src == nil:
		return reply{}, errNotFound
	case req.Method == http.MethodOptions:
		return handshake(c.Response().Header(), req.Header), nil
	case req.Method != http.MethodPost:
		return reply{}, errMethod
	case h.draining.Load():
		return reply{}, errDraining
	case len(src.allowNets) > 0 && !allowed(src.allowNets, peerIP(req, t.trustProxy)):
		h.o.Logger.Info("webhook rejected", "source", src.Name, "reason", "forbidden_ip", "remote", req.RemoteAddr)
		return reply{}, errForbidden
	}

	// A proof carried in the headers alone (a token) is checked before a
	// byte of the body is read: an unauthenticated sender costs no buffer.
	early := src.headerOnly != nil && src.headerOnly.HeaderOnly(req.Header)
	var res verify.Result
	if early {
		var herr *httpError
		if res, herr = h.verify(src, req, nil, h.o.Now()); herr != nil {
			if req.ContentLength != 0 {
				// The body is left unread; do not wait for it.
				c.Response().Header().Set("Connection", "close")
			}
			return reply{}, herr
		}
	}

	held := reservation{b: &h.budget, limit: t.maxInflight}
	defer held.release()
	raw, herr := h.read(&held, c.Response(), req, t)
	if herr != nil {
		return reply{}, herr
	}
	now := h.o.Now()
	if !early {
		var herr *httpError
		if res, herr = h.verify(src, req, raw, now); herr != nil {
			return reply{}, herr
		}
	}
	if res.Control != "" {
		// The sender's own control message (an SNS subscription
		// confirmation), verified and already dealt with: never routed.
		h.o.Logger.Info("control message answered", "source", src.Name, "control", res.Control)
		return ok(http.StatusOK, newID(), nil), nil
	}

	// The one copy of the body, never written again: the parsed body's
	// strings and the event's raw share it.
	text := unsafe.String(unsafe.SliceData(raw), len(raw))
	return h.pipeline(req.Context(), src, req.Header, text, res, now, req.RemoteAddr, "")
}

// pipeline runs a verified request on: parse, route, enqueue, record.
// replay, when set, is the delivery id of a replay: dedupe is bypassed.
func (h *Handler) pipeline(ctx context.Context, src *Source, hdr http.Header, text string, res verify.Result,
	now time.Time, remote, replay string) (reply, *httpError) {
	items, err := src.parser.Parse(hdr, text)
	if err != nil {
		h.o.Logger.Debug("webhook body not parseable", "source", src.Name, "remote", remote, "err", err)
		return reply{}, badBody(err.Error())
	}
	headers := flattenHeaders(hdr, src.hidden)
	delivery, dedupeKey := h.delivery(src, hdr, items, headers, text, res, now)
	if replay != "" {
		// A new delivery of its own: its messages and outcomes must not
		// be taken for the original's.
		delivery, dedupeKey = replay, ""
		for i := range items {
			items[i].Delivery = ""
		}
	}
	var rec *history.Record
	if h.o.Recorder != nil {
		rec = &history.Record{ID: history.NewID(now), Delivery: delivery, Source: src.Name, ReceivedAt: now,
			Remote: remote, Kind: history.Accepted, Headers: headers, Body: text}
		if len(items) > 0 {
			rec.Event = items[0].Event
		}
	}
	if src.pingEvent != "" && len(items) == 1 && items[0].Event == src.pingEvent {
		h.record(rec, http.StatusOK)
		return ok(http.StatusOK, delivery, nil), nil
	}

	batch := queue.Batch{DedupeKey: dedupeKey, DedupeTTL: src.dedupeTTL}
	routes, errs := h.routeAll(src, &batch, items, headers, text, delivery, now, rec)
	if len(batch.Messages) == 0 {
		h.o.Logger.Debug("event matched no route", "source", src.Name, "delivery", delivery)
		h.record(rec, http.StatusOK)
		if len(errs) > 0 {
			return reply{http.StatusOK, answerWithRoutes{Delivery: delivery, Routes: []string{}, Errors: errs}}, nil
		}
		return ok(http.StatusOK, delivery, nil), nil
	}
	if rec != nil {
		rec.Status = http.StatusAccepted
		batch.History = rec
	}
	return h.enqueue(ctx, src, batch, delivery, routes)
}

// record stores a record that travels without messages.
func (h *Handler) record(rec *history.Record, status int) {
	if rec == nil {
		return
	}
	rec.Status = status
	// The store holds it for its next write; nothing here waits on a disk.
	if err := h.o.Recorder.Record(context.Background(), *rec); err != nil {
		h.o.Logger.Warn("history: request not recorded", "source", rec.Source, "delivery", rec.Delivery, "err", err)
	}
}

// recordRejected records a request refused before it was accepted:
// never its body.
func (h *Handler) recordRejected(req *http.Request, t *Table, src *Source, e *httpError) {
	switch e.status {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusRequestTimeout,
		http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable:
	default:
		return
	}
	if h.o.Recorder == nil {
		return
	}
	now := h.o.Now()
	remote := req.RemoteAddr
	if t.trustProxy {
		if ip := peerIP(req, true); ip.IsValid() {
			remote = ip.String()
		}
	}
	h.record(&history.Record{ID: history.NewID(now), Delivery: src.headerDelivery(req.Header), Source: src.Name,
		ReceivedAt: now, Remote: remote, Kind: history.Rejected, Reason: e.code}, e.status)
}

// routeAll is the routing stage: each item becomes an event, and each
// route that takes it a message in batch. It returns the routes' names,
// and the routes whose filter or template failed.
func (h *Handler) routeAll(src *Source, batch *queue.Batch, items []payload.Item, headers map[string]string,
	text, delivery string, now time.Time, rec *history.Record) (routes, errs []string) {
	for i, it := range items {
		ev := event.Event{
			Source: src.Name, Event: it.Event, Delivery: it.Delivery, Headers: headers,
			Body: it.Body, Raw: text, ReceivedAt: now, Extra: it.Extra,
		}
		if ev.Delivery == "" {
			ev.Delivery = delivery
			if len(items) > 1 {
				ev.Delivery = delivery + "/" + strconv.Itoa(i)
			}
		}
		msgs, names, failed := h.route(src, &ev, now, rec, delivery)
		batch.Messages = append(batch.Messages, msgs...)
		routes = appendUnique(routes, names...)
		errs = appendUnique(errs, failed...)
	}
	return routes, errs
}

// read is the body stage: the body, inflated, within the size limits and
// the budget of bodies being read at once.
func (h *Handler) read(held *reservation, w http.ResponseWriter, req *http.Request, t *Table) ([]byte, *httpError) {
	raw, err := readBody(&h.chunks, held, w, req, t.maxBody, t.maxInflated)
	if err == nil {
		return raw, nil
	}
	if errors.Is(err, errNoBudget) {
		// The rest of the body is not read; do not wait for it.
		w.Header().Set("Connection", "close")
		return nil, errOverloaded
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		w.Header().Set("Connection", "close")
		return nil, errBodyTimeout
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) || errors.Is(err, errInflatedTooLarge) {
		return nil, &httpError{status: http.StatusRequestEntityTooLarge, code: "body_too_large", msg: err.Error()}
	}
	return nil, badBody("could not read body: " + err.Error())
}

// verify is the proof-of-sender stage.
func (h *Handler) verify(src *Source, req *http.Request, raw []byte, now time.Time) (verify.Result, *httpError) {
	hdr := req.Header
	res, err := src.verifier.Verify(&verify.Request{Header: hdr, Body: raw, Now: now, Context: req.Context()})
	if err == nil {
		return res, nil
	}
	if errors.Is(err, verify.ErrUnavailable) {
		// Not proven wrong: a certificate, key set or confirmation could
		// not be fetched. The sender retries.
		h.o.Logger.Warn("webhook not verified: a resource is unavailable", "source", src.Name,
			"delivery", src.headerDelivery(hdr), "remote", req.RemoteAddr, "err", err)
		return res, errVerifyUnavailable
	}
	reason := verify.ReasonMismatch
	var ve *verify.Error
	if errors.As(err, &ve) {
		reason = ve.Reason
	}
	h.o.Logger.Info("webhook rejected", "source", src.Name, "reason", reason,
		"delivery", src.headerDelivery(hdr), "remote", req.RemoteAddr)
	return res, verifyError(reason)
}

// enqueue is the durable-write stage.
func (h *Handler) enqueue(ctx context.Context, src *Source, batch queue.Batch, delivery string, routes []string) (reply, *httpError) {
	// A client that hangs up must not cancel a write that may already be
	// committed: the answer would lie about what was stored.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.o.EnqueueTimeout)
	defer cancel()
	dup, err := h.o.Store.Enqueue(ctx, batch)
	switch {
	case errors.Is(err, queue.ErrFull):
		return reply{}, errQueueFull
	case err != nil:
		h.o.Logger.Error("enqueue failed", "source", src.Name, "delivery", delivery, "err", err)
		return reply{}, errStorage
	case dup:
		h.o.Logger.Info("duplicate delivery", "source", src.Name, "delivery", delivery)
		if h.o.Metrics != nil {
			h.o.Metrics.Duplicates.WithLabelValues(src.Name).Inc()
		}
		if rec := batch.History; rec != nil {
			// The original holds the body and the outcomes; the store
			// links this one to it.
			dupRec := *rec
			dupRec.Kind, dupRec.Body, dupRec.Routes = history.Duplicate, "", nil
			h.record(&dupRec, http.StatusOK)
		}
		return reply{http.StatusOK, answer{Delivery: delivery, Duplicate: true}}, nil
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
	return ok(http.StatusAccepted, delivery, routes), nil
}

// route evaluates every route of src against ev and renders the messages.
// It returns them, the routes that took the event, and the routes whose
// filter or template failed; rec, when not nil, gets every route's outcome.
func (h *Handler) route(src *Source, ev *event.Event, now time.Time, rec *history.Record, reqDelivery string) (
	msgs []queue.Message, names, failed []string) {
	env := ev.Env()
	outcome := func(o history.RouteOutcome) {
		if rec == nil {
			return
		}
		if ev.Delivery != reqDelivery {
			o.Delivery = strings.Clone(ev.Delivery)
		}
		rec.Routes = append(rec.Routes, o)
	}
	routeError := func(r string, kind, outcomeName string, err error) {
		failed = append(failed, r)
		if h.o.Metrics != nil {
			h.o.Metrics.RouteErrors.WithLabelValues(r, kind).Inc()
		}
		outcome(history.RouteOutcome{Route: r, Outcome: outcomeName, Error: err.Error()})
	}
	for _, r := range src.Routes {
		ok, err := r.Match(env)
		if err != nil {
			h.o.Logger.Warn("filter failed; event not routed", "source", src.Name, "delivery", ev.Delivery, "route", r.Name, "err", err)
			routeError(r.Name, "filter", history.FilterError, err)
			continue
		}
		if !ok {
			outcome(history.RouteOutcome{Route: r.Name, Outcome: history.Filtered})
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
		p, err := r.Prompt(env)
		if err != nil {
			h.o.Logger.Error("template failed; event not routed", "source", src.Name, "delivery", ev.Delivery, "route", r.Name, "err", err)
			routeError(r.Name, "template", history.TemplateError, err)
			continue
		}
		if h.o.Metrics != nil {
			if p.Redactions > 0 {
				h.o.Metrics.Redactions.WithLabelValues(r.Name).Add(float64(p.Redactions))
			}
			if p.CutBytes > 0 {
				h.o.Metrics.PromptsCut.WithLabelValues(r.Name).Inc()
			}
		}
		skey, err := r.SupersedeKey(env)
		if err != nil {
			h.o.Logger.Warn("supersede expression failed; the message supersedes nothing",
				"source", src.Name, "delivery", ev.Delivery, "route", r.Name, "err", err)
			skey = ""
		}
		// Key, delivery and event may point into the request body (the
		// parsed body shares its memory); a stored message must not keep
		// the whole body alive.
		m := queue.Message{
			ID: newID(), Route: r.Name, ConversationKey: strings.Clone(key), Prompt: p.Text, SupersedeKey: strings.Clone(skey),
			Source: src.Name, Delivery: strings.Clone(ev.Delivery), Event: strings.Clone(ev.Event), EnqueuedAt: now,
		}
		if r.ReplyTarget {
			if t, ok := replies.FindTarget(ev.Body); ok {
				m.ReplyRepo, m.ReplyNumber, m.ReplySHA = strings.Clone(t.Repo), t.Number, strings.Clone(t.SHA)
			}
		}
		msgs = append(msgs, m)
		names = append(names, r.Name)
		outcome(history.RouteOutcome{Route: r.Name, Outcome: history.Queued, MessageID: m.ID,
			Conversation: m.ConversationKey, Turn: m.Prompt, QueuedAt: now})
	}
	return msgs, names, failed
}

// headerDelivery is the delivery id the sender put in a header, or "".
func (s *Source) headerDelivery(hdr http.Header) string {
	for _, name := range s.deliveryHeaders {
		if v := hdr[name]; len(v) > 0 && v[0] != "" {
			return v[0]
		}
	}
	return ""
}

// delivery is the delivery stage. It returns the id of the whole request
// (generated when the sender gave none) and the key it is deduplicated by
// ("" for none): the source's delivery expression, else the sender's
// delivery header, else the envelope's ids, else the signature's replay key.
func (h *Handler) delivery(src *Source, hdr http.Header, items []payload.Item, headers map[string]string,
	text string, res verify.Result, now time.Time) (delivery, dedupeKey string) {
	delivery = h.exprDelivery(src, items, headers, text, now)
	if delivery == "" {
		delivery = src.headerDelivery(hdr)
	}
	if delivery == "" {
		delivery = itemsDelivery(items)
	}
	switch {
	case delivery != "":
		dedupeKey = src.Name + "\x00" + delivery
	case res.ReplayKey != "":
		dedupeKey = src.Name + "\x00sig:" + res.ReplayKey
	}
	if delivery == "" {
		delivery = newID()
	}
	return delivery, dedupeKey
}

// exprDelivery evaluates the source's delivery expression on each item and,
// when every item has a value, makes them the items' delivery ids and
// returns the request's; "" otherwise, leaving the items alone.
func (h *Handler) exprDelivery(src *Source, items []payload.Item, headers map[string]string, text string, now time.Time) string {
	if src.deliveryKey == nil || len(items) == 0 {
		return ""
	}
	ids := make([]string, len(items))
	for i, it := range items {
		ev := event.Event{Source: src.Name, Event: it.Event, Headers: headers, Body: it.Body, Raw: text, ReceivedAt: now, Extra: it.Extra}
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
		items[i].Delivery = ids[i]
	}
	return itemsDelivery(items)
}

// itemsDelivery is the id of a single enveloped event, or one made of
// several events' ids together; "" when an event has none.
func itemsDelivery(items []payload.Item) string {
	if len(items) == 1 {
		return items[0].Delivery
	}
	if len(items) == 0 {
		return ""
	}
	hash := sha256.New()
	for _, it := range items {
		if it.Delivery == "" {
			return ""
		}
		io.WriteString(hash, it.Delivery)
		hash.Write([]byte{0})
	}
	return "batch-" + hex.EncodeToString(hash.Sum(nil)[:12])
}

// handshake answers the CloudEvents/Event Grid webhook validation request.
func handshake(w, req http.Header) reply {
	w.Set("Allow", allow)
	origin := req.Get("WebHook-Request-Origin")
	if origin == "" {
		return reply{status: http.StatusNoContent}
	}
	w.Set("WebHook-Allowed-Origin", origin)
	w.Set("WebHook-Allowed-Rate", "*")
	return reply{status: http.StatusOK}
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
