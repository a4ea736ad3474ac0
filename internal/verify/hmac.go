package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// presets are the senders whose scheme is generic HMAC with fixed settings.
// A preset fills what the config leaves empty, so any field can still be
// overridden.
var presets = map[string]Spec{
	// GitHub: X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>.
	"github": {Header: "X-Hub-Signature-256", Algorithm: "sha256", Encoding: "hex", Prefix: "sha256="},
	// Buildkite: X-Buildkite-Signature: timestamp=<unix>,signature=<hex> over "timestamp.body".
	"buildkite": {Header: "X-Buildkite-Signature", Algorithm: "sha256", Encoding: "hex",
		Timestamped: true, TimestampKey: "timestamp", SignatureKey: "signature", Separator: ","},
	// CircleCI: circleci-signature: v1=<hex>[,v2=…] over the body; only v1 is checked.
	"circleci": {Header: "Circleci-Signature", Algorithm: "sha256", Encoding: "hex",
		SignatureKey: "v1", Separator: ","},
	// Stripe: Stripe-Signature: t=<unix>,v1=<hex>[,v1=…][,v0=…] over "t.body".
	// Stripe's whsec_ secret is used as is (not base64-decoded).
	"stripe": {Header: "Stripe-Signature", Algorithm: "sha256", Encoding: "hex",
		Timestamped: true, TimestampKey: "t", SignatureKey: "v1", Separator: ","},
	// Bitbucket Cloud and Server: X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>.
	"bitbucket": {Header: "X-Hub-Signature", Algorithm: "sha256", Encoding: "hex", Prefix: "sha256="},
	// Gitea and Forgejo: bare hex HMAC-SHA256 of the body.
	"gitea":   {Header: "X-Gitea-Signature", Algorithm: "sha256", Encoding: "hex"},
	"forgejo": {Header: "X-Forgejo-Signature", Algorithm: "sha256", Encoding: "hex"},
}

func presetBuilder(name string) builder {
	p := presets[name]
	return func(c Spec) (compiled, error) {
		fill := func(dst *string, def string) {
			if *dst == "" {
				*dst = def
			}
		}
		fill(&c.Header, p.Header)
		fill(&c.Algorithm, p.Algorithm)
		fill(&c.Encoding, p.Encoding)
		fill(&c.Prefix, p.Prefix)
		fill(&c.TimestampKey, p.TimestampKey)
		fill(&c.SignatureKey, p.SignatureKey)
		fill(&c.Separator, p.Separator)
		c.Timestamped = c.Timestamped || p.Timestamped
		return newHMAC(c)
	}
}

// hmacVerifier is the generic HMAC scheme in its three shapes:
//   - plain: the header holds prefix + encoded HMAC of the body;
//   - pairs: the header holds key=value pairs and the signature_key entries
//     are candidate HMACs of the body (CircleCI);
//   - timestamped pairs: also a timestamp_key entry, and the signed content
//     is "timestamp.body" (Stripe, Buildkite).
type hmacVerifier struct {
	header string // canonical form, for lookups
	name   string // as configured, for messages
	alg    algorithm
	enc    encoding
	prefix string

	pairs       bool
	timestamped bool
	tsKey       string
	sigKey      string
	sep         string
	tolerance   time.Duration

	keys    []*macKey
	signKey []byte
}

var _ Verifier = (*hmacVerifier)(nil)

func newHMAC(c Spec) (compiled, error) {
	if err := onlyFields(c, "header", "algorithm", "encoding", "prefix", "timestamped", "timestamp_key", "signature_key", "separator"); err != nil {
		return nil, err
	}
	if c.Header == "" {
		return nil, fmt.Errorf("header: required for type %s", c.Type)
	}
	if !validHeaderName(c.Header) {
		return nil, fmt.Errorf("header: %q is not a valid header name", c.Header)
	}
	alg, err := algorithmNamed(c.Algorithm)
	if err != nil {
		return nil, err
	}
	enc, err := encodingNamed(c.Encoding)
	if err != nil {
		return nil, err
	}
	v := &hmacVerifier{
		header:      textproto.CanonicalMIMEHeaderKey(c.Header),
		name:        c.Header,
		alg:         alg,
		enc:         enc,
		prefix:      c.Prefix,
		pairs:       c.Timestamped || c.SignatureKey != "",
		timestamped: c.Timestamped,
		tolerance:   tolerance(c),
	}
	if v.pairs {
		if c.Prefix != "" {
			return nil, fmt.Errorf("prefix: not used when the header holds key=value pairs (timestamped or signature_key)")
		}
		v.sep, v.sigKey, v.tsKey = c.Separator, c.SignatureKey, c.TimestampKey
		if v.sep == "" {
			v.sep = ","
		}
		if v.sigKey == "" {
			v.sigKey = "v1"
		}
		if strings.Contains(v.sep, "=") {
			return nil, fmt.Errorf("separator: %q must not contain \"=\"", v.sep)
		}
		if err := checkPairKey("signature_key", v.sigKey, v.sep); err != nil {
			return nil, err
		}
		if v.timestamped {
			if v.tsKey == "" {
				v.tsKey = "t"
			}
			if err := checkPairKey("timestamp_key", v.tsKey, v.sep); err != nil {
				return nil, err
			}
			if v.tsKey == v.sigKey {
				return nil, fmt.Errorf("timestamp_key: %q is also the signature_key", v.tsKey)
			}
		} else if c.TimestampKey != "" {
			return nil, fmt.Errorf("timestamp_key: only used when timestamped is true")
		}
	} else if c.Separator != "" {
		return nil, fmt.Errorf("separator: only used when timestamped is true or signature_key is set")
	} else if c.TimestampKey != "" {
		return nil, fmt.Errorf("timestamp_key: only used when timestamped is true")
	}
	keys := make([][]byte, len(c.Secrets))
	for i, s := range c.Secrets {
		keys[i] = []byte(s)
	}
	v.keys = newMACKeys(alg, keys)
	v.signKey = keys[0]
	return v, nil
}

