package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestVerifyTypeFields(t *testing.T) {
	cfg := func(verify string) string {
		return "operator: {api_key: k}\nsources:\n  - name: s\n    path: /hooks/s\n    verify: " + verify +
			"\nroutes:\n  - {name: r, source: s, template: t}\n"
	}
	for _, tc := range []struct {
		name, verify string
		want         []string // "" means it loads
	}{
		{"sns", `{type: sns, topics: ["arn:aws:sns:eu-west-1:1:t"], cert_hosts: ["sns.*.amazonaws.com"], ca_file: ca.pem}`, nil},
		{"sns with secrets", `{type: sns, secrets: [s]}`, []string{"sources[0].verify.secrets: not used by type sns"}},
		{"sns empty topic", `{type: sns, topics: [""], cert_hosts: [" "]}`, []string{"sources[0].verify.topics[0]: empty", "sources[0].verify.cert_hosts[0]: empty"}},
		{"oidc", `{type: oidc, issuer: "https://accounts.google.com", audience: "https://relay.example.com/hooks/pubsub", email: a@b.c, jwks_url: "https://www.googleapis.com/oauth2/v3/certs"}`, nil},
		{"oidc without issuer and audience", `{type: oidc}`, []string{"sources[0].verify.issuer: required for type oidc", "sources[0].verify.audience: required for type oidc"}},
		{"oidc with secrets", `{type: oidc, issuer: i, audience: a, secrets: [s]}`, []string{"sources[0].verify.secrets: not used by type oidc"}},
		{"basic", `{type: basic, username: relay, secrets: [pw]}`, nil},
		{"basic without username", `{type: basic, secrets: [pw]}`, []string{"sources[0].verify.username: required for type basic"}},
		{"basic username with colon", `{type: basic, username: "a:b", secrets: [pw]}`, []string{"sources[0].verify.username: must not contain ':'"}},
		{"basic without secrets", `{type: basic, username: relay}`, []string{"sources[0].verify.secrets: required for type basic"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c, err := Parse([]byte(cfg(tc.verify)), dir, env(nil))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if v := c.Sources[0].Verify; v.CAFile != "" && v.CAFile != filepath.Join(dir, "ca.pem") {
					t.Errorf("ca_file = %q, want it resolved against the config's directory", v.CAFile)
				}
				return
			}
			if err == nil {
				t.Fatalf("loaded; want %v", tc.want)
			}
			for _, w := range tc.want {
				// Errors name the source and the line: sources[0] "s".verify.x (line 5): msg.
				field, msg, _ := strings.Cut(w, ": ")
				w = `sources[0] "s"` + strings.TrimPrefix(field, "sources[0]") + " (line 5): " + msg
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q; got:\n%v", w, err)
				}
			}
		})
	}
}
