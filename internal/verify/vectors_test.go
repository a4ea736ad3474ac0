package verify

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Published vectors, as the senders document them.
const (
	ghSecret = "It's a Secret to Everybody"
	ghBody   = "Hello, World!"
	ghSig    = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

	swSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	swMsgID  = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	swTS     = "1614265330"
	swBody   = `{"test": 2432232314}`
	swSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

	ccSecret = "secret"
	ccBody1  = "hello world"
	ccSig1   = "v1=734cc62f32841568f45715aeb9f4d7891324e6d948e4c6c60c0621cdac48623a"
	ccBody2  = "foo"
	ccSig2   = "773ba44693c7553d6ee20f61ea5d2757a9a4f4a44d2841ae4e95b52e4cd62db4"
)

var swClock = time.Unix(1614265330, 0)

func swHeader(sig string) http.Header {
	return http.Header{"Webhook-Id": {swMsgID}, "Webhook-Timestamp": {swTS}, "Webhook-Signature": {sig}}
}

func TestGitHubVector(t *testing.T) {
	c := Spec{Type: "github", Secrets: []string{ghSecret}}
	v := mustNew(t, c)
	cases := []struct {
		name, body, sig, reason string
	}{
		{"documented", ghBody, ghSig, ""},
		{"upper-case hex", ghBody, "sha256=" + strings.ToUpper(ghSig[7:]), ""},
		{"flipped body byte", "Hello, World?", ghSig, ReasonMismatch},
		{"flipped signature digit", ghBody, ghSig[:len(ghSig)-1] + "6", ReasonMismatch},
		{"sha1 prefix", ghBody, "sha1=" + ghSig[7:], ReasonMalformed},
		{"missing", ghBody, "", ReasonMissing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.sig != "" {
				h.Set("X-Hub-Signature-256", tc.sig)
			}
			res, err := v.Verify(&Request{Header: h, Body: []byte(tc.body)})
			if got := reasonOf(err); got != tc.reason {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.reason)
			}
			if res.ReplayKey != "" {
				t.Errorf("GitHub sends a delivery id; ReplayKey = %q, want empty", res.ReplayKey)
			}
		})
	}
	t.Run("wrong secret", func(t *testing.T) {
		v := mustNew(t, Spec{Type: "github", Secrets: []string{"It's a Secret to Nobody"}})
		_, err := v.Verify(&Request{Header: http.Header{"X-Hub-Signature-256": {ghSig}}, Body: []byte(ghBody)})
		if reasonOf(err) != ReasonMismatch {
			t.Fatalf("got %v, want mismatch", err)
		}
	})
	t.Run("Sign reproduces it", func(t *testing.T) {
		if got := mustSign(t, c, []byte(ghBody), time.Time{}).Get("X-Hub-Signature-256"); got != ghSig {
			t.Fatalf("Sign = %s, want %s", got, ghSig)
		}
	})
}

