package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	oidcAud   = "https://relay.example.com/hooks/pubsub"
	oidcEmail = "push@my-project.iam.gserviceaccount.com"
)

// oidcFixture is an issuer: a discovery document and a JWKS over HTTPS,
// whose published keys the test can change.
type oidcFixture struct {
	issuer, caFile string
	rsaKey         *rsa.PrivateKey
	ecKey          *ecdsa.PrivateKey
	jwksFetches    atomic.Int32
	discoveries    atomic.Int32
	failing        atomic.Bool

	mu   sync.Mutex
	jwks []map[string]any
}

func newOIDCFixture(t *testing.T) *oidcFixture {
	t.Helper()
	ca := newTestCA(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &oidcFixture{caFile: ca.caFile, rsaKey: testRSAKey(t, 0), ecKey: ec}
	f.publish(rsaJWK("rsa-1", &f.rsaKey.PublicKey), ecJWK("ec-1", &ec.PublicKey))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		f.discoveries.Add(1)
		json.NewEncoder(w).Encode(map[string]any{"issuer": f.issuer, "jwks_uri": f.issuer + "/certs"})
	})
	mux.HandleFunc("GET /certs", func(w http.ResponseWriter, r *http.Request) {
		f.jwksFetches.Add(1)
		if f.failing.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"keys": f.jwks})
	})
	f.issuer = ca.server(t, mux).URL
	return f
}

func (f *oidcFixture) publish(keys ...map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jwks = keys
}

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(kid string, k *rsa.PublicKey) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": b64u(k.N.Bytes()), "e": b64u(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(kid string, k *ecdsa.PublicKey) map[string]any {
	raw, err := k.Bytes()
	if err != nil {
		panic(err)
	}
	return map[string]any{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64u(raw[1:33]), "y": b64u(raw[33:])}
}

// claims are a Pub/Sub push token's, valid at clock.
func (f *oidcFixture) claims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss": f.issuer, "aud": oidcAud, "sub": "1234567890",
		"iat": clock.Add(-time.Minute).Unix(), "exp": clock.Add(59 * time.Minute).Unix(),
		"email": oidcEmail, "email_verified": true,
	}
}

