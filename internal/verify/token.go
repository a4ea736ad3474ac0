package verify

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// tokenSet holds shared-secret tokens as SHA-256 digests, so comparing a
// received token costs the same whatever its length and whichever secret it
// is closest to.
type tokenSet [][sha256.Size]byte

func newTokenSet(secrets []string) tokenSet {
	t := make(tokenSet, len(secrets))
	for i, s := range secrets {
		t[i] = sha256.Sum256([]byte(s))
	}
	return t
}

// match compares tok against every secret, with no early exit.
func (t tokenSet) match(tok string) bool {
	h := sha256.Sum256([]byte(tok))
	ok := 0
	for i := range t {
		ok |= subtle.ConstantTimeCompare(h[:], t[i][:])
	}
	return ok == 1
}

// gitlabVerifier checks X-Gitlab-Token, or, when GitLab signs with a signing
// token, the Standard Webhooks headers. It chooses on webhook-signature:
// GitLab sends webhook-id on every delivery, signed or not.
type gitlabVerifier struct {
	tokens  tokenSet
	sw      *swVerifier
	first   string
	firstSW bool
}

var (
	_ Verifier   = (*gitlabVerifier)(nil)
	_ HeaderOnly = (*gitlabVerifier)(nil)
	_ HeaderOnly = (*bearerVerifier)(nil)
	_ HeaderOnly = noneVerifier{}
)

const gitlabToken = "X-Gitlab-Token"

func newGitLab(c Spec) (compiled, error) {
	if err := onlyFields(c); err != nil {
		return nil, err
	}
	sw, err := compileSW(c, false)
	if err != nil {
		return nil, err
	}
	return &gitlabVerifier{
		tokens:  newTokenSet(c.Secrets),
		sw:      sw,
		first:   c.Secrets[0],
		firstSW: strings.HasPrefix(c.Secrets[0], whsecPrefix),
	}, nil
}

func (v *gitlabVerifier) Headers() []string { return []string{gitlabToken, swSignature} }

// HeaderOnly: a token is checked without the body; a signature is not.
func (v *gitlabVerifier) HeaderOnly(h http.Header) bool { return h.Get(swSignature) == "" }

func (v *gitlabVerifier) Verify(r *Request) (Result, error) {
	if r.Header.Get(swSignature) != "" {
		return v.sw.Verify(r)
	}
	tok := r.Header.Get(gitlabToken)
	if tok == "" {
		return Result{}, fail(ReasonMissing, "missing %s header", gitlabToken)
	}
	if !v.tokens.match(tok) {
		return Result{}, fail(ReasonMismatch, "%s does not match", gitlabToken)
	}
	return Result{}, nil
}

// sign sends a whsec_ secret the way GitLab sends a signing token, and any
// other secret as X-Gitlab-Token.
func (v *gitlabVerifier) sign(body []byte, now time.Time, id string) (http.Header, error) {
	if v.firstSW {
		return v.sw.sign(body, now, id)
	}
	h := http.Header{}
	h.Set(gitlabToken, v.first)
	return h, nil
}

// bearerVerifier checks Authorization: Bearer <one of secrets>.
type bearerVerifier struct {
	tokens tokenSet
	first  string
}

var _ Verifier = (*bearerVerifier)(nil)

func newBearer(c Spec) (compiled, error) {
	if err := onlyFields(c); err != nil {
		return nil, err
	}
	return &bearerVerifier{tokens: newTokenSet(c.Secrets), first: c.Secrets[0]}, nil
}

func (v *bearerVerifier) Headers() []string { return []string{"Authorization"} }

func (v *bearerVerifier) HeaderOnly(http.Header) bool { return true }

func (v *bearerVerifier) Verify(r *Request) (Result, error) {
	tok, err := bearerToken(r)
	if err != nil {
		return Result{}, err
	}
	if !v.tokens.match(tok) {
		return Result{}, fail(ReasonMismatch, "bearer token does not match")
	}
	return Result{}, nil
}

func (v *bearerVerifier) sign([]byte, time.Time, string) (http.Header, error) {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+v.first)
	return h, nil
}

// noneVerifier accepts every request; a source must say type: none to get it.
type noneVerifier struct{}

var _ Verifier = noneVerifier{}

func newNone(c Spec) (compiled, error) {
	if err := onlyFields(c); err != nil {
		return nil, err
	}
	if len(c.Secrets) > 0 {
		return nil, fmt.Errorf("secrets: not used by type none (nothing would be verified)")
	}
	return noneVerifier{}, nil
}

func (noneVerifier) Verify(*Request) (Result, error) { return Result{}, nil }

func (noneVerifier) Headers() []string { return nil }

func (noneVerifier) HeaderOnly(http.Header) bool { return true }

func (noneVerifier) sign([]byte, time.Time, string) (http.Header, error) { return http.Header{}, nil }

// bearerToken is the token of the request's "Authorization: Bearer" header.
func bearerToken(r *Request) (string, error) {
	val := r.Header.Get("Authorization")
	if val == "" {
		return "", fail(ReasonMissing, "missing Authorization header")
	}
	scheme, tok, _ := strings.Cut(strings.TrimSpace(val), " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", fail(ReasonMalformed, "malformed Authorization header: want Bearer <token>")
	}
	return tok, nil
}
