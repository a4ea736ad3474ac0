package verify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
)

// The forge presets, checked against an HMAC computed here rather than by
// the code under test.
func TestForgePresets(t *testing.T) {
	const secret = "forge secret"
	body := []byte(`{"ref":"refs/heads/main","repository":{"full_name":"o/r"}}`)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	sum := hex.EncodeToString(m.Sum(nil))
	m = hmac.New(sha256.New, []byte("other secret"))
	m.Write(body)
	wrong := hex.EncodeToString(m.Sum(nil))

	for _, p := range []struct {
		typ, header, prefix string
	}{
		{"bitbucket", "X-Hub-Signature", "sha256="},
		{"gitea", "X-Gitea-Signature", ""},
		{"forgejo", "X-Forgejo-Signature", ""},
	} {
		c := Spec{Type: p.typ, Secrets: []string{"rotated", secret}}
		v := mustNew(t, c)
		cases := []struct {
			name   string
			header http.Header
			body   []byte
			reason string
		}{
			{"sender's signature", http.Header{p.header: {p.prefix + sum}}, body, ""},
			{"upper-case hex", http.Header{p.header: {p.prefix + strings.ToUpper(sum)}}, body, ""},
			{"other secret", http.Header{p.header: {p.prefix + wrong}}, body, ReasonMismatch},
			{"body changed", http.Header{p.header: {p.prefix + sum}}, append([]byte(" "), body...), ReasonMismatch},
			{"truncated", http.Header{p.header: {p.prefix + sum[:40]}}, body, ReasonMalformed},
			{"no header", http.Header{}, body, ReasonMissing},
			{"another forge's header", http.Header{"X-Gogs-Signature": {sum}}, body, ReasonMissing},
		}
		if p.prefix == "" {
			cases = append(cases, struct {
				name   string
				header http.Header
				body   []byte
				reason string
			}{"with a sha256= prefix", http.Header{p.header: {"sha256=" + sum}}, body, ReasonMalformed})
		} else {
			cases = append(cases, struct {
				name   string
				header http.Header
				body   []byte
				reason string
			}{"bare hex", http.Header{p.header: {sum}}, body, ReasonMalformed})
		}
		for _, tc := range cases {
			t.Run(p.typ+"/"+tc.name, func(t *testing.T) {
				_, err := v.Verify(&Request{Header: tc.header, Body: tc.body})
				if got := reasonOf(err); got != tc.reason {
					t.Fatalf("reason %q (%v), want %q", got, err, tc.reason)
				}
				checkOutcome(t, err, secret, sum)
			})
		}
		t.Run(p.typ+"/Sign", func(t *testing.T) {
			h := mustSign(t, Spec{Type: p.typ, Secrets: []string{secret}}, body, clock)
			if got := h.Get(p.header); got != p.prefix+sum {
				t.Fatalf("Sign: %s = %q, want %q", p.header, got, p.prefix+sum)
			}
		})
	}
}