func token(t testing.TB, method jwt.SigningMethod, kid string, key any, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *oidcFixture) verifier(t *testing.T, email, jwksURL string) *oidcVerifier {
	t.Helper()
	v, err := newOIDC(f.issuer, oidcAud, email, jwksURL, f.caFile)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func TestOIDC(t *testing.T) {
	f := newOIDCFixture(t)
	v := f.verifier(t, oidcEmail, "")
	rs := func(edit func(jwt.MapClaims)) string {
		c := f.claims()
		if edit != nil {
			edit(c)
		}
		return token(t, jwt.SigningMethodRS256, "rsa-1", f.rsaKey, c)
	}
	other := testRSAKey(t, 1)
	cases := []struct {
		name   string
		header http.Header
		reason string
	}{
		{"RS256", bearer(rs(nil)), ""},
		{"ES256", bearer(token(t, jwt.SigningMethodES256, "ec-1", f.ecKey, f.claims())), ""},
		{"audience in a list", bearer(rs(func(c jwt.MapClaims) { c["aud"] = []string{"other", oidcAud} })), ""},
		{"expired within the skew", bearer(rs(func(c jwt.MapClaims) { c["exp"] = clock.Add(-30 * time.Second).Unix() })), ""},
		{"not yet valid within the skew", bearer(rs(func(c jwt.MapClaims) { c["nbf"] = clock.Add(30 * time.Second).Unix() })), ""},
		{"email_verified as a string", bearer(rs(func(c jwt.MapClaims) { c["email_verified"] = "true" })), ""},
		{"scheme in lower case", http.Header{"Authorization": {"bearer " + rs(nil)}}, ""},

		{"expired", bearer(rs(func(c jwt.MapClaims) { c["exp"] = clock.Add(-2 * time.Minute).Unix() })), ReasonStale},
		{"not yet valid", bearer(rs(func(c jwt.MapClaims) { c["nbf"] = clock.Add(2 * time.Minute).Unix() })), ReasonStale},
		{"no exp", bearer(rs(func(c jwt.MapClaims) { delete(c, "exp") })), ReasonMalformed},
		{"other issuer", bearer(rs(func(c jwt.MapClaims) { c["iss"] = "https://accounts.example.com" })), ReasonMismatch},
		{"issuer with a trailing slash", bearer(rs(func(c jwt.MapClaims) { c["iss"] = f.issuer + "/" })), ReasonMismatch},
		{"no issuer", bearer(rs(func(c jwt.MapClaims) { delete(c, "iss") })), ReasonMalformed},
		{"other audience", bearer(rs(func(c jwt.MapClaims) { c["aud"] = "https://relay.example.com/hooks/other" })), ReasonMismatch},
		{"audience prefix", bearer(rs(func(c jwt.MapClaims) { c["aud"] = "https://relay.example.com/hooks/pubsub/x" })), ReasonMismatch},
		{"no audience", bearer(rs(func(c jwt.MapClaims) { delete(c, "aud") })), ReasonMalformed},
		{"other email", bearer(rs(func(c jwt.MapClaims) { c["email"] = "someone@my-project.iam.gserviceaccount.com" })), ReasonMismatch},
		{"email not verified", bearer(rs(func(c jwt.MapClaims) { c["email_verified"] = false })), ReasonMismatch},
		{"email_verified absent", bearer(rs(func(c jwt.MapClaims) { delete(c, "email_verified") })), ReasonMismatch},
		{"no email", bearer(rs(func(c jwt.MapClaims) { delete(c, "email") })), ReasonMismatch},
		{"signed by another key under a known kid", bearer(token(t, jwt.SigningMethodRS256, "rsa-1", other, f.claims())), ReasonMismatch},
		{"ES256 key used as RS256 kid", bearer(token(t, jwt.SigningMethodES256, "rsa-1", f.ecKey, f.claims())), ReasonMismatch},
		{"RS384", bearer(token(t, jwt.SigningMethodRS384, "rsa-1", f.rsaKey, f.claims())), ReasonMismatch},
		{"alg none", bearer(token(t, jwt.SigningMethodNone, "rsa-1", jwt.UnsafeAllowNoneSignatureType, f.claims())), ReasonMismatch},
		{"HS256 keyed with the public key", bearer(token(t, jwt.SigningMethodHS256, "rsa-1", f.rsaKey.PublicKey.N.Bytes(), f.claims())), ReasonMismatch},
		{"payload swapped", bearer(func() string {
			good := strings.Split(rs(nil), ".")
			evil := strings.Split(rs(func(c jwt.MapClaims) { c["sub"] = "evil" }), ".")
			return good[0] + "." + evil[1] + "." + good[2]
		}()), ReasonMismatch},
		{"signature stripped", bearer(func() string {
			p := strings.Split(rs(nil), ".")
			return p[0] + "." + p[1] + "."
		}()), ReasonMismatch},

		{"no header", http.Header{}, ReasonMissing},
		{"basic scheme", http.Header{"Authorization": {"Basic dTpw"}}, ReasonMalformed},
		{"bearer without token", http.Header{"Authorization": {"Bearer "}}, ReasonMalformed},
		{"not a JWT", bearer("opaque-token"), ReasonMalformed},
		{"four parts", bearer(rs(nil) + ".x"), ReasonMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := v.Verify(&Request{Header: c.header, Now: clock, Context: context.Background()})
			if got := reasonOf(err); got != c.reason {
				t.Fatalf("reason %q (%v), want %q", got, err, c.reason)
			}
			checkOutcome(t, err, strings.TrimPrefix(c.header.Get("Authorization"), "Bearer "))
		})
	}
	if n := f.discoveries.Load(); n != 1 {
		t.Errorf("discovery document fetched %d times, want 1", n)
	}
}

