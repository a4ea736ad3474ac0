package ingest

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/relayd/relayd/internal/payload"
	"github.com/relayd/relayd/internal/route"
	"github.com/relayd/relayd/internal/verify"
)

// Spec is what ingest serves, as the config loader checked it.
type Spec struct {
	MaxBody     int64 // bytes on the wire
	MaxInflated int64 // bytes after gzip; at least MaxBody
	TrustProxy  bool  // take the peer from X-Forwarded-For
	DedupeTTL   time.Duration
	Sources     []SourceSpec
	Routes      []route.Spec

	// MaxInflight bounds the bytes of all bodies being read at once
	// (past it: 503 overloaded); 0 for DefaultMaxInflight.
	MaxInflight int64
}

// SourceSpec is one endpoint.
type SourceSpec struct {
	Name           string
	Path           string
	Verify         verify.Spec
	EventHeader    string // "" for the sender's default
	DeliveryHeader string // "" for the sender's default
	Body           payload.Mode
	Envelope       payload.Envelope
	DedupeTTL      time.Duration // 0 for Spec.DedupeTTL
	AllowNets      []netip.Prefix
	// Delivery is an expression giving the delivery id from the event
	// ("body.id"); "" for the sender's default, if any.
	Delivery string
}

// DefaultMaxInflight is the budget of bodies being read at once when the
// config sets none: 32 bodies of the largest size, at most 32 MiB, and
// never less than one inflated body. The Go heap may grow to twice what is
// live between collections, so 32 MiB of bodies keeps relayd well inside
// 128 MiB (measured with bench -mode trickle).
func DefaultMaxInflight(maxBody, maxInflated int64) int64 {
	return max(min(32*maxBody, 32<<20), maxInflated)
}

// FieldError is a part of the Spec that does not compile. Field is its path
// in the config ("sources[1].verify", "routes[2].filter").
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Table is everything ingest needs from one config, compiled. It is
// swapped whole on reload, so a request sees one consistent config.
type Table struct {
	byPath      map[string]*Source
	sources     []*Source
	maxBody     int64
	maxInflated int64
	maxInflight int64
	trustProxy  bool
	routeSpecs  map[string]route.Spec // by route name, for dry runs
}

// Source is one compiled endpoint: everything its requests need, decided
// at load, so that serving one only executes.
type Source struct {
	Name       string
	Path       string
	VerifyType string // for display; requests never branch on it
	Routes     []*route.Route

	verifier verify.Verifier
	parser   *payload.Parser
	// headerOnly is the verifier when it can decide some requests from
	// their headers alone (tokens), before the body is read; nil otherwise.
	headerOnly verify.HeaderOnly
	// deliveryHeaders name the request's delivery id, first found wins
	// (canonical): the source's delivery header, then the sender's
	// fallback (GitLab's Idempotency-Key).
	deliveryHeaders []string
	// deliveryKey gives the delivery id from the event itself (the
	// source's delivery expression, or the sender's); nil when none. It
	// wins over the headers.
	deliveryKey *route.Key
	// pingEvent is the sender's connectivity check, answered 200 without
	// routing (GitHub's ping); "" when the sender has none.
	pingEvent string
	dedupeTTL time.Duration
	allowNets []netip.Prefix
	hidden    map[string]bool // lower-case headers never shown to routes
}

// Sources returns the compiled sources in config order.
func (t *Table) Sources() []*Source { return t.sources }