func TestStandardWebhooksVector(t *testing.T) {
	for _, ty := range []string{"standard-webhooks", "gitlab"} {
		c := Spec{Type: ty, Secrets: []string{swSecret}}
		v := mustNew(t, c)
		cases := []struct {
			name   string
			header http.Header
			body   string
			now    time.Time
			reason string
		}{
			{"documented", swHeader(swSig), swBody, swClock, ""},
			{"among other entries", swHeader("v1,Zm9v v1a,abc " + swSig + " v2,xyz"), swBody, swClock, ""},
			{"4m59s later", swHeader(swSig), swBody, swClock.Add(299 * time.Second), ""},
			{"5m1s later", swHeader(swSig), swBody, swClock.Add(301 * time.Second), ReasonStale},
			{"5m1s earlier", swHeader(swSig), swBody, swClock.Add(-301 * time.Second), ReasonStale},
			{"flipped body byte", swHeader(swSig), `{"test": 2432232315}`, swClock, ReasonMismatch},
		}
		for _, tc := range cases {
			t.Run(ty+"/"+tc.name, func(t *testing.T) {
				_, err := v.Verify(&Request{Header: tc.header, Body: []byte(tc.body), Now: tc.now})
				if got := reasonOf(err); got != tc.reason {
					t.Fatalf("reason %q (%v), want %q", got, err, tc.reason)
				}
			})
		}
		t.Run(ty+"/Sign reproduces it", func(t *testing.T) {
			h := mustSign(t, c, []byte(swBody), swClock, swMsgID)
			if h.Get("Webhook-Signature") != swSig || h.Get("Webhook-Timestamp") != swTS || h.Get("Webhook-Id") != swMsgID {
				t.Fatalf("Sign = %v", h)
			}
		})
	}
	// The reference libraries strip an optional whsec_ and base64-decode
	// the rest, so the secret without its prefix is the same key.
	unprefixed := strings.TrimPrefix(swSecret, whsecPrefix)
	t.Run("without whsec_", func(t *testing.T) {
		c := Spec{Type: "standard-webhooks", Secrets: []string{unprefixed}}
		v := mustNew(t, c)
		if _, err := v.Verify(&Request{Header: swHeader(swSig), Body: []byte(swBody), Now: swClock}); err != nil {
			t.Fatalf("secret without whsec_: %v", err)
		}
		if h := mustSign(t, c, []byte(swBody), swClock, swMsgID); h.Get("Webhook-Signature") != swSig {
			t.Fatalf("Sign = %v, want %s", h, swSig)
		}
	})
	t.Run("the raw key bytes are not the secret", func(t *testing.T) {
		raw, _ := base64.StdEncoding.DecodeString(unprefixed)
		if _, err := New(Spec{Type: "standard-webhooks", Secrets: []string{string(raw)}}); err == nil {
			t.Fatal("New accepted raw key bytes, which are not base64")
		}
		// A base64-looking secret is decoded, not used as its own bytes.
		v := mustNew(t, Spec{Type: "standard-webhooks", Secrets: []string{"c2VjcmV0"}})
		sum := macOnce(swAlg, []byte("c2VjcmV0"), []byte(swMsgID+"."+swTS+"."), []byte(swBody))
		h := swHeader("v1," + base64.StdEncoding.EncodeToString(sum))
		if _, err := v.Verify(&Request{Header: h, Body: []byte(swBody), Now: swClock}); !errors.Is(err, ErrMismatch) {
			t.Fatalf("signature made with the undecoded secret: %v, want a mismatch", err)
		}
	})
}

func TestCircleCIVectors(t *testing.T) {
	c := Spec{Type: "circleci", Secrets: []string{ccSecret}}
	v := mustNew(t, c)
	cases := []struct {
		name, body, header, reason string
	}{
		{"hello world", ccBody1, ccSig1, ""},
		{"foo", ccBody2, "v1=" + ccSig2, ""},
		{"with a v2 entry", ccBody2, "v1=" + ccSig2 + ",v2=" + strings.Repeat("ab", 40), ""},
		{"v2 first", ccBody1, "v2=whatever," + ccSig1, ""},
		{"only v2 is not checked", ccBody2, "v2=" + ccSig2, ReasonMalformed},
		{"swapped", ccBody1, "v1=" + ccSig2, ReasonMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(&Request{Header: http.Header{"Circleci-Signature": {tc.header}}, Body: []byte(tc.body)})
			if got := reasonOf(err); got != tc.reason {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.reason)
			}
		})
	}
	if got := mustSign(t, c, []byte(ccBody1), time.Time{}).Get("circleci-signature"); got != ccSig1 {
		t.Errorf("Sign = %s, want %s", got, ccSig1)
	}
}

// The same vectors through the generic form the presets stand for.
func TestPresetsAreGenericHMAC(t *testing.T) {
	body := []byte("generic")
	cases := []struct{ preset, generic Spec }{
		{Spec{Type: "github"}, Spec{Type: "hmac", Header: "X-Hub-Signature-256", Prefix: "sha256="}},
		{Spec{Type: "circleci"}, Spec{Type: "hmac", Header: "circleci-signature", SignatureKey: "v1"}},
		{Spec{Type: "stripe"}, Spec{Type: "hmac", Header: "Stripe-Signature", Timestamped: true}},
		{Spec{Type: "buildkite"}, Spec{Type: "hmac", Header: "X-Buildkite-Signature", Timestamped: true, TimestampKey: "timestamp", SignatureKey: "signature"}},
	}
	for _, c := range cases {
		p, g := withSecrets(c.preset, "k"), withSecrets(c.generic, "k")
		hp, hg := mustSign(t, p, body, clock), mustSign(t, g, body, clock)
		if hp.Get(c.generic.Header) != hg.Get(c.generic.Header) {
			t.Errorf("%s: preset signs %v, generic %v", c.preset.Type, hp, hg)
		}
		if _, err := mustNew(t, g).Verify(&Request{Header: hp, Body: body, Now: clock}); err != nil {
			t.Errorf("%s: generic form rejects the preset's signature: %v", c.preset.Type, err)
		}
	}
}

