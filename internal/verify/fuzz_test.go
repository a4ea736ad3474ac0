package verify

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// checkOutcome holds for every verification: it either passes or fails with
// an *Error whose reason is in the fixed set and whose text carries none of
// the forbidden strings.
func checkOutcome(t *testing.T, err error, forbidden ...string) {
	t.Helper()
	if err == nil {
		return
	}
	var ve *Error
	if !errors.As(err, &ve) {
		t.Fatalf("error %v is %T, want *Error", err, err)
	}
	if !slices.Contains(Reasons, ve.Reason) {
		t.Fatalf("reason %q not in %v", ve.Reason, Reasons)
	}
	for _, f := range forbidden {
		if len(f) >= 8 && strings.Contains(ve.Msg, f) {
			t.Fatalf("error %q leaks %q", ve.Msg, f)
		}
	}
}

func FuzzGitHub(f *testing.F) {
	f.Add([]byte(ghBody), ghSig)
	f.Add([]byte(ghBody), "sha256="+strings.ToUpper(ghSig[7:]))
	f.Add([]byte("Hello, World?"), ghSig)
	f.Add([]byte(""), "sha256=")
	f.Add([]byte("{}"), "sha1=0123")
	c := Spec{Type: "github", Secrets: []string{"rotated-out", ghSecret}}
	v := mustNew(f, c)
	signer := withSecrets(c, ghSecret)
	f.Fuzz(func(t *testing.T, body []byte, sig string) {
		_, err := v.Verify(&Request{Header: http.Header{"X-Hub-Signature-256": {sig}}, Body: body})
		checkOutcome(t, err, ghSecret)
		if err == nil && !strings.HasPrefix(sig, "sha256=") {
			t.Fatalf("accepted %q without the sha256= prefix", sig)
		}
		good := mustSign(t, signer, body, clock)
		if _, err := v.Verify(&Request{Header: good, Body: body}); err != nil {
			t.Fatalf("own signature rejected: %v", err)
		}
		if err == nil && !strings.EqualFold(strings.TrimSpace(sig), good.Get("X-Hub-Signature-256")) {
			t.Fatalf("accepted %q, the signature is %q", sig, good.Get("X-Hub-Signature-256"))
		}
	})
}

func FuzzStandardWebhooks(f *testing.F) {
	f.Add(swMsgID, swTS, swSig, []byte(swBody))
	f.Add(swMsgID, swTS, "v1,Zm9v v1a,abc "+swSig+" v2,xyz", []byte(swBody))
	f.Add(swMsgID, "1614265331", swSig, []byte(swBody))
	f.Add("", "", "", []byte(""))
	f.Add("id", "-1", "v1,", []byte("x"))
	f.Add("id", swTS, "v1,====", []byte("x"))
	c := Spec{Type: "standard-webhooks", Secrets: []string{whsec("rotated out"), swSecret}}
	v := mustNew(f, c)
	signer := withSecrets(c, swSecret)
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{"Webhook-Id": {id}, "Webhook-Timestamp": {ts}, "Webhook-Signature": {sig}}
		_, err := v.Verify(&Request{Header: h, Body: body, Now: swClock})
		checkOutcome(t, err, swSecret, strings.TrimPrefix(swSecret, whsecPrefix))
		if err == nil && !strings.Contains(sig, "v1,") {
			t.Fatalf("accepted %q with no v1 entry", sig)
		}
		good, serr := Sign(signer, body, swClock, id)
		if serr != nil {
			t.Fatal(serr)
		}
		if _, err := v.Verify(&Request{Header: good, Body: body, Now: swClock}); err != nil {
			t.Fatalf("own signature rejected: %v", err)
		}
	})
}

// FuzzHMACTimestamped drives the key=value signature header parser, through
// parsePairs directly and through the Stripe and Buildkite verifiers.
func FuzzHMACTimestamped(f *testing.F) {
	stripe := Spec{Type: "stripe", Secrets: []string{"whsec_fuzz"}}
	bk := Spec{Type: "buildkite", Secrets: []string{"bk-fuzz"}}
	body := []byte(`{"id":"evt_1"}`)
	for _, c := range []Spec{stripe, bk} {
		h := mustSign(f, c, body, clock)
		for _, v := range h {
			f.Add(v[0], body)
			f.Add(v[0]+","+v[0], body)
		}
	}
	f.Add("t=1700000000,v1=,v0=", []byte("x"))
	f.Add("t=,v1=zz", []byte("x"))
	f.Add(",,,=,=,", []byte(""))
	f.Add("timestamp=1700000000;signature=00", []byte(""))
	vs := mustNew(f, stripe)
	vb := mustNew(f, bk)
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		for _, enc := range []encoding{encHex, encBase64} {
			s := getSigs(32)
			p := parsePairs(header, ",", "t", "v1", enc, s)
			entries := strings.Count(header, ",") + 1
			if s.n+p.badSigs+p.timestamps > entries {
				t.Fatalf("%d sigs, %d bad, %d timestamps from %d entries", s.n, p.badSigs, p.timestamps, entries)
			}
			if len(s.dec) != s.n*32 {
				t.Fatalf("decoded %d bytes for %d signatures", len(s.dec), s.n)
			}
			if p.timestamps > 0 && !strings.Contains(header, p.ts) {
				t.Fatalf("timestamp %q not in header", p.ts)
			}
			putSigs(s)
		}
		_, err := vs.Verify(&Request{Header: http.Header{"Stripe-Signature": {header}}, Body: body, Now: clock})
		checkOutcome(t, err, "whsec_fuzz")
		_, err = vb.Verify(&Request{Header: http.Header{"X-Buildkite-Signature": {header}}, Body: body, Now: clock})
		checkOutcome(t, err, "bk-fuzz")
		for _, c := range []Spec{stripe, bk} {
			h := mustSign(t, c, body, clock)
			res, err := mustNew(t, c).Verify(&Request{Header: h, Body: body, Now: clock})
			if err != nil || res.ReplayKey == "" {
				t.Fatalf("%s own signature: %v, replay key %q", c.Type, err, res.ReplayKey)
			}
		}
	})
}

func FuzzCircleCI(f *testing.F) {
	f.Add(ccSig1, []byte(ccBody1))
	f.Add("v1="+ccSig2, []byte(ccBody2))
	f.Add("v1="+ccSig2+",v2=abcd", []byte(ccBody2))
	f.Add("v2="+ccSig2, []byte(ccBody2))
	f.Add("v1", []byte(""))
	c := Spec{Type: "circleci", Secrets: []string{"rotated-out", ccSecret}}
	v := mustNew(f, c)
	signer := withSecrets(c, ccSecret)
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		_, err := v.Verify(&Request{Header: http.Header{"Circleci-Signature": {header}}, Body: body})
		checkOutcome(t, err)
		if err == nil && !strings.Contains(header, "v1=") {
			t.Fatalf("accepted %q with no v1 entry", header)
		}
		good := mustSign(t, signer, body, clock)
		if _, err := v.Verify(&Request{Header: good, Body: body}); err != nil {
			t.Fatalf("own signature rejected: %v", err)
		}
		if digest := strings.TrimPrefix(good.Get("Circleci-Signature"), "v1="); err == nil && !strings.Contains(strings.ToLower(header), digest) {
			t.Fatalf("accepted %q, the signature is %q", header, good.Get("Circleci-Signature"))
		}
	})
}
