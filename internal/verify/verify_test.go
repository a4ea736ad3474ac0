package verify

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/samples"
)

var clock = time.Unix(1_700_000_000, 0)

func whsec(key string) string { return whsecPrefix + base64.StdEncoding.EncodeToString([]byte(key)) }

func pushBody(t testing.TB) []byte {
	t.Helper()
	b, err := samples.GitHub("push", "")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// scheme is one verify configuration under test, with what its failures
// look like.
type scheme struct {
	name          string
	cfg           Spec // Secrets filled per case
	secret, wrong string
	header        string            // the proof header, removed for "missing"
	malformed     map[string]string // header values that cannot be parsed
	bodyBound     bool              // the proof covers the body
	timestamped   bool
	replayKey     bool // Result.ReplayKey is set
}

func schemes() []scheme {
	hexMalformed := func(h, prefix string) map[string]string {
		return map[string]string{h: prefix + "zz-not-hex"}
	}
	return []scheme{
		{name: "github", cfg: Spec{Type: "github"}, secret: "gh-secret", wrong: "gh-wrong",
			header: "X-Hub-Signature-256", malformed: hexMalformed("X-Hub-Signature-256", "sha256="), bodyBound: true},
		{name: "github/no-prefix", cfg: Spec{Type: "github"}, secret: "gh-secret", wrong: "gh-wrong",
			header: "X-Hub-Signature-256", malformed: map[string]string{"X-Hub-Signature-256": "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}, bodyBound: true},
		{name: "github/short", cfg: Spec{Type: "github"}, secret: "gh-secret", wrong: "gh-wrong",
			header: "X-Hub-Signature-256", malformed: map[string]string{"X-Hub-Signature-256": "sha256=757107ea"}, bodyBound: true},
		{name: "gitlab/token", cfg: Spec{Type: "gitlab"}, secret: "gl-token", wrong: "gl-wrong",
			header: "X-Gitlab-Token", malformed: nil},
		{name: "gitlab/signing-token", cfg: Spec{Type: "gitlab"}, secret: whsec("gitlab signing key"), wrong: whsec("another key"),
			header: "Webhook-Signature", malformed: map[string]string{"Webhook-Timestamp": "yesterday"}, bodyBound: true, timestamped: true},
		{name: "standard-webhooks", cfg: Spec{Type: "standard-webhooks"}, secret: whsec("landing key bytes"), wrong: whsec("another key"),
			header: "Webhook-Signature", malformed: map[string]string{"Webhook-Signature": "v1,%%%not-base64%%%"}, bodyBound: true, timestamped: true},
		{name: "standard-webhooks/no-v1", cfg: Spec{Type: "standard-webhooks"}, secret: whsec("landing key bytes"), wrong: whsec("another key"),
			header: "Webhook-Signature", malformed: map[string]string{"Webhook-Signature": "v2,AAAA v1a,BBBB"}, bodyBound: true, timestamped: true},
		{name: "standard-webhooks/unprefixed-secret", cfg: Spec{Type: "standard-webhooks"}, secret: "cGxhaW4gc2VjcmV0IGJ5dGVz", wrong: "b3RoZXIgYnl0ZXM=",
			header: "Webhook-Id", malformed: map[string]string{"Webhook-Timestamp": "1e9"}, bodyBound: true, timestamped: true},
		{name: "hmac/sha256-hex-prefix", cfg: Spec{Type: "hmac", Header: "X-Signature", Prefix: "sha256="}, secret: "ci", wrong: "ic",
			header: "X-Signature", malformed: hexMalformed("X-Signature", "sha256="), bodyBound: true},
		{name: "hmac/sha1-hex", cfg: Spec{Type: "hmac", Header: "X-Hub-Signature", Algorithm: "sha1", Prefix: "sha1="}, secret: "legacy", wrong: "legacy2",
			header: "X-Hub-Signature", malformed: map[string]string{"X-Hub-Signature": "sha1=" + strings.Repeat("ab", 32)}, bodyBound: true},
		{name: "hmac/sha512-base64", cfg: Spec{Type: "hmac", Header: "X-Sig", Algorithm: "sha512", Encoding: "base64"}, secret: "k512", wrong: "k513",
			header: "X-Sig", malformed: map[string]string{"X-Sig": "!!!!"}, bodyBound: true},
		{name: "hmac/timestamped-custom", cfg: Spec{Type: "hmac", Header: "X-Timed", Timestamped: true, TimestampKey: "ts", SignatureKey: "sig", Separator: ";"},
			secret: "timed", wrong: "timed2", header: "X-Timed", malformed: map[string]string{"X-Timed": "ts=1;garbage"}, bodyBound: true, timestamped: true, replayKey: true},
		{name: "buildkite", cfg: Spec{Type: "buildkite"}, secret: "bk", wrong: "kb",
			header: "X-Buildkite-Signature", malformed: map[string]string{"X-Buildkite-Signature": "signature=" + strings.Repeat("00", 32)}, bodyBound: true, timestamped: true, replayKey: true},
		{name: "circleci", cfg: Spec{Type: "circleci"}, secret: "secret", wrong: "terces",
			header: "Circleci-Signature", malformed: map[string]string{"Circleci-Signature": "v2=" + strings.Repeat("00", 32)}, bodyBound: true},
		{name: "stripe", cfg: Spec{Type: "stripe"}, secret: "whsec_stripe_uses_this_string_verbatim", wrong: "whsec_other",
			header: "Stripe-Signature", malformed: map[string]string{"Stripe-Signature": "t=notanumber,v1=" + strings.Repeat("00", 32)}, bodyBound: true, timestamped: true, replayKey: true},
		{name: "bearer", cfg: Spec{Type: "bearer"}, secret: "bearer-token", wrong: "bearer-wrong",
			header: "Authorization", malformed: map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}},
	}
}

func withSecrets(c Spec, s ...string) Spec {
	c.Secrets = s
	return c
}

func mustSign(t testing.TB, c Spec, body []byte, at time.Time, id ...string) http.Header {
	t.Helper()
	if len(id) == 0 {
		id = []string{"msg_test_1"}
	}
	h, err := Sign(c, body, at, id[0])
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return h
}

func mustNew(t testing.TB, c Spec) Verifier {
	t.Helper()
	v, err := New(c)
	if err != nil {
		t.Fatalf("New(%+v): %v", c.Type, err)
	}
	return v
}

func TestVerifyTable(t *testing.T) {
	body := pushBody(t)
	type tc struct {
		name    string
		skip    func(s scheme) bool
		verify  []string // verifier's secrets, from the scheme
		signer  string   // secret the sender uses
		at      time.Duration
		mutate  func(s scheme, h http.Header, b []byte) []byte
		reason  string // "" = accepted
		reasonF func(s scheme) string
	}
	flip := func(_ scheme, _ http.Header, b []byte) []byte {
		b = bytes.Clone(b)
		b[len(b)/2] ^= 0x01
		return b
	}
	cases := []tc{
		{name: "good", signer: "secret"},
		{name: "wrong secret", signer: "wrong", reason: ReasonMismatch},
		{name: "flipped byte", signer: "secret", mutate: flip, reasonF: func(s scheme) string {
			if s.bodyBound {
				return ReasonMismatch
			}
			return "" // a token does not cover the body
		}},
		{name: "missing header", signer: "secret", reason: ReasonMissing, mutate: func(s scheme, h http.Header, b []byte) []byte {
			h.Del(s.header)
			return b
		}},
		{name: "malformed header", signer: "secret", reason: ReasonMalformed, skip: func(s scheme) bool { return s.malformed == nil },
			mutate: func(s scheme, h http.Header, b []byte) []byte {
				for k, v := range s.malformed {
					h.Set(k, v)
				}
				return b
			}},
		{name: "rotated secret", signer: "secret", verify: []string{"old", "secret"}},
		{name: "rotated secret, old one still sent", signer: "old", verify: []string{"old", "secret"}},
		{name: "stale timestamp", signer: "secret", at: -10 * time.Minute, reason: ReasonStale, skip: func(s scheme) bool { return !s.timestamped }},
		{name: "future timestamp", signer: "secret", at: 10 * time.Minute, reason: ReasonStale, skip: func(s scheme) bool { return !s.timestamped }},
		{name: "within tolerance", signer: "secret", at: -4 * time.Minute, skip: func(s scheme) bool { return !s.timestamped }},
	}
	for _, s := range schemes() {
		secretOf := func(k string) string {
			switch k {
			case "secret":
				return s.secret
			case "wrong":
				return s.wrong
			case "old":
				if strings.HasPrefix(s.secret, whsecPrefix) && s.cfg.Type != "stripe" || s.cfg.Type == "standard-webhooks" {
					return whsec("an old retired key")
				}
				return "old-" + s.secret
			}
			panic(k)
		}
		for _, c := range cases {
			if c.skip != nil && c.skip(s) {
				continue
			}
			t.Run(s.name+"/"+c.name, func(t *testing.T) {
				verifyWith := []string{s.secret}
				if c.verify != nil {
					verifyWith = nil
					for _, k := range c.verify {
						verifyWith = append(verifyWith, secretOf(k))
					}
				}
				v := mustNew(t, withSecrets(s.cfg, verifyWith...))
				h := mustSign(t, withSecrets(s.cfg, secretOf(c.signer)), body, clock.Add(c.at))
				b := body
				if c.mutate != nil {
					b = c.mutate(s, h, b)
				}
				res, err := v.Verify(&Request{Header: h, Body: b, Now: clock})
				want := c.reason
				if c.reasonF != nil {
					want = c.reasonF(s)
				}
				if want == "" {
					if err != nil {
						t.Fatalf("rejected: %v", err)
					}
					if s.replayKey != (res.ReplayKey != "") {
						t.Errorf("ReplayKey = %q, want set: %v", res.ReplayKey, s.replayKey)
					}
					return
				}
				var ve *Error
				if !errors.As(err, &ve) {
					t.Fatalf("err = %v (%T), want *Error with reason %s", err, err, want)
				}
				if ve.Reason != want {
					t.Fatalf("reason = %s (%v), want %s", ve.Reason, ve, want)
				}
				if !errors.Is(err, &Error{Reason: want}) {
					t.Errorf("errors.Is does not match reason %s", want)
				}
			})
		}
	}
}

func TestNone(t *testing.T) {
	v := mustNew(t, Spec{Type: "none"})
	for _, h := range []http.Header{nil, {}, {"X-Hub-Signature-256": {"sha256=00"}}} {
		if _, err := v.Verify(&Request{Header: h, Body: []byte("anything")}); err != nil {
			t.Errorf("none rejected %v: %v", h, err)
		}
	}
	h := mustSign(t, Spec{Type: "none"}, []byte("x"), clock)
	if len(h) != 0 {
		t.Errorf("none signed headers %v, want none", h)
	}
}

func TestReplayKeyIsHashOfHeader(t *testing.T) {
	body := []byte(`{"event":"build.finished"}`)
	c := Spec{Type: "buildkite", Secrets: []string{"bk"}}
	h := mustSign(t, c, body, clock)
	res, err := mustNew(t, c).Verify(&Request{Header: h, Body: body, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if want := replayKeyOf([]byte(h.Get("X-Buildkite-Signature"))); res.ReplayKey != want || len(want) != 64 {
		t.Errorf("ReplayKey = %q, want %q", res.ReplayKey, want)
	}
	h2 := mustSign(t, c, body, clock.Add(time.Second))
	res2, err := mustNew(t, c).Verify(&Request{Header: h2, Body: body, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if res2.ReplayKey == res.ReplayKey {
		t.Error("two deliveries signed at different times share a ReplayKey")
	}
}

// GitLab sends webhook-id on every delivery; only webhook-signature says the
// delivery is signed.
func TestGitLabChoosesOnWebhookSignature(t *testing.T) {
	body := []byte(`{"object_kind":"push"}`)
	token := "gl-token"
	signing := whsec("gitlab signing key")
	v := mustNew(t, Spec{Type: "gitlab", Secrets: []string{token, signing}})
	signed := mustSign(t, Spec{Type: "gitlab", Secrets: []string{signing}}, body, clock)

	cases := []struct {
		name   string
		header http.Header
		reason string
	}{
		{"token with webhook-id", http.Header{"X-Gitlab-Token": {token}, "Webhook-Id": {"abc"}}, ""},
		{"signed", signed, ""},
		{"signed and token", merge(signed, http.Header{"X-Gitlab-Token": {token}}), ""},
		{"good token does not excuse a bad signature", merge(signed, http.Header{"X-Gitlab-Token": {token}, "Webhook-Signature": {"v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}), ReasonMismatch},
		{"webhook-id alone", http.Header{"Webhook-Id": {"abc"}}, ReasonMissing},
		{"signing key is not a token", http.Header{"X-Gitlab-Token": {"gitlab signing key"}}, ReasonMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := v.Verify(&Request{Header: c.header, Body: body, Now: clock})
			if got := reasonOf(err); got != c.reason {
				t.Fatalf("reason = %q (%v), want %q", got, err, c.reason)
			}
		})
	}
}

func merge(hs ...http.Header) http.Header {
	out := http.Header{}
	for _, h := range hs {
		for k, v := range h {
			out[k] = v
		}
	}
	return out
}

func reasonOf(err error) string {
	if err == nil {
		return ""
	}
	var ve *Error
	if !errors.As(err, &ve) {
		return "not *Error: " + err.Error()
	}
	return ve.Reason
}

func TestBearerForms(t *testing.T) {
	v := mustNew(t, Spec{Type: "bearer", Secrets: []string{"tok-a", "tok-b"}})
	cases := []struct {
		auth, reason string
	}{
		{"Bearer tok-a", ""},
		{"bearer tok-b", ""},
		{"Bearer  tok-b ", ""},
		{"Bearer tok-c", ReasonMismatch},
		{"Bearer tok-a-longer", ReasonMismatch},
		{"Bearer ", ReasonMalformed},
		{"Bearer", ReasonMalformed},
		{"tok-a", ReasonMalformed},
		{"Basic tok-a", ReasonMalformed},
	}
	for _, c := range cases {
		_, err := v.Verify(&Request{Header: http.Header{"Authorization": {c.auth}}})
		if got := reasonOf(err); got != c.reason {
			t.Errorf("Authorization %q: reason %q (%v), want %q", c.auth, got, err, c.reason)
		}
	}
}

func TestPairHeaderForms(t *testing.T) {
	body := []byte("payload")
	c := Spec{Type: "stripe", Secrets: []string{"whsec_abc"}}
	v := mustNew(t, c)
	good := mustSign(t, c, body, clock).Get("Stripe-Signature")
	ts, sig, _ := strings.Cut(good, ",")
	zero := "v1=" + strings.Repeat("0", 64)
	cases := []struct {
		name, header, reason string
	}{
		{"as signed", good, ""},
		{"spaces after separators", ts + ", " + sig, ""},
		{"several v1, the good one last", ts + "," + zero + "," + sig, ""},
		{"several v1, the good one first", ts + "," + sig + "," + zero, ""},
		{"v0 entries skipped", ts + ",v0=" + strings.Repeat("f", 64) + "," + sig, ""},
		{"keys are case-sensitive", ts + "," + strings.ToUpper(sig), ReasonMalformed}, // V1 is not v1
		{"upper-case hex value", ts + ",v1=" + strings.ToUpper(sig[3:]), ""},
		{"trailing separator", good + ",", ""},
		{"signature first", sig + "," + ts, ""},
		{"only wrong v1", ts + "," + zero, ReasonMismatch},
		{"two timestamps", ts + "," + ts + "," + sig, ReasonMalformed},
		{"no timestamp", sig, ReasonMalformed},
		{"no signature", ts, ReasonMalformed},
		{"entry without =", ts + ",v1", ReasonMalformed},
		{"odd-length hex", ts + ",v1=abc", ReasonMalformed},
		{"hostile timestamp", "t=-9223372036854775808," + sig, ReasonStale},
		{"huge timestamp", "t=9223372036854775807," + sig, ReasonStale},
		{"overflowing timestamp", "t=99999999999999999999," + sig, ReasonMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(&Request{Header: http.Header{"Stripe-Signature": {tc.header}}, Body: body, Now: clock})
			if got := reasonOf(err); got != tc.reason {
				t.Fatalf("header %q: reason %q (%v), want %q", tc.header, got, err, tc.reason)
			}
		})
	}
}

func TestStandardWebhooksSignatureList(t *testing.T) {
	body := []byte(`{"a":1}`)
	c := Spec{Type: "standard-webhooks", Secrets: []string{whsec("k")}}
	v := mustNew(t, c)
	h := mustSign(t, c, body, clock)
	good := h.Get("Webhook-Signature")
	bogus := "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	cases := []struct{ sig, reason string }{
		{good, ""},
		{bogus + " " + good, ""},
		{"v1a,whatever " + good, ""},
		{good + " v2,xyz", ""},
		{"v2,xyz nocomma " + good, ""},
		{bogus, ReasonMismatch},
		{"v1a," + strings.TrimPrefix(good, "v1,"), ReasonMalformed},
		{"nocomma", ReasonMalformed},
		{"v1,", ReasonMalformed},
	}
	for _, tc := range cases {
		hh := h.Clone()
		hh.Set("Webhook-Signature", tc.sig)
		_, err := v.Verify(&Request{Header: hh, Body: body, Now: clock})
		if got := reasonOf(err); got != tc.reason {
			t.Errorf("webhook-signature %q: reason %q (%v), want %q", tc.sig, got, err, tc.reason)
		}
	}
	// The id and timestamp are signed: changing either breaks the signature.
	for k, changed := range map[string]string{"Webhook-Id": "msg_test_2", "Webhook-Timestamp": "1700000001"} {
		hh := h.Clone()
		hh.Set(k, changed)
		if _, err := v.Verify(&Request{Header: hh, Body: body, Now: clock}); reasonOf(err) != ReasonMismatch {
			t.Errorf("changed %s: %v, want mismatch", k, err)
		}
	}
}

func TestZeroNowMeansTimeNow(t *testing.T) {
	body := []byte("x")
	c := Spec{Type: "stripe", Secrets: []string{"s"}}
	h := mustSign(t, c, body, time.Time{})
	if _, err := mustNew(t, c).Verify(&Request{Header: h, Body: body}); err != nil {
		t.Fatalf("signed now, verified now: %v", err)
	}
}

func TestToleranceSetting(t *testing.T) {
	body := []byte("x")
	c := Spec{Type: "standard-webhooks", Secrets: []string{whsec("k")}, Tolerance: time.Hour}
	h := mustSign(t, c, body, clock.Add(-50*time.Minute))
	if _, err := mustNew(t, c).Verify(&Request{Header: h, Body: body, Now: clock}); err != nil {
		t.Fatalf("50m old with 1h tolerance: %v", err)
	}
	h = mustSign(t, c, body, clock.Add(-61*time.Minute))
	if _, err := mustNew(t, c).Verify(&Request{Header: h, Body: body, Now: clock}); reasonOf(err) != ReasonStale {
		t.Fatalf("61m old with 1h tolerance: %v, want stale", err)
	}
}

func TestConcurrentVerify(t *testing.T) {
	body := pushBody(t)
	for _, s := range schemes() {
		c := withSecrets(s.cfg, "other", s.secret)
		if strings.HasPrefix(s.secret, whsecPrefix) && s.cfg.Type != "stripe" || s.cfg.Type == "standard-webhooks" {
			c = withSecrets(s.cfg, whsec("other"), s.secret)
		}
		v := mustNew(t, c)
		good := mustSign(t, withSecrets(s.cfg, s.secret), body, clock)
		bad := mustSign(t, withSecrets(s.cfg, s.wrong), body, clock)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 50 {
					h, want := good, ""
					if (g+i)%2 == 1 {
						h, want = bad, ReasonMismatch
					}
					if _, err := v.Verify(&Request{Header: h, Body: body, Now: clock}); reasonOf(err) != want {
						t.Errorf("%s: got %v, want %q", s.name, err, want)
						return
					}
				}
			})
		}
		wg.Wait()
	}
}

func TestTypesAllHaveBuilders(t *testing.T) {
	if len(Types) != len(builders) {
		t.Fatalf("Types has %d entries, builders %d", len(Types), len(builders))
	}
	for _, ty := range Types {
		if builders[ty] == nil {
			t.Errorf("type %s has no builder", ty)
		}
	}
	for _, r := range []string{ReasonMissing, ReasonMismatch, ReasonStale, ReasonMalformed} {
		if !slices.Contains(Reasons, r) {
			t.Errorf("Reasons lacks %s", r)
		}
	}
}

func TestNewErrors(t *testing.T) {
	cases := []struct {
		name string
		c    Spec
		want string // the whole message
	}{
		{"no type", Spec{}, `type: "" is not one of github, gitlab, standard-webhooks, hmac, buildkite, circleci, stripe, bearer, none, sns, oidc, basic, bitbucket, gitea, forgejo`},
		{"unknown type", Spec{Type: "GitHub", Secrets: []string{"s"}}, `type: "GitHub" is not one of github, gitlab, standard-webhooks, hmac, buildkite, circleci, stripe, bearer, none, sns, oidc, basic, bitbucket, gitea, forgejo`},
		{"no secrets", Spec{Type: "github"}, "secrets: at least one secret is required"},
		{"no secrets bearer", Spec{Type: "bearer", Secrets: []string{}}, "secrets: at least one secret is required"},
		{"bad algorithm", Spec{Type: "hmac", Header: "X-S", Algorithm: "md5", Secrets: []string{"s"}}, `algorithm: "md5" is not one of sha1, sha256, sha512`},
		{"bad encoding", Spec{Type: "hmac", Header: "X-S", Encoding: "base32", Secrets: []string{"s"}}, `encoding: "base32" is not one of hex, base64`},
		{"hmac without header", Spec{Type: "hmac", Secrets: []string{"s"}}, "header: required for type hmac"},
		{"bad header name", Spec{Type: "hmac", Header: "X Sig:", Secrets: []string{"s"}}, `header: "X Sig:" is not a valid header name`},
		{"preset header override checked", Spec{Type: "circleci", Header: "bad header", Secrets: []string{"s"}}, `header: "bad header" is not a valid header name`},
		{"bad whsec", Spec{Type: "standard-webhooks", Secrets: []string{"whsec_not*base64"}}, "secrets[0]: whsec_ secret is not valid base64"},
		{"bad whsec in gitlab", Spec{Type: "gitlab", Secrets: []string{"tok", "whsec_***"}}, "secrets[1]: whsec_ secret is not valid base64"},
		{"empty whsec", Spec{Type: "standard-webhooks", Secrets: []string{"whsec_"}}, "secrets[0]: whsec_ secret is empty"},
		{"field not used by type", Spec{Type: "bearer", Algorithm: "sha256", Secrets: []string{"s"}}, "algorithm: not used by type bearer"},
		{"header on standard-webhooks", Spec{Type: "standard-webhooks", Header: "X-S", Secrets: []string{"s"}}, "header: not used by type standard-webhooks"},
		{"timestamped on gitlab", Spec{Type: "gitlab", Timestamped: true, Secrets: []string{"s"}}, "timestamped: not used by type gitlab"},
		{"none with secrets", Spec{Type: "none", Secrets: []string{"s"}}, "secrets: not used by type none (nothing would be verified)"},
		{"none with header", Spec{Type: "none", Header: "X-S"}, "header: not used by type none"},
		{"prefix with pairs", Spec{Type: "hmac", Header: "X-S", Timestamped: true, Prefix: "p=", Secrets: []string{"s"}}, "prefix: not used when the header holds key=value pairs (timestamped or signature_key)"},
		{"separator with =", Spec{Type: "hmac", Header: "X-S", Timestamped: true, Separator: "=", Secrets: []string{"s"}}, `separator: "=" must not contain "="`},
		{"same keys", Spec{Type: "hmac", Header: "X-S", Timestamped: true, TimestampKey: "v1", Secrets: []string{"s"}}, `timestamp_key: "v1" is also the signature_key`},
		{"key with separator", Spec{Type: "hmac", Header: "X-S", SignatureKey: "a,b", Secrets: []string{"s"}}, `signature_key: "a,b" must not contain "=", the separator, or surrounding spaces`},
		{"timestamp_key untimed", Spec{Type: "hmac", Header: "X-S", TimestampKey: "t", Secrets: []string{"s"}}, "timestamp_key: only used when timestamped is true"},
		{"timestamp_key with untimed pairs", Spec{Type: "circleci", TimestampKey: "t", Secrets: []string{"s"}}, "timestamp_key: only used when timestamped is true"},
		{"separator untimed", Spec{Type: "hmac", Header: "X-S", Separator: ";", Secrets: []string{"s"}}, "separator: only used when timestamped is true or signature_key is set"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := New(c.c)
			if err == nil {
				t.Fatalf("New accepted %+v as %T", c.c, v)
			}
			if err.Error() != c.want {
				t.Fatalf("error\n got: %s\nwant: %s", err, c.want)
			}
			if _, serr := Sign(c.c, nil, clock, ""); serr == nil || serr.Error() != c.want {
				t.Errorf("Sign error = %v, want the same as New", serr)
			}
		})
	}
}

func TestNewAccepts(t *testing.T) {
	for _, c := range []Spec{
		{Type: "github", Secrets: []string{"s"}},
		{Type: "github", Secrets: []string{"s"}, Tolerance: time.Minute}, // a shared default is harmless
		{Type: "github", Header: "X-Hub-Signature", Algorithm: "sha1", Prefix: "sha1=", Secrets: []string{"s"}},
		{Type: "hmac", Header: "x-signature", Secrets: []string{"s"}},
		{Type: "hmac", Header: "X-S", SignatureKey: "v1", Secrets: []string{"s"}},
		{Type: "stripe", Tolerance: 10 * time.Minute, Secrets: []string{"s"}},
		{Type: "buildkite", Separator: ";", Secrets: []string{"s"}},
		{Type: "none"},
		{Type: "gitlab", Secrets: []string{"plain", whsec("signing")}},
	} {
		if _, err := New(c); err != nil {
			t.Errorf("New(%+v): %v", c, err)
		}
	}
}

// TestHeaders: each verifier names the headers its credential arrives in,
// the ones ingest hides from routes.
func TestHeaders(t *testing.T) {
	for _, tc := range []struct {
		c    Spec
		want []string
	}{
		{Spec{Type: "github", Secrets: []string{"s"}}, []string{"X-Hub-Signature-256"}},
		{Spec{Type: "github", Header: "x-hub-signature", Algorithm: "sha1", Prefix: "sha1=", Secrets: []string{"s"}}, []string{"X-Hub-Signature"}},
		{Spec{Type: "gitlab", Secrets: []string{"s"}}, []string{"X-Gitlab-Token", "Webhook-Signature"}},
		{Spec{Type: "standard-webhooks", Secrets: []string{"c2VjcmV0"}}, []string{"Webhook-Signature"}},
		{Spec{Type: "hmac", Header: "x-my-sig", Secrets: []string{"s"}}, []string{"X-My-Sig"}},
		{Spec{Type: "buildkite", Secrets: []string{"s"}}, []string{"X-Buildkite-Signature"}},
		{Spec{Type: "circleci", Secrets: []string{"s"}}, []string{"Circleci-Signature"}},
		{Spec{Type: "stripe", Secrets: []string{"s"}}, []string{"Stripe-Signature"}},
		{Spec{Type: "bearer", Secrets: []string{"s"}}, []string{"Authorization"}},
		{Spec{Type: "none"}, nil},
		{Spec{Type: "bitbucket", Secrets: []string{"s"}}, []string{"X-Hub-Signature"}},
		{Spec{Type: "gitea", Secrets: []string{"s"}}, []string{"X-Gitea-Signature"}},
		{Spec{Type: "forgejo", Secrets: []string{"s"}}, []string{"X-Forgejo-Signature"}},
		{Spec{Type: "basic", Username: "u", Secrets: []string{"s"}}, []string{"Authorization"}},
		{Spec{Type: "oidc", Issuer: "https://accounts.google.com", Audience: "a"}, []string{"Authorization"}},
		{Spec{Type: "sns"}, nil},
	} {
		v := mustNew(t, tc.c)
		if got := v.Headers(); !slices.Equal(got, tc.want) {
			t.Errorf("%s %s: Headers() = %q, want %q", tc.c.Type, tc.c.Header, got, tc.want)
		}
	}
}

// TestHeaderOnly: only proofs that travel in headers are checked before
// the body is read; every body-signing scheme needs the body.
func TestHeaderOnly(t *testing.T) {
	sig := http.Header{"Webhook-Signature": {"v1,x"}}
	for _, tc := range []struct {
		typ  string
		hdr  http.Header
		want bool
	}{
		{"bearer", nil, true},
		{"none", nil, true},
		{"gitlab", http.Header{"X-Gitlab-Token": {"t"}}, true},
		{"gitlab", sig, false},
		{"github", nil, false},
		{"hmac", nil, false},
		{"standard-webhooks", sig, false},
		{"stripe", nil, false},
	} {
		s := Spec{Type: tc.typ, Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}
		if tc.typ == "none" {
			s.Secrets = nil
		}
		if tc.typ == "hmac" {
			s.Header = "X-Sig"
		}
		v, err := New(s)
		if err != nil {
			t.Fatalf("%s: %v", tc.typ, err)
		}
		ho, ok := v.(HeaderOnly)
		got := ok && ho.HeaderOnly(tc.hdr)
		if got != tc.want {
			t.Errorf("%s with %v: header only = %v, want %v", tc.typ, tc.hdr, got, tc.want)
		}
	}
}
