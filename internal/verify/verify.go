// Package verify proves a webhook came from its sender.
//
// Each Spec (a source's verify block) compiles, once at load, into a Verifier that
// checks one request's headers and raw body in constant time against the
// source's secrets. Several secrets are accepted at once so a secret can be
// rotated without dropping deliveries. Sign is the sender's side of the same
// schemes, for `relayd send` and tests.
//
// Adding a scheme is a builder in the builders table and, when it is a
// variant of generic HMAC, only a preset (see presets).
package verify

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Request is what a verifier sees: headers, the raw body bytes exactly as
// received (after gzip inflation), and the clock.
type Request struct {
	// Header is looked up with Get, so keys must be canonical, as net/http
	// delivers them.
	Header http.Header
	Body   []byte
	// Now is the time timestamped schemes are checked against; the zero
	// value means time.Now().
	Now time.Time
	// Context bounds what a verifier fetches (certificates, keys); nil
	// means context.Background().
	Context context.Context
}

// Result carries what ingest needs beyond pass/fail.
type Result struct {
	// ReplayKey is a stable key for dedupe when the sender sends no delivery
	// id (e.g. Buildkite): a hash (hex sha256) of the signature header value;
	// "" when not applicable. It is set by the timestamped HMAC schemes,
	// whose signature header is unique per delivery.
	ReplayKey string
	// Control is set when the request is the sender's own control message
	// (an SNS subscription or unsubscribe confirmation), verified and
	// already dealt with: ingest answers 200 and routes nothing. It names
	// the message, e.g. "sns:SubscriptionConfirmation", for the log.
	Control string
}

// Verifier checks one request. Implementations are safe for concurrent use.
type Verifier interface {
	Verify(r *Request) (Result, error)
	// Headers lists, in canonical form, the headers that carry the
	// sender's credential (a signature or a token), so they can be kept
	// out of what else sees the request.
	Headers() []string
}

// HeaderOnly is implemented by verifiers whose proof, for some requests,
// travels in the headers alone (a token): ingest checks those before it
// reads a byte of the body, so an unauthenticated sender costs no buffer.
type HeaderOnly interface {
	// HeaderOnly reports whether Verify decides a request with these
	// headers without looking at its body.
	HeaderOnly(h http.Header) bool
}

// Spec is one source's proof-of-sender settings, as written in its verify
// block; which fields apply depends on Type. Values are checked by the
// config loader (required type, non-empty secrets, tolerance >= 0, and the
// required fields of sns, oidc and basic); New checks what only a scheme
// knows.
type Spec struct {
	Type    string // one of Types
	Secrets []string
	Header  string
	// Algorithm is sha1, sha256 or sha512; Encoding hex or base64.
	Algorithm string
	Encoding  string
	Prefix    string
	// Tolerance bounds a signed timestamp's distance from the clock;
	// 0 means DefaultTolerance.
	Tolerance time.Duration
	// Timestamped hmac form: the header holds key=value pairs.
	Timestamped  bool
	TimestampKey string
	SignatureKey string
	Separator    string // between pairs; default ","

	// sns: the TopicArn allow-list (empty allows all) and the host patterns
	// SigningCertURL and SubscribeURL may point to (empty:
	// DefaultSNSCertHosts).
	Topics    []string
	CertHosts []string
	// CAFile (sns, oidc) is an extra CA bundle for what is fetched; the
	// caller resolves a relative path.
	CAFile string
	// oidc: the token's iss and aud, the optional email claim (which must
	// then be verified), and the JWKS URL ("" means the jwks_uri of the
	// issuer's discovery document).
	Issuer   string
	Audience string
	Email    string
	JWKSURL  string
	// basic: the user name; Secrets are the passwords.
	Username string
}

// Failure reasons, a fixed set usable as a metrics label.
const (
	ReasonMissing   = "missing"   // no signature or token where one is required
	ReasonMismatch  = "mismatch"  // well formed, but no secret produces it
	ReasonStale     = "stale"     // timestamp outside the tolerance
	ReasonMalformed = "malformed" // the header cannot be parsed
)

// Reasons lists every Error.Reason value.
var Reasons = []string{ReasonMissing, ReasonMismatch, ReasonStale, ReasonMalformed}

// Error is a verification failure. Msg never holds a secret, the expected
// signature, or the received one, so it is safe to log and to answer with.
type Error struct {
	Reason string // one of Reasons
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// Is makes errors.Is(err, ErrStale) and friends match on Reason.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Reason == e.Reason
}

// Sentinels for errors.Is; a failure returned by a Verifier carries a more
// specific Msg.
var (
	ErrMissing   = &Error{Reason: ReasonMissing, Msg: "signature missing"}
	ErrMismatch  = &Error{Reason: ReasonMismatch, Msg: "signature mismatch"}
	ErrStale     = &Error{Reason: ReasonStale, Msg: "timestamp outside tolerance"}
	ErrMalformed = &Error{Reason: ReasonMalformed, Msg: "signature malformed"}
)