func TestOIDCWithoutEmail(t *testing.T) {
	f := newOIDCFixture(t)
	v := f.verifier(t, "", f.issuer+"/certs")
	c := f.claims()
	delete(c, "email")
	delete(c, "email_verified")
	if _, err := v.Verify(&Request{Header: bearer(token(t, jwt.SigningMethodRS256, "rsa-1", f.rsaKey, c)), Now: clock}); err != nil {
		t.Fatal(err)
	}
	if f.discoveries.Load() != 0 {
		t.Error("discovery fetched although jwks_url is set")
	}
	t.Run("a key published without kid serves any kid", func(t *testing.T) {
		k := rsaJWK("", &f.rsaKey.PublicKey)
		delete(k, "kid")
		f.publish(k)
		v := f.verifier(t, "", f.issuer+"/certs")
		if _, err := v.Verify(&Request{Header: bearer(token(t, jwt.SigningMethodRS256, "any", f.rsaKey, c)), Now: clock}); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(&Request{Header: bearer(token(t, jwt.SigningMethodRS256, "any", testRSAKey(t, 1), c)), Now: clock}); reasonOf(err) != ReasonMismatch {
			t.Fatalf("another key: %v", err)
		}
	})
	t.Run("no kid tries the keys of its alg", func(t *testing.T) {
		if _, err := v.Verify(&Request{Header: bearer(token(t, jwt.SigningMethodES256, "", f.ecKey, c)), Now: clock}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestOIDCKeyRotation(t *testing.T) {
	f := newOIDCFixture(t)
	v := f.verifier(t, "", "")
	now := time.Unix(5000, 0)
	v.keys.now = func() time.Time { return now }
	verify := func(kid string, key *rsa.PrivateKey) error {
		_, err := v.Verify(&Request{Header: bearer(token(t, jwt.SigningMethodRS256, kid, key, f.claims())), Now: clock})
		return err
	}
	if err := verify("rsa-1", f.rsaKey); err != nil {
		t.Fatal(err)
	}
	if n := f.jwksFetches.Load(); n != 1 {
		t.Fatalf("%d JWKS fetches, want 1", n)
	}
	if err := verify("rsa-1", f.rsaKey); err != nil || f.jwksFetches.Load() != 1 {
		t.Fatalf("a known kid refetched the JWKS, or failed: %v", err)
	}

	// The issuer rotates: a token with the new kid makes one fetch.
	newKey := testRSAKey(t, 2)
	f.publish(rsaJWK("rsa-2", &newKey.PublicKey), rsaJWK("rsa-1", &f.rsaKey.PublicKey))
	now = now.Add(2 * time.Minute)
	if err := verify("rsa-2", newKey); err != nil {
		t.Fatalf("new kid after rotation: %v", err)
	}
	if n := f.jwksFetches.Load(); n != 2 {
		t.Fatalf("%d JWKS fetches, want 2", n)
	}

	// Unknown kids within the minute fetch nothing more.
	for range 5 {
		if err := verify("rsa-unknown", newKey); reasonOf(err) != ReasonMismatch {
			t.Fatalf("unknown kid: %v", err)
		}
	}
	if n := f.jwksFetches.Load(); n != 2 {
		t.Fatalf("%d JWKS fetches within a minute, want 2", n)
	}
	now = now.Add(61 * time.Second)
	if err := verify("rsa-unknown", newKey); reasonOf(err) != ReasonMismatch {
		t.Fatalf("unknown kid: %v", err)
	}
	if n := f.jwksFetches.Load(); n != 3 {
		t.Fatalf("%d JWKS fetches a minute later, want 3", n)
	}

	// A key the issuer withdrew stops verifying once the set is refreshed
	// for its age.
	f.publish(rsaJWK("rsa-2", &newKey.PublicKey))
	now = now.Add(oidcMaxKeyAge + time.Minute)
	if err := verify("rsa-1", f.rsaKey); reasonOf(err) != ReasonMismatch {
		t.Fatalf("withdrawn key: %v, want mismatch", err)
	}
	if err := verify("rsa-2", newKey); err != nil {
		t.Fatal(err)
	}
}

func TestOIDCUnavailable(t *testing.T) {
	f := newOIDCFixture(t)
	f.failing.Store(true)
	v := f.verifier(t, "", "")
	now := time.Unix(5000, 0)
	v.keys.now = func() time.Time { return now }
	tok := token(t, jwt.SigningMethodRS256, "rsa-1", f.rsaKey, f.claims())
	for range 3 {
		_, err := v.Verify(&Request{Header: bearer(tok), Now: clock})
		var ve *Error
		if !errors.Is(err, ErrUnavailable) || errors.As(err, &ve) {
			t.Fatalf("JWKS down: %v, want ErrUnavailable", err)
		}
	}
	if n := f.jwksFetches.Load(); n != 1 {
		t.Fatalf("a failing JWKS fetched %d times at once", n)
	}
	f.failing.Store(false)
	now = now.Add(oidcRetryFailed + time.Second)
	if _, err := v.Verify(&Request{Header: bearer(tok), Now: clock}); err != nil {
		t.Fatalf("after the JWKS came back: %v", err)
	}
	t.Run("a forged token does not wait for keys", func(t *testing.T) {
		if _, err := v.Verify(&Request{Header: bearer("a.b.c"), Now: clock}); reasonOf(err) != ReasonMalformed {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestOIDCDiscovery(t *testing.T) {
	ca := newTestCA(t)
	var iss string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"issuer": "https://impostor.example", "jwks_uri": iss + "/certs"})
	})
	iss = ca.server(t, mux).URL
	v, err := newOIDC(iss, oidcAud, "", "", ca.caFile)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(&Request{Header: bearer(token(t, jwt.SigningMethodRS256, "k", testRSAKey(t, 0), jwt.MapClaims{"iss": iss})), Now: clock})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("discovery naming another issuer: %v", err)
	}
	t.Run("an untrusted server is not fetched from", func(t *testing.T) {
		v, err := newOIDC(iss, oidcAud, "", "", "") // no ca_file: the test CA is unknown
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(&Request{Header: bearer(token(t, jwt.SigningMethodRS256, "k", testRSAKey(t, 0), jwt.MapClaims{})), Now: clock})
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestParseJWKS(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	good := rsaJWK("good", &testRSAKey(t, 0).PublicKey)
	offCurve := ecJWK("off", &ec.PublicKey)
	offCurve["y"] = b64u(make([]byte, 32))
	with := func(m map[string]any, k string, v any) map[string]any {
		c := map[string]any{}
		for kk, vv := range m {
			c[kk] = vv
		}
		c[k] = v
		return c
	}
	set := func(keys ...map[string]any) []byte {
		b, _ := json.Marshal(map[string]any{"keys": keys})
		return b
	}
	keys, err := parseJWKS(set(
		good,
		ecJWK("ec", &ec.PublicKey),
		rsaJWK("small", &small.PublicKey),
		with(good, "use", "enc"),
		with(good, "alg", "RS512"),
		with(good, "e", b64u([]byte{2})),
		with(good, "n", "!!"),
		with(ecJWK("p384", &ec384.PublicKey), "crv", "P-384"),
		offCurve,
		map[string]any{"kty": "oct", "k": "c2VjcmV0"},
	))
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range keys {
		kids = append(kids, k.kid+"/"+k.alg)
	}
	if strings.Join(kids, ",") != "good/RS256,ec/ES256" {
		t.Fatalf("usable keys %v, want good/RS256 and ec/ES256", kids)
	}
	for _, bad := range []string{``, `[]`, `{"keys":[]}`, `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`, string(set(rsaJWK("small", &small.PublicKey)))} {
		if _, err := parseJWKS([]byte(bad)); err == nil {
			t.Errorf("parseJWKS(%.40s) accepted", bad)
		}
	}
}

func TestOIDCConfig(t *testing.T) {
	for _, c := range []struct {
		c    Spec
		want string
	}{
		{Spec{Type: "oidc", Issuer: "accounts.google.com", Audience: oidcAud}, `issuer: "accounts.google.com" is not an https URL (or set jwks_url)`},
		{Spec{Type: "oidc", Issuer: "https://accounts.google.com", Audience: oidcAud, JWKSURL: "http://www.googleapis.com/oauth2/v3/certs"}, `jwks_url: "http://www.googleapis.com/oauth2/v3/certs" is not an https URL`},
		{Spec{Type: "oidc", Issuer: "https://accounts.google.com", Audience: oidcAud, Topics: []string{"t"}}, "topics: not used by type oidc"},
		{Spec{Type: "oidc", Issuer: "https://accounts.google.com", Audience: oidcAud, CAFile: "/nonexistent.pem"}, "ca_file: open /nonexistent.pem: no such file or directory"},
		{Spec{Type: "bearer", Secrets: []string{"s"}, Audience: "a"}, "audience: not used by type bearer"},
	} {
		if _, err := New(c.c); err == nil || err.Error() != c.want {
			t.Errorf("New(%+v) = %v, want %s", c.c, err, c.want)
		}
	}
	// An issuer that is not a URL is fine with a jwks_url, and nothing is
	// fetched at load.
	v, err := New(Spec{Type: "oidc", Issuer: "accounts.google.com", Audience: oidcAud, JWKSURL: "https://127.0.0.1:1/certs"})
	if err != nil {
		t.Fatal(err)
	}
	if h := v.(*oidcVerifier).Headers(); len(h) != 1 || h[0] != "Authorization" {
		t.Errorf("Headers = %v", h)
	}
	if _, err := Sign(Spec{Type: "oidc", Issuer: "https://a", Audience: "b"}, nil, clock, ""); err == nil {
		t.Error("Sign made an OIDC token")
	}
}
