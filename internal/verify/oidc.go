package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// OIDC: a JWT in Authorization: Bearer, signed by the issuer (Google signs
// one per Pub/Sub authenticated push). Parsing and signature checks are
// golang-jwt's; this file finds the keys (the issuer's JWKS) and maps
// failures onto Reasons.

const (
	oidcSkew = time.Minute
	// oidcRefreshEvery bounds refetching the JWKS for an unknown kid.
	oidcRefreshEvery = time.Minute
	// oidcMaxKeyAge refreshes keys that have been cached this long on the
	// next request, so keys the issuer withdrew stop verifying.
	oidcMaxKeyAge = time.Hour
	// oidcRetryFailed is how soon a failed first fetch is tried again.
	oidcRetryFailed = 5 * time.Second
	oidcMaxDoc      = 1 << 20
)

var oidcMethods = []string{"RS256", "ES256"}

type oidcVerifier struct {
	issuer, audience, email string
	keys                    *jwksCache
}

var _ Verifier = (*oidcVerifier)(nil)

func buildOIDC(c Spec) (compiled, error) {
	if err := onlyFields(c, "issuer", "audience", "email", "jwks_url", "ca_file"); err != nil {
		return nil, err
	}
	return newOIDC(c.Issuer, c.Audience, c.Email, c.JWKSURL, c.CAFile)
}

// newOIDC compiles an OIDC verifier. jwksURL "" means the jwks_uri of the
// issuer's discovery document. Nothing is fetched until the first request.
// The config loader requires issuer and audience and rejects secrets.
func newOIDC(issuer, audience, email, jwksURL, caFile string) (*oidcVerifier, error) {
	if jwksURL != "" {
		if err := httpsURL(jwksURL); err != nil {
			return nil, fmt.Errorf("jwks_url: %w", err)
		}
	} else if err := httpsURL(issuer); err != nil {
		return nil, fmt.Errorf("issuer: %w (or set jwks_url)", err)
	}
	client, err := newFetchClient(caFile, nil)
	if err != nil {
		return nil, err
	}
	return &oidcVerifier{
		issuer: issuer, audience: audience, email: email,
		keys: &jwksCache{client: client, issuer: issuer, url: jwksURL, now: time.Now},
	}, nil
}

func httpsURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return fmt.Errorf("%q is not an https URL", s)
	}
	return nil
}

func (v *oidcVerifier) Headers() []string { return []string{"Authorization"} }

type oidcClaims struct {
	jwt.RegisteredClaims
	Email         string `json:"email"`
	EmailVerified any    `json:"email_verified"` // a bool, or "true" from some issuers
}

func (v *oidcVerifier) Verify(r *Request) (Result, error) {
	tok, err := bearerToken(r)
	if err != nil {
		return Result{}, err
	}
	ctx := requestContext(r)
	at := now(r)
	p := jwt.NewParser(
		jwt.WithValidMethods(oidcMethods),
		jwt.WithIssuer(v.issuer),
		jwt.WithAudience(v.audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(oidcSkew),
		jwt.WithTimeFunc(func() time.Time { return at }),
	)
	var claims oidcClaims
	_, err = p.ParseWithClaims(tok, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		keys, err := v.keys.lookup(ctx, kid, t.Method.Alg())
		if err != nil {
			return nil, err
		}
		vk := jwt.VerificationKeySet{Keys: make([]jwt.VerificationKey, len(keys))}
		for i, k := range keys {
			vk.Keys[i] = k
		}
		return vk, nil
	})
	if err != nil {
		return Result{}, oidcError(err)
	}
	if v.email != "" {
		if claims.Email != v.email {
			return Result{}, fail(ReasonMismatch, "JWT email claim does not match")
		}
		if b, ok := claims.EmailVerified.(bool); !ok || !b {
			if s, _ := claims.EmailVerified.(string); s != "true" {
				return Result{}, fail(ReasonMismatch, "JWT email is not verified")
			}
		}
	}
	return Result{}, nil
}