func checkPairKey(field, k, sep string) error {
	if strings.TrimSpace(k) != k || strings.Contains(k, "=") || strings.Contains(k, sep) {
		return fmt.Errorf("%s: %q must not contain \"=\", the separator, or surrounding spaces", field, k)
	}
	return nil
}

func (v *hmacVerifier) Headers() []string { return []string{v.header} }

func (v *hmacVerifier) Verify(r *Request) (Result, error) {
	val := r.Header.Get(v.header)
	if val == "" {
		return Result{}, fail(ReasonMissing, "missing %s header", v.name)
	}
	s := getSigs(v.alg.size)
	defer putSigs(s)
	if !v.pairs {
		sig, ok := strings.CutPrefix(strings.TrimSpace(val), v.prefix)
		if !ok {
			return Result{}, fail(ReasonMalformed, "malformed %s header: want %q followed by the %s signature", v.name, v.prefix, v.encName())
		}
		if !s.add(v.enc, sig) {
			return Result{}, fail(ReasonMalformed, "malformed %s header: not a %s %s signature", v.name, v.encName(), v.alg.name)
		}
		if !matchAny(v.keys, nil, r.Body, s) {
			return Result{}, fail(ReasonMismatch, "%s does not match the body", v.name)
		}
		return Result{}, nil
	}

	p := parsePairs(val, v.sep, v.tsKey, v.sigKey, v.enc, s)
	switch {
	case p.malformed:
		return Result{}, fail(ReasonMalformed, "malformed %s header: want key=value pairs separated by %q", v.name, v.sep)
	case v.timestamped && p.timestamps != 1:
		return Result{}, fail(ReasonMalformed, "malformed %s header: want exactly one %s entry", v.name, v.tsKey)
	}
	if v.timestamped {
		ts, err := strconv.ParseInt(p.ts, 10, 64)
		if err != nil {
			return Result{}, fail(ReasonMalformed, "malformed %s header: %s is not a unix timestamp", v.name, v.tsKey)
		}
		if !within(ts, now(r), v.tolerance) {
			return Result{}, fail(ReasonStale, "%s timestamp is outside the %s tolerance", v.name, v.tolerance)
		}
	}
	if s.n == 0 {
		if p.badSigs > 0 {
			return Result{}, fail(ReasonMalformed, "malformed %s header: %s is not a %s %s signature", v.name, v.sigKey, v.encName(), v.alg.name)
		}
		return Result{}, fail(ReasonMalformed, "malformed %s header: no %s entry", v.name, v.sigKey)
	}
	if v.timestamped {
		s.prefix = append(append(s.prefix, p.ts...), '.')
	}
	if !matchAny(v.keys, s.prefix, r.Body, s) {
		return Result{}, fail(ReasonMismatch, "%s does not match the body", v.name)
	}
	if v.timestamped {
		s.tmp = append(s.tmp[:0], val...)
		return Result{ReplayKey: replayKeyOf(s.tmp)}, nil
	}
	return Result{}, nil
}

func (v *hmacVerifier) encName() string {
	if v.enc == encBase64 {
		return "base64"
	}
	return "hex"
}

// replayKeyOf names a delivery by its signature header: a resend of the same
// signed request repeats it exactly, a fresh delivery never does.
func replayKeyOf(headerValue []byte) string {
	sum := sha256.Sum256(headerValue)
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

// pairResult is what parsePairs found in a key=value signature header.
type pairResult struct {
	malformed  bool   // an entry is not key=value
	ts         string // the timestamp entry's value, as sent (it is signed as sent)
	timestamps int    // how many timestamp entries there were
	badSigs    int    // signature entries that did not decode to a digest
}

// parsePairs reads `k=v<sep>k=v…`. Signature entries that decode to a
// digest of s.size bytes are added to s; other keys (Stripe's v0,
// CircleCI's future versions) are skipped. Empty entries are tolerated, so
// a trailing separator is fine.
func parsePairs(val, sep, tsKey, sigKey string, enc encoding, s *sigList) pairResult {
	var p pairResult
	for rest := val; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, sep)
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			p.malformed = true
			return p
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case tsKey != "" && k == tsKey:
			p.ts = v
			p.timestamps++
		case k == sigKey:
			if !s.add(enc, v) {
				p.badSigs++
			}
		}
	}
	return p
}

func (v *hmacVerifier) sign(body []byte, now time.Time, _ string) (http.Header, error) {
	h := http.Header{}
	if !v.pairs {
		h.Set(v.name, v.prefix+v.enc.encode(macOnce(v.alg, v.signKey, nil, body)))
		return h, nil
	}
	var prefix []byte
	var lead string
	if v.timestamped {
		ts := strconv.FormatInt(now.Unix(), 10)
		prefix = []byte(ts + ".")
		lead = v.tsKey + "=" + ts + v.sep
	}
	sig := lead + v.sigKey + "=" + v.enc.encode(macOnce(v.alg, v.signKey, prefix, body))
	h.Set(v.name, sig)
	return h, nil
}