func fail(reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// Types lists the accepted verify.type values.
var Types = []string{
	"github", "gitlab", "standard-webhooks", "hmac",
	"buildkite", "circleci", "stripe", "bearer", "none",
	"sns", "oidc", "basic", "bitbucket", "gitea", "forgejo",
}

// DefaultTolerance is how far a signed timestamp may be from the clock, in
// either direction, when verify.tolerance is not set.
const DefaultTolerance = 5 * time.Minute

// compiled is what every builder returns: it verifies, and signs the way
// that scheme's senders do.
type compiled interface {
	Verifier
	sign(body []byte, now time.Time, id string) (http.Header, error)
}

type builder func(c Spec) (compiled, error)

var builders = map[string]builder{
	"github":            presetBuilder("github"),
	"gitlab":            newGitLab,
	"standard-webhooks": newStandardWebhooks,
	"hmac":              newHMAC,
	"buildkite":         presetBuilder("buildkite"),
	"circleci":          presetBuilder("circleci"),
	"stripe":            presetBuilder("stripe"),
	"bearer":            newBearer,
	"none":              newNone,
	"sns":               buildSNS,
	"oidc":              buildOIDC,
	"basic":             buildBasic,
	"bitbucket":         presetBuilder("bitbucket"),
	"gitea":             presetBuilder("gitea"),
	"forgejo":           presetBuilder("forgejo"),
}

// secretless are the types that check a proof against something other
// than configured secrets.
var secretless = map[string]bool{"none": true, "sns": true, "oidc": true}

// New compiles a verifier from s at load time. Errors name the
// sub-field (`secrets: at least one secret is required`); the caller
// prefixes the path of the verify block.
func New(c Spec) (Verifier, error) {
	v, err := compile(c)
	if err != nil {
		return nil, err
	}
	return v, nil
}

func compile(c Spec) (compiled, error) {
	b, ok := builders[c.Type]
	if !ok {
		return nil, fmt.Errorf("type: %q is not one of %s", c.Type, strings.Join(Types, ", "))
	}
	if !secretless[c.Type] && len(c.Secrets) == 0 {
		return nil, fmt.Errorf("secrets: at least one secret is required")
	}
	return b(c)
}

// Sign returns the headers a sender of c's type would send for body: the
// signature or token made with the first secret, and for Standard Webhooks
// webhook-id (id, or a random one when empty) and webhook-timestamp. Event
// and delivery headers are the caller's. Type none signs nothing.
func Sign(c Spec, body []byte, now time.Time, id string) (http.Header, error) {
	v, err := compile(c)
	if err != nil {
		return nil, err
	}
	if now.IsZero() {
		now = time.Now()
	}
	return v.sign(body, now, id)
}

// onlyFields rejects the settings a type does not read, so a typo'd config
// (say, an algorithm on a bearer source) fails at load instead of being
// silently ignored. Tolerance is left out on purpose: untimed types ignore it,
// so a default applied to every source never trips this check.
func onlyFields(c Spec, allowed ...string) error {
	set := map[string]bool{
		"header":        c.Header != "",
		"algorithm":     c.Algorithm != "",
		"encoding":      c.Encoding != "",
		"prefix":        c.Prefix != "",
		"timestamped":   c.Timestamped,
		"timestamp_key": c.TimestampKey != "",
		"signature_key": c.SignatureKey != "",
		"separator":     c.Separator != "",
		"topics":        len(c.Topics) > 0,
		"cert_hosts":    len(c.CertHosts) > 0,
		"ca_file":       c.CAFile != "",
		"issuer":        c.Issuer != "",
		"audience":      c.Audience != "",
		"email":         c.Email != "",
		"jwks_url":      c.JWKSURL != "",
		"username":      c.Username != "",
	}
	for _, a := range allowed {
		delete(set, a)
	}
	for _, f := range []string{"header", "algorithm", "encoding", "prefix", "timestamped", "timestamp_key", "signature_key", "separator",
		"topics", "cert_hosts", "ca_file", "issuer", "audience", "email", "jwks_url", "username"} {
		if set[f] {
			return fmt.Errorf("%s: not used by type %s", f, c.Type)
		}
	}
	return nil
}

func tolerance(c Spec) time.Duration {
	if c.Tolerance == 0 {
		return DefaultTolerance
	}
	return c.Tolerance
}

func now(r *Request) time.Time {
	if r.Now.IsZero() {
		return time.Now()
	}
	return r.Now
}

// within reports whether unix timestamp ts is within tol of now, in either
// direction, without overflowing on hostile values.
func within(ts int64, now time.Time, tol time.Duration) bool {
	n := now.Unix()
	t := int64(tol / time.Second)
	return ts >= n-t && ts <= n+t
}

// validHeaderName reports whether s is an RFC 9110 field name (a token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
