package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse: no input makes loading panic or hang, and what loads is
// usable (redacts, marshals, names its sources and routes).
func FuzzParse(f *testing.F) {
	contract, err := os.ReadFile(filepath.Join("testdata", "contract.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(contract),
		minimal,
		"",
		"x-a: &a {type: none}\nsources: [{name: a, path: /a, verify: {<<: *a}}]\noperator: {api_key: k}\n",
		"operator: {api_key_file: key}\nsources: [{name: a, path: /a, verify: {type: github, secrets_file: secrets}}]\nroutes: [{name: r, source: a, template_file: t.tmpl}]\n",
		"storage: {backend: nats, nats: {url: 'nats://u:p@h:1', creds_file: key}}\nserver: {idle_timeout: 30, admin_token: '${ADMIN:-}'}\n",
		"a: &a [*a]\n",
		"operator: {api_key: '${UNSET:-${KEY}}', retry: {initial: 5x}}\n",
		"sources: [{name: a, path: /a, verify: {type: none}, allow_cidrs: [::1, 10.0.0.0/8]}]\n",
	} {
		f.Add([]byte(seed))
	}
	files := map[string]string{"key": "file-key\n", "secrets": "# c\ns1\ns2\n", "t.tmpl": "hi {{ .body }}"}
	opts := Options{
		Lookup: env(map[string]string{
			"OPERATOR_API_KEY": "k", "GITHUB_WEBHOOK_SECRET": "g", "CI_SECRET": "c",
			"LANDING_SECRET": "l", "KEY": "k", "EMPTY": "",
		}),
		ReadFile: func(name string) ([]byte, error) {
			if v, ok := files[name]; ok {
				return []byte(v), nil
			}
			return nil, os.ErrNotExist
		},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseWith(data, "", opts)
		if err != nil {
			if c != nil {
				t.Fatal("config returned with an error")
			}
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if len(c.Sources) == 0 {
			t.Fatal("loaded without sources")
		}
		for i := range c.Sources {
			if s, ok := c.SourceByName(c.Sources[i].Name); !ok || s.Verify == nil {
				t.Fatalf("source %d: lookup or verify missing", i)
			}
		}
		for _, r := range c.Routes {
			if _, ok := c.SourceByName(r.Source); !ok || r.Template == "" {
				t.Fatalf("route %q: unknown source or no template", r.Name)
			}
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("dump: %v", err)
		}
		if _, err := json.Marshal(c); err != nil {
			t.Fatalf("dump as JSON: %v", err)
		}
		if len(c.Operator.APIKey) > 8 && strings.Contains(string(out), string(c.Operator.APIKey)) {
			t.Fatal("dump shows the api key")
		}
	})
}

// FuzzExpandEnv: expansion never panics, and escaping every $ as $$ gives
// the text back unchanged.
func FuzzExpandEnv(f *testing.F) {
	for _, s := range []string{"", "${A}", "${A:-b}", "$$", "${U:-${A:-x}}", "a$b${", "}${A:-}}"} {
		f.Add(s)
	}
	lookup := env(map[string]string{"A": "a", "E": ""})
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = expandEnv(s, lookup)
		got, err := expandEnv(strings.ReplaceAll(s, "$", "$$"), lookup)
		if err != nil || got != s {
			t.Fatalf("escaped %q expands to %q, %v", s, got, err)
		}
	})
}
