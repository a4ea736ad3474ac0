package ingest

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/route"
	"github.com/relayd/relayd/internal/verify"
)

// Table is everything ingest needs from one config, compiled. It is
// swapped whole on reload, so a request sees one consistent config.
type Table struct {
	byPath           map[string]*Source
	sources          []*Source
	maxBody          int64
	maxInflated      int64
	trustProxy       bool
	defaultDedupeTTL time.Duration
}

// Source is one compiled endpoint with the routes that read from it.
type Source struct {
	Name           string
	Path           string
	VerifyType     string
	Verifier       verify.Verifier
	EventHeader    string // canonical header names
	DeliveryHeader string
	deliveryKey    *route.Key // delivery: the delivery id from the event; nil when none
	BodyMode       string
	Unwrap         string
	DedupeTTL      time.Duration
	AllowNets      []netip.Prefix // validated by config
	Routes         []*route.Route
	hidden         map[string]bool // lower-case headers never shown to routes
}

// Sources returns the compiled sources in config order.
func (t *Table) Sources() []*Source { return t.sources }

// Compile builds a Table from a loaded config: verifiers, filters,
// conversation expressions and templates. Every error names its field.
func Compile(cfg *config.Config) (*Table, error) {
	t := &Table{
		byPath:           make(map[string]*Source, len(cfg.Sources)),
		maxBody:          cfg.Server.MaxBodyBytes,
		maxInflated:      cfg.Server.MaxInflatedBytes,
		trustProxy:       cfg.Server.TrustProxy,
		defaultDedupeTTL: cfg.Storage.DedupeTTL.D(),
	}
	if t.maxInflated < t.maxBody {
		t.maxInflated = t.maxBody
	}
	var errs []error
	byName := make(map[string]*Source, len(cfg.Sources))
	for i := range cfg.Sources {
		s, err := compileSource(&cfg.Sources[i])
		if err != nil {
			errs = append(errs, fmt.Errorf("sources[%d].%w", i, err))
			continue
		}
		if s.DedupeTTL == 0 {
			s.DedupeTTL = t.defaultDedupeTTL
		}
		t.byPath[s.Path] = s
		t.sources = append(t.sources, s)
		byName[s.Name] = s
	}
	for i, rc := range cfg.Routes {
		r, err := route.Compile(route.Spec{
			Name: rc.Name, Source: rc.Source, Filter: rc.Filter,
			Conversation: rc.Conversation, Template: rc.Template,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("routes[%d].%w", i, err))
			continue
		}
		if s, ok := byName[rc.Source]; ok {
			s.Routes = append(s.Routes, r)
		} else {
			errs = append(errs, fmt.Errorf("routes[%d].source: unknown source %q", i, rc.Source))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

// fieldError prefixes an error with the field it is about.
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return e.field + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

func compileSource(sc *config.Source) (*Source, error) {
	if sc.Verify == nil {
		return nil, &fieldError{"verify", errors.New("required (write type: none to accept unsigned webhooks)")}
	}
	v, err := verify.New(*sc.Verify)
	if err != nil {
		return nil, &fieldError{"verify", err}
	}
	s := &Source{
		Name:           sc.Name,
		Path:           sc.Path,
		VerifyType:     sc.Verify.Type,
		Verifier:       v,
		EventHeader:    sc.EventHeader,
		DeliveryHeader: sc.DeliveryHeader,
		BodyMode:       sc.Body,
		Unwrap:         sc.Unwrap,
		DedupeTTL:      sc.DedupeTTL.D(),
		AllowNets:      sc.AllowedPrefixes(),
		hidden:         hiddenHeaders(sc.Verify),
	}
	if s.BodyMode == "" {
		s.BodyMode = "json"
	}
	defEvent, defDelivery := senderHeaders(sc.Verify.Type)
	if s.EventHeader == "" {
		s.EventHeader = defEvent
	}
	if s.DeliveryHeader == "" {
		s.DeliveryHeader = defDelivery
	}
	delivery := sc.Delivery
	if delivery == "" {
		delivery = senderDelivery(sc.Verify.Type)
	}
	if strings.TrimSpace(delivery) != "" {
		k, err := route.CompileKey(delivery)
		if err != nil {
			return nil, &fieldError{"delivery", err}
		}
		s.deliveryKey = k
	}
	return s, nil
}

// senderDelivery is the delivery expression of senders that put their
// event id in the body only: their retries carry a new signature, so the
// id is the one thing that says it is the same delivery.
func senderDelivery(verifyType string) string {
	switch verifyType {
	case "stripe", "circleci":
		return "body.id"
	}
	return ""
}

// senderHeaders names where well-known senders put the event type and the
// delivery id. GitLab's delivery falls back to Idempotency-Key in code.
func senderHeaders(verifyType string) (event, delivery string) {
	switch verifyType {
	case "github":
		return "X-Github-Event", "X-Github-Delivery"
	case "gitlab":
		return "X-Gitlab-Event", "X-Gitlab-Event-Uuid"
	case "standard-webhooks":
		return "", "Webhook-Id"
	case "buildkite":
		return "X-Buildkite-Event", ""
	case "circleci":
		return "Circleci-Event-Type", ""
	case "bitbucket":
		return "X-Event-Key", "X-Request-Uuid"
	case "gitea":
		return "X-Gitea-Event", "X-Gitea-Delivery"
	case "forgejo":
		return "X-Forgejo-Event", "X-Forgejo-Delivery"
	}
	return "", ""
}

// hiddenHeaders are the credentials a sender proves itself with. They are
// removed from what routes see, so no template can copy a secret into a
// prompt (prompts are stored, sent and shown by the admin API).
func hiddenHeaders(v *config.Verify) map[string]bool {
	h := map[string]bool{
		"authorization": true, "proxy-authorization": true, "cookie": true,
		"x-hub-signature": true, "x-hub-signature-256": true, "x-gitlab-token": true,
		"webhook-signature": true, "stripe-signature": true, "x-buildkite-signature": true,
		"x-buildkite-token": true, "circleci-signature": true, "x-signature": true,
		"x-gitea-signature": true, "x-forgejo-signature": true,
	}
	if v != nil && v.Header != "" {
		h[strings.ToLower(v.Header)] = true
	}
	return h
}
