package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// FuzzSNSMessage: whatever the body, Verify passes only a message whose
// signature encoding/json's reading of the same body also verifies, so
// the strict parser and the parser ingest routes with cannot disagree on
// what was signed.
func FuzzSNSMessage(f *testing.F) {
	key := testRSAKey(f, 0)
	base := "https://127.0.0.1/SimpleNotificationService-test.pem"
	for _, typ := range []string{snsNotification, snsSubscribe, snsUnsubscribe} {
		for _, ver := range []string{"1", "2"} {
			m := (&snsFixture{base: "https://127.0.0.1"}).msg(typ, func(m map[string]any) {
				m["SignatureVersion"] = ver
				m["SigningCertURL"] = base
			})
			snsSign(f, m, key)
			f.Add(snsBody(f, m))
		}
	}
	f.Add([]byte(`{"Type":"Notification","Type":"Notification"}`))
	f.Add([]byte(`{"Type":null,"Message":5}`))
	f.Add([]byte("{\"Message\":\"\xff\"}"))
	f.Add([]byte(`{} {}`))
	v, err := newSNS(nil, []string{"127.0.0.1"}, "")
	if err != nil {
		f.Fatal(err)
	}
	v.certs = newCertCache(4, func(context.Context, string) (*rsa.PublicKey, error) { return &key.PublicKey, nil })
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a SubscribeURL is never fetched
	f.Fuzz(func(t *testing.T, body []byte) {
		_, err := v.Verify(&Request{Body: body, Context: ctx})
		if errors.Is(err, ErrUnavailable) {
			return
		}
		checkOutcome(t, err)
		if err != nil {
			return
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("accepted a body encoding/json refuses: %v", err)
		}
		keys := []string{"Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"}
		if m["Type"] != snsNotification {
			keys = []string{"Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"}
		}
		var b strings.Builder
		for _, k := range keys {
			if s, ok := m[k].(string); ok {
				b.WriteString(k + "\n" + s + "\n")
			}
		}
		sig, _ := base64.StdEncoding.DecodeString(m["Signature"].(string))
		var verr error
		if m["SignatureVersion"] == "1" {
			d := sha1.Sum([]byte(b.String()))
			verr = rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA1, d[:], sig)
		} else {
			d := sha256.Sum256([]byte(b.String()))
			verr = rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, d[:], sig)
		}
		if verr != nil {
			t.Fatalf("accepted a message that encoding/json reads differently: %v", verr)
		}
	})
}

// FuzzParseJWKS: every key parseJWKS returns is one RS256 or ES256 can use.
func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"","y":""}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`))
	good, _ := json.Marshal(map[string]any{"keys": []any{rsaJWK("r", &testRSAKey(f, 0).PublicKey)}})
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := parseJWKS(b)
		if err != nil {
			if len(keys) != 0 {
				t.Fatal("keys with an error")
			}
			return
		}
		for _, k := range keys {
			switch pub := k.key.(type) {
			case *rsa.PublicKey:
				if k.alg != "RS256" || pub.N.BitLen() < 2048 || pub.E < 3 {
					t.Fatalf("weak or mislabelled RSA key %s", k.alg)
				}
			case *ecdsa.PublicKey:
				if k.alg != "ES256" || pub.Curve.Params().Name != "P-256" {
					t.Fatalf("wrong EC key %s", k.alg)
				}
			default:
				t.Fatalf("key of type %T", pub)
			}
		}
	})
}

// FuzzBasic: only the configured user and password pass.
func FuzzBasic(f *testing.F) {
	f.Add("Basic cmVsYXk6cHc=")
	f.Add("Basic cmVsYXk6")
	f.Add("basic  cmVsYXk6cHc=  ")
	f.Add("Bearer x")
	v := newBasic("relay", []string{"pw"})
	f.Fuzz(func(t *testing.T, auth string) {
		_, err := v.Verify(&Request{Header: http.Header{"Authorization": {auth}}})
		checkOutcome(t, err)
		if err != nil {
			return
		}
		_, cred, _ := strings.Cut(strings.TrimSpace(auth), " ")
		raw, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		if string(raw) != "relay:pw" {
			t.Fatalf("accepted %q", raw)
		}
	})
}
