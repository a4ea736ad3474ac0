package verify

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks (standardwebhooks.com): webhook-id, webhook-timestamp and
// webhook-signature, a space-separated list of "v1,<base64 HMAC-SHA256>" over
// "id.timestamp.body".
const (
	swID        = "Webhook-Id"
	swTimestamp = "Webhook-Timestamp"
	swSignature = "Webhook-Signature"
	whsecPrefix = "whsec_"
)

var swAlg = algorithm{"sha256", sha256.New, sha256.Size}

type swVerifier struct {
	keys      []*macKey
	tolerance time.Duration
	signKey   []byte
}

var _ Verifier = (*swVerifier)(nil)

func newStandardWebhooks(c Spec) (compiled, error) {
	if err := onlyFields(c); err != nil {
		return nil, err
	}
	return compileSW(c, true)
}

// compileSW reads the secrets as Standard Webhooks keys. Unless
// unprefixedB64, a secret without whsec_ is taken as its own bytes (GitLab's
// plain tokens, which never sign).
func compileSW(c Spec, unprefixedB64 bool) (*swVerifier, error) {
	keys := make([][]byte, len(c.Secrets))
	for i, s := range c.Secrets {
		k, err := swKey(s, unprefixedB64)
		if err != nil {
			return nil, fmt.Errorf("secrets[%d]: %w", i, err)
		}
		keys[i] = k
	}
	return &swVerifier{keys: newMACKeys(swAlg, keys), tolerance: tolerance(c), signKey: keys[0]}, nil
}

// swKey turns a secret into key bytes: "whsec_<base64>" is decoded, as the
// specification says, and so is a secret without the prefix when
// unprefixedB64 (the reference libraries strip an optional whsec_ and
// decode the rest); otherwise an unprefixed secret is its own bytes.
func swKey(s string, unprefixedB64 bool) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, whsecPrefix)
	if !ok && !unprefixedB64 {
		return []byte(s), nil
	}
	k, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		k, err = base64.RawStdEncoding.DecodeString(b64)
	}
	if err != nil {
		// Say nothing about where decoding failed: it would point into the secret.
		if !ok {
			return nil, fmt.Errorf("secret is not valid base64 (a Standard Webhooks secret is base64, with or without %s)", whsecPrefix)
		}
		return nil, fmt.Errorf("%s secret is not valid base64", whsecPrefix)
	}
	if len(k) == 0 {
		return nil, fmt.Errorf("%s secret is empty", whsecPrefix)
	}
	return k, nil
}

// Headers is only the signature: webhook-id and webhook-timestamp are no
// credential, and routes may read them.
func (v *swVerifier) Headers() []string { return []string{swSignature} }

func (v *swVerifier) Verify(r *Request) (Result, error) {
	id := r.Header.Get(swID)
	ts := r.Header.Get(swTimestamp)
	sig := r.Header.Get(swSignature)
	switch {
	case sig == "":
		return Result{}, fail(ReasonMissing, "missing webhook-signature header")
	case id == "":
		return Result{}, fail(ReasonMissing, "missing webhook-id header")
	case ts == "":
		return Result{}, fail(ReasonMissing, "missing webhook-timestamp header")
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return Result{}, fail(ReasonMalformed, "malformed webhook-timestamp header: not a unix timestamp")
	}
	if !within(t, now(r), v.tolerance) {
		return Result{}, fail(ReasonStale, "webhook-timestamp is outside the %s tolerance", v.tolerance)
	}
	s := getSigs(swAlg.size)
	defer putSigs(s)
	if v1 := parseSWSignatures(sig, s); s.n == 0 {
		if v1 > 0 {
			return Result{}, fail(ReasonMalformed, "malformed webhook-signature header: v1 entry is not a base64 HMAC-SHA256")
		}
		return Result{}, fail(ReasonMalformed, "malformed webhook-signature header: no v1 entry")
	}
	s.prefix = append(append(append(append(s.prefix, id...), '.'), ts...), '.')
	if !matchAny(v.keys, s.prefix, r.Body, s) {
		return Result{}, fail(ReasonMismatch, "webhook-signature does not match the body")
	}
	return Result{}, nil
}

// parseSWSignatures adds each decodable "v1,<base64>" entry of a
// webhook-signature header to s and returns how many v1 entries there were.
// Other versions (v1a, future ones) and entries without a comma are skipped,
// as the specification asks.
func parseSWSignatures(header string, s *sigList) (v1 int) {
	for rest := header; rest != ""; {
		var entry string
		entry, rest, _ = strings.Cut(rest, " ")
		ver, b64, ok := strings.Cut(entry, ",")
		if !ok || ver != "v1" {
			continue
		}
		v1++
		s.add(encBase64, b64)
	}
	return v1
}

func (v *swVerifier) sign(body []byte, now time.Time, id string) (http.Header, error) {
	if id == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		id = "msg_" + hex.EncodeToString(b[:])
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	sum := macOnce(swAlg, v.signKey, []byte(id+"."+ts+"."), body)
	h := http.Header{}
	h.Set(swID, id)
	h.Set(swTimestamp, ts)
	h.Set(swSignature, "v1,"+base64.StdEncoding.EncodeToString(sum))
	return h, nil
}
