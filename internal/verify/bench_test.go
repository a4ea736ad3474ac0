package verify

import (
	"testing"
)

// benchVerify measures one verifier on the 7.3 KB GitHub push sample.
func benchVerify(b *testing.B, c Spec, signer Spec) {
	body := pushBody(b)
	v := mustNew(b, c)
	h := mustSign(b, signer, body, clock)
	r := &Request{Header: h, Body: body, Now: clock}
	if _, err := v.Verify(r); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGitHubVerify(b *testing.B) {
	c := Spec{Type: "github", Secrets: []string{"bench-secret"}}
	benchVerify(b, c, c)
}

// Rotation costs one HMAC per secret: every secret is always tried.
func BenchmarkGitHubVerifyTwoSecrets(b *testing.B) {
	benchVerify(b, Spec{Type: "github", Secrets: []string{"old-secret", "bench-secret"}},
		Spec{Type: "github", Secrets: []string{"bench-secret"}})
}

func BenchmarkGitHubVerifyParallel(b *testing.B) {
	c := Spec{Type: "github", Secrets: []string{"bench-secret"}}
	body := pushBody(b)
	v := mustNew(b, c)
	h := mustSign(b, c, body, clock)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := &Request{Header: h, Body: body, Now: clock}
		for pb.Next() {
			if _, err := v.Verify(r); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkGitHubVerifyMismatch(b *testing.B) {
	body := pushBody(b)
	v := mustNew(b, Spec{Type: "github", Secrets: []string{"bench-secret"}})
	h := mustSign(b, Spec{Type: "github", Secrets: []string{"wrong"}}, body, clock)
	r := &Request{Header: h, Body: body, Now: clock}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(r); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkStandardWebhooksVerify(b *testing.B) {
	c := Spec{Type: "standard-webhooks", Secrets: []string{whsec("bench key")}}
	benchVerify(b, c, c)
}

func BenchmarkStripeVerify(b *testing.B) {
	c := Spec{Type: "stripe", Secrets: []string{"whsec_bench"}}
	benchVerify(b, c, c)
}

func BenchmarkBearerVerify(b *testing.B) {
	c := Spec{Type: "bearer", Secrets: []string{"bench-token"}}
	benchVerify(b, c, c)
}