// No failure message may carry a secret, the signature that would have
// matched, or the signature that was sent.
func TestErrorsNeverLeak(t *testing.T) {
	body := pushBody(t)
	var checked int
	for _, s := range schemes() {
		c := withSecrets(s.cfg, s.secret)
		v := mustNew(t, c)
		good := mustSign(t, c, body, clock)
		sent := mustSign(t, withSecrets(s.cfg, s.wrong), body, clock)
		forbidden := []string{s.secret, s.wrong}
		for _, h := range []http.Header{good, sent} {
			for _, vals := range h {
				for _, val := range vals {
					forbidden = append(forbidden, val, lastField(val))
				}
			}
		}
		for _, sec := range []string{s.secret, s.wrong} {
			if k, err := swKey(sec, true); err == nil {
				forbidden = append(forbidden, string(k), hex.EncodeToString(k), strings.TrimPrefix(sec, whsecPrefix))
			}
		}
		stale := mustSign(t, withSecrets(s.cfg, s.wrong), body, clock.Add(-time.Hour))
		flipped := []byte(strings.Replace(string(body), "a", "b", 1))
		reqs := []*Request{
			{Header: sent, Body: body, Now: clock},
			{Header: good, Body: flipped, Now: clock},
			{Header: stale, Body: body, Now: clock},
			{Header: http.Header{}, Body: body, Now: clock},
		}
		if s.malformed != nil {
			h := good.Clone()
			for k, v := range s.malformed {
				h.Set(k, v)
			}
			reqs = append(reqs, &Request{Header: h, Body: body, Now: clock})
		}
		for _, r := range reqs {
			_, err := v.Verify(r)
			if err == nil {
				continue
			}
			checked++
			msg := err.Error()
			for _, f := range forbidden {
				if len(f) >= 4 && strings.Contains(msg, f) {
					t.Errorf("%s: error %q contains %q", s.name, msg, f)
				}
			}
		}
	}
	if checked < 3*len(schemes()) {
		t.Fatalf("only %d failures checked", checked)
	}
	// Config errors about a secret do not quote it either.
	for _, c := range []Spec{
		{Type: "standard-webhooks", Secrets: []string{"whsec_sup3r*s3cret"}},
		{Type: "gitlab", Secrets: []string{"tok", "whsec_sup3r*s3cret"}},
	} {
		if _, err := New(c); err == nil || strings.Contains(err.Error(), "sup3r") {
			t.Errorf("New error %v", err)
		}
	}
}

// lastField is the signature part of a header value: after the last "=" or
// "," separator, whichever the scheme uses.
func lastField(v string) string {
	if i := strings.LastIndexAny(strings.TrimRight(v, "="), "=, "); i >= 0 {
		return v[i+1:]
	}
	return v
}

// Every type round-trips: what Sign produces, Verify accepts, and a change
// of secret or body (where the body is covered) is refused.
func TestSignRoundTrip(t *testing.T) {
	secret := func(ty string) string {
		if ty == "standard-webhooks" {
			return whsec("round trip key")
		}
		return "round-trip-secret"
	}
	configs := []Spec{
		{Type: "hmac", Header: "X-Sig", Algorithm: "sha1"},
		{Type: "hmac", Header: "X-Sig", Algorithm: "sha512", Encoding: "base64", Prefix: "sha512="},
		{Type: "hmac", Header: "X-Sig", Timestamped: true, Separator: " ", TimestampKey: "time", SignatureKey: "mac", Encoding: "base64"},
		{Type: "hmac", Header: "X-Sig", SignatureKey: "s"},
		{Type: "github", Header: "X-Hub-Signature", Algorithm: "sha1", Prefix: "sha1="},
		{Type: "gitlab", Secrets: []string{whsec("signing token")}},
	}
	for _, ty := range Types {
		if ty == "sns" || ty == "oidc" {
			continue // signed with the sender's own keys: see sns_test.go and oidc_test.go
		}
		c := Spec{Type: ty}
		switch ty {
		case "hmac":
			c.Header = "X-Signature"
		case "basic":
			c.Username = "relay"
		}
		configs = append(configs, c)
	}
	bodies := [][]byte{nil, []byte("x"), pushBody(t)}
	for _, c := range configs {
		if c.Secrets == nil && c.Type != "none" {
			c.Secrets = []string{secret(c.Type)}
		}
		v := mustNew(t, c)
		for _, b := range bodies {
			for _, at := range []time.Time{clock, clock.Add(-time.Minute)} {
				h, err := Sign(c, b, at, "")
				if err != nil {
					t.Fatalf("%+v: Sign: %v", c, err)
				}
				if _, err := v.Verify(&Request{Header: h, Body: b, Now: clock}); err != nil {
					t.Errorf("%+v body %d bytes: round trip rejected: %v (headers %v)", c, len(b), err, h)
				}
			}
		}
	}
}