// oidcError maps a golang-jwt error to a Reason with a fixed message: the
// library's text may quote the token.
func oidcError(err error) error {
	switch {
	case errors.Is(err, ErrUnavailable):
		return err
	case errors.Is(err, errUnknownKey):
		return fail(ReasonMismatch, "JWT signed with a key the issuer does not publish")
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fail(ReasonMalformed, "malformed JWT")
	case errors.Is(err, jwt.ErrTokenExpired):
		return fail(ReasonStale, "JWT expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return fail(ReasonStale, "JWT not valid yet")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return fail(ReasonMismatch, "JWT issuer does not match")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return fail(ReasonMismatch, "JWT audience does not match")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return fail(ReasonMalformed, "JWT lacks a required claim (exp, iss or aud)")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return fail(ReasonMismatch, "JWT signature does not match (or is not RS256 or ES256)")
	}
	return fail(ReasonMismatch, "JWT not accepted")
}

func (v *oidcVerifier) sign([]byte, time.Time, string) (http.Header, error) {
	return nil, errors.New("type oidc: tokens are issued by the identity provider, not with a configured secret")
}

var errUnknownKey = errors.New("no JWKS key for the token's kid and alg")

// jwksCache holds the issuer's keys. Lookups read the current set without
// locking; a fetch holds no lock either, so only requests that need the
// fetch's result (an unknown kid) wait for it.
type jwksCache struct {
	client *http.Client
	issuer string
	url    string // jwks_url; "" until discovered when not configured
	now    func() time.Time

	set atomic.Pointer[keySet]

	mu        sync.Mutex
	inflight  chan struct{} // closed when the running fetch ends
	lastFetch time.Time     // last attempt, success or not
	lastErr   error
}

type keySet struct {
	keys    []jwk
	fetched time.Time
}

type jwk struct {
	kid, alg string // alg is RS256 or ES256, from the key's type
	key      crypto.PublicKey
}

func (s *keySet) find(kid, alg string) []crypto.PublicKey {
	var out []crypto.PublicKey
	for _, k := range s.keys {
		// A token without kid may be checked against every key of its alg,
		// and a key published without kid against every token.
		if k.alg == alg && (kid == "" || k.kid == "" || k.kid == kid) {
			out = append(out, k.key)
		}
	}
	return out
}

// lookup returns the keys that may have signed a token with kid and alg,
// fetching the JWKS when there is none yet, when kid is unknown (at most
// once per oidcRefreshEvery), and when the set is older than oidcMaxKeyAge.
func (c *jwksCache) lookup(ctx context.Context, kid, alg string) ([]crypto.PublicKey, error) {
	if ks := c.set.Load(); ks != nil {
		if found := ks.find(kid, alg); len(found) > 0 {
			if c.now().Sub(ks.fetched) < oidcMaxKeyAge {
				return found, nil
			}
			// Stale: refresh without waiting on anyone else's fetch; should
			// this one fail, the keys in hand still serve.
			_ = c.refresh(ctx, false)
			if now := c.set.Load(); now != ks {
				found = now.find(kid, alg)
			}
			if len(found) == 0 {
				return nil, errUnknownKey
			}
			return found, nil
		}
	}
	if err := c.refresh(ctx, true); err != nil {
		return nil, err
	}
	ks := c.set.Load()
	if ks == nil {
		return nil, fmt.Errorf("%w: no JWKS", ErrUnavailable)
	}
	if found := ks.find(kid, alg); len(found) > 0 {
		return found, nil
	}
	return nil, errUnknownKey
}

// refresh fetches the key set unless that was done too recently. With wait,
// a fetch already running is waited for; without, it is left to run.
func (c *jwksCache) refresh(ctx context.Context, wait bool) error {
	c.mu.Lock()
	if ch := c.inflight; ch != nil {
		c.mu.Unlock()
		if !wait {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for the JWKS: %v", ErrUnavailable, ctx.Err())
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.lastErr
	}
	have := c.set.Load() != nil
	since := c.now().Sub(c.lastFetch)
	switch {
	case have && since < oidcRefreshEvery:
		c.mu.Unlock()
		return nil
	case !have && c.lastErr != nil && since < oidcRetryFailed:
		err := c.lastErr
		c.mu.Unlock()
		return err
	}
	ch := make(chan struct{})
	c.inflight = ch
	c.mu.Unlock()

	// Detached: other requests may be waiting for this fetch.
	ks, err := c.fetch(context.WithoutCancel(ctx))

	c.mu.Lock()
	c.lastFetch = c.now()
	c.lastErr = nil
	if err != nil {
		c.lastErr = fmt.Errorf("%w: JWKS: %v", ErrUnavailable, err)
	} else {
		c.set.Store(ks)
	}
	c.inflight = nil
	close(ch)
	err = c.lastErr
	c.mu.Unlock()
	return err
}

// fetch gets the key set, first finding its URL in the issuer's discovery
// document when jwks_url is not configured. Only one fetch runs at a time
// (refresh sees to it), so c.url needs no lock of its own.
func (c *jwksCache) fetch(ctx context.Context) (*keySet, error) {
	if c.url == "" {
		u, err := c.discover(ctx)
		if err != nil {
			return nil, err
		}
		c.url = u
	}
	b, err := get(ctx, c.client, c.url, oidcMaxDoc)
	if err != nil {
		return nil, err
	}
	keys, err := parseJWKS(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", redactQuery(c.url), err)
	}
	return &keySet{keys: keys, fetched: c.now()}, nil
}

func (c *jwksCache) discover(ctx context.Context) (string, error) {
	u := strings.TrimRight(c.issuer, "/") + "/.well-known/openid-configuration"
	b, err := get(ctx, c.client, u, oidcMaxDoc)
	if err != nil {
		return "", err
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return "", fmt.Errorf("%s: not a discovery document", u)
	}
	if doc.Issuer != c.issuer {
		return "", fmt.Errorf("%s: names issuer %q, not %q", u, clip(doc.Issuer), c.issuer)
	}
	if err := httpsURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("%s: jwks_uri: %w", u, err)
	}
	return doc.JWKSURI, nil
}

// parseJWKS reads the RSA (2048 bits or more) and P-256 signing keys of a
// JWK Set; keys of other types, curves or uses are skipped, as RFC 7517
// asks. A set with no usable key is an error.
func parseJWKS(b []byte) ([]jwk, error) {
	var doc struct {
		Keys []struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			Use string `json:"use"`
			Alg string `json:"alg"`
			N   string `json:"n"`
			E   string `json:"e"`
			Crv string `json:"crv"`
			X   string `json:"x"`
			Y   string `json:"y"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, errors.New("not a JWK Set")
	}
	var out []jwk
	for _, k := range doc.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		switch k.Kty {
		case "RSA":
			if k.Alg != "" && k.Alg != "RS256" {
				continue
			}
			n, err1 := b64url(k.N)
			e, err2 := b64url(k.E)
			if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
				continue
			}
			pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
			if pub.N.BitLen() < 2048 || pub.E < 3 || pub.E%2 == 0 {
				continue
			}
			out = append(out, jwk{kid: k.Kid, alg: "RS256", key: pub})
		case "EC":
			if k.Crv != "P-256" || (k.Alg != "" && k.Alg != "ES256") {
				continue
			}
			x, err1 := b64url(k.X)
			y, err2 := b64url(k.Y)
			if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
				continue
			}
			pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
			if err != nil {
				continue
			}
			out = append(out, jwk{kid: k.Kid, alg: "ES256", key: pub})
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no RS256 or ES256 signing key in the JWK Set")
	}
	return out, nil
}

func b64url(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