// Compile builds a Table: verifiers, body parsers, filters, conversation
// expressions and templates. Each error is a *FieldError; all are joined.
func Compile(spec Spec) (*Table, error) {
	t := &Table{
		byPath:      make(map[string]*Source, len(spec.Sources)),
		maxBody:     spec.MaxBody,
		maxInflated: spec.MaxInflated,
		maxInflight: spec.MaxInflight,
		trustProxy:  spec.TrustProxy,
	}
	if t.maxInflight <= 0 {
		t.maxInflight = DefaultMaxInflight(spec.MaxBody, spec.MaxInflated)
	}
	var errs []error
	byName := make(map[string]*Source, len(spec.Sources))
	for i := range spec.Sources {
		s, err := compileSource(i, &spec.Sources[i])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if s.dedupeTTL == 0 {
			s.dedupeTTL = spec.DedupeTTL
		}
		t.byPath[s.Path] = s
		t.sources = append(t.sources, s)
		byName[s.Name] = s
	}
	for i, rs := range spec.Routes {
		r, err := route.Compile(rs)
		t.routeSpecs = addSpec(t.routeSpecs, rs)
		if err != nil {
			errs = append(errs, routeError(i, err))
			continue
		}
		// The loader checked that the source exists; a source that did not
		// compile has its own error above.
		if s, ok := byName[rs.Source]; ok {
			s.Routes = append(s.Routes, r)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

// routeError puts routes[i] in front of route's own field ("filter").
func routeError(i int, err error) error {
	var fe *route.FieldError
	if errors.As(err, &fe) {
		return &FieldError{Field: fmt.Sprintf("routes[%d].%s", i, fe.Field), Err: routeCause{fe}}
	}
	return &FieldError{Field: fmt.Sprintf("routes[%d]", i), Err: err}
}

// routeCause is a route.FieldError's cause as route words it (on one line),
// without the field its own Error puts in front.
type routeCause struct{ fe *route.FieldError }

func (c routeCause) Error() string { return strings.TrimPrefix(c.fe.Error(), c.fe.Field+": ") }
func (c routeCause) Unwrap() error { return c.fe }

// sender is what a well-known sender's requests look like beyond their
// signature, keyed by verify type.
type sender struct {
	event, delivery  string // default headers for the event type and delivery id
	deliveryFallback string // header tried when the delivery header is absent
	ping             string // event answered without routing
	// deliveryExpr gives the delivery id from the body, for senders that
	// put their event id only there: their retries carry a new
	// signature, so the id is the one thing that says it is the same
	// delivery.
	deliveryExpr string
}

var senders = map[string]sender{
	"github":            {event: "X-Github-Event", delivery: "X-Github-Delivery", ping: "ping"},
	"gitlab":            {event: "X-Gitlab-Event", delivery: "X-Gitlab-Event-Uuid", deliveryFallback: "Idempotency-Key"},
	"standard-webhooks": {delivery: "Webhook-Id"},
	"buildkite":         {event: "X-Buildkite-Event"},
	"circleci":          {event: "Circleci-Event-Type", deliveryExpr: "body.id"},
	"stripe":            {deliveryExpr: "body.id"},
	"bitbucket":         {event: "X-Event-Key", delivery: "X-Request-Uuid"},
	"gitea":             {event: "X-Gitea-Event", delivery: "X-Gitea-Delivery"},
	"forgejo":           {event: "X-Forgejo-Event", delivery: "X-Forgejo-Delivery"},
}

// genericCredentials are hidden from routes whatever the verifier reads:
// HTTP's own, and the senders' tokens that carry a secret as is, which a
// source that does not check them (type none) may still receive.
var genericCredentials = []string{"Authorization", "Proxy-Authorization", "Cookie", "X-Gitlab-Token", "X-Buildkite-Token"}

// compileSource compiles sources[i]; its error is a *FieldError.
func compileSource(i int, sc *SourceSpec) (*Source, error) {
	v, err := verify.New(sc.Verify)
	if err != nil {
		return nil, &FieldError{Field: fmt.Sprintf("sources[%d].verify", i), Err: err}
	}
	snd := senders[sc.Verify.Type]
	var deliveryKey *route.Key
	if expr := orDefault(sc.Delivery, snd.deliveryExpr); strings.TrimSpace(expr) != "" {
		if deliveryKey, err = route.CompileKey(expr); err != nil {
			return nil, &FieldError{Field: fmt.Sprintf("sources[%d].delivery", i), Err: err}
		}
	}
	eventHeader := orDefault(sc.EventHeader, snd.event)
	var deliveryHeaders []string
	for _, h := range []string{orDefault(sc.DeliveryHeader, snd.delivery), snd.deliveryFallback} {
		if h != "" {
			deliveryHeaders = append(deliveryHeaders, http.CanonicalHeaderKey(h))
		}
	}
	headerOnly, _ := v.(verify.HeaderOnly)
	return &Source{
		headerOnly:      headerOnly,
		Name:            sc.Name,
		Path:            sc.Path,
		VerifyType:      sc.Verify.Type,
		verifier:        v,
		parser:          payload.New(sc.Body, sc.Envelope, eventHeader),
		deliveryHeaders: deliveryHeaders,
		deliveryKey:     deliveryKey,
		pingEvent:       snd.ping,
		dedupeTTL:       sc.DedupeTTL,
		allowNets:       sc.AllowNets,
		hidden:          hiddenHeaders(v),
	}, nil
}

// orDefault returns a, or def when a is empty.
func orDefault(a, def string) string {
	if a != "" {
		return a
	}
	return def
}

// hiddenHeaders are the credentials a sender proves itself with: the ones
// v checks and the generic ones. They are removed from what routes see, so
// no template can copy a secret into a prompt (prompts are stored, sent and
// shown by the admin API).
func hiddenHeaders(v verify.Verifier) map[string]bool {
	h := make(map[string]bool)
	for _, name := range append(v.Headers(), genericCredentials...) {
		h[strings.ToLower(name)] = true
	}
	return h
}
