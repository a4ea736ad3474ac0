package config

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// env returns a Lookup over a fixed set of variables.
func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

// minimal is the smallest valid config; tests build on it.
const minimal = `
operator:
  api_key: op-key
sources:
  - name: gh
    path: /hooks/gh
    verify: {type: github, secrets: [s1]}
routes:
  - name: r1
    source: gh
    template: hello
`

func mustParse(t *testing.T, src string, vars map[string]string) *Config {
	t.Helper()
	c, err := Parse([]byte(src), t.TempDir(), env(vars))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

var contractEnv = map[string]string{
	"OPERATOR_API_KEY":      "op-contract-key",
	"GITHUB_WEBHOOK_SECRET": "gh-contract-secret",
	"CI_SECRET":             "ci-contract-secret",
	"LANDING_SECRET":        "whsec_bGFuZGluZy1jb250cmFjdA==",
}

func TestContractExampleLoads(t *testing.T) {
	for k, v := range contractEnv {
		t.Setenv(k, v)
	}
	c, err := Load(filepath.Join("testdata", "contract.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Path != filepath.Join("testdata", "contract.yaml") {
		t.Errorf("Path = %q", c.Path)
	}
	if c.Operator.APIKey != "op-contract-key" || c.Operator.BaseURL != "https://operator.io" {
		t.Errorf("operator = %+v", c.Operator)
	}
	if c.Operator.Retry != (Retry{Initial: Duration(time.Second), Max: Duration(10 * time.Minute), MaxAttempts: 20}) {
		t.Errorf("retry = %+v", c.Operator.Retry)
	}
	if got := len(c.Sources); got != 3 {
		t.Fatalf("sources = %d, want 3", got)
	}
	ci, ok := c.SourceByName("ci")
	if !ok || ci.Verify.Type != "hmac" || ci.Verify.Prefix != "sha256=" || ci.Verify.Secrets[0] != "ci-contract-secret" {
		t.Errorf("ci source = %+v / %+v", ci, ci.Verify)
	}
	landing, _ := c.SourceByName("landing")
	if landing.Verify.Tolerance.D() != 5*time.Minute || landing.Verify.Secrets[0] != contractEnv["LANDING_SECRET"] {
		t.Errorf("landing verify = %+v", landing.Verify)
	}
	r, ok := c.routeByName("ci-failures")
	if !ok || r.Source != "github" || r.RateLimit == nil || r.RateLimit.PerSecond != 0.5 || r.RateLimit.Burst != 3 {
		t.Fatalf("route = %+v", r)
	}
	if !strings.HasPrefix(r.Template, "CI failed on {{ .body.repository.full_name }}") {
		t.Errorf("template = %q", r.Template)
	}
	if !strings.Contains(r.Filter, `body.workflow_run.conclusion == "failure"`) {
		t.Errorf("filter = %q", r.Filter)
	}
	if c.line("routes[0].filter") == 0 {
		t.Errorf("no line recorded for routes[0].filter")
	}

	// OPERATOR_BASE_URL overrides the default written in the file.
	t.Setenv("OPERATOR_BASE_URL", "http://127.0.0.1:7000/")
	c, err = Load(filepath.Join("testdata", "contract.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Operator.BaseURL != "http://127.0.0.1:7000" {
		t.Errorf("base_url = %q, want the trailing slash trimmed", c.Operator.BaseURL)
	}
}

func TestContractExampleMissingEnv(t *testing.T) {
	vars := maps.Clone(contractEnv)
	delete(vars, "OPERATOR_API_KEY")
	delete(vars, "CI_SECRET")
	_, err := LoadWith(filepath.Join("testdata", "contract.yaml"), Options{Lookup: env(vars)})
	if err == nil {
		t.Fatal("loaded without OPERATOR_API_KEY")
	}
	for _, want := range []string{
		"operator.api_key (line 12): environment variable OPERATOR_API_KEY is not set",
		"sources[1] \"ci\".verify.secrets[0] (line 24): environment variable CI_SECRET is not set",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 2 {
		t.Errorf("got %d errors, want 2 (no follow-on errors):\n%v", n, err)
	}

	// Dev mode: the fake Operator takes any key, so the key may be unset.
	c, err := LoadWith(filepath.Join("testdata", "contract.yaml"), Options{Dev: true, Lookup: env(func() map[string]string {
		v := maps.Clone(contractEnv)
		delete(v, "OPERATOR_API_KEY")
		return v
	}())})
	if err != nil {
		t.Fatalf("dev mode: %v", err)
	}
	if c.Operator.APIKey != "" {
		t.Errorf("dev api key = %q", c.Operator.APIKey)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want not-exist", err)
	}
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, minimal, nil)
	want := Config{
		Server: Server{
			Listen: ":8080", AdminListen: "127.0.0.1:9090",
			MaxBodyBytes: 1 << 20, MaxInflatedBytes: 4 << 20, MaxInflightBodyBytes: 32 << 20, MaxHeaderBytes: 64 << 10,
			ReadHeaderTimeout: Duration(5 * time.Second), ReadTimeout: Duration(30 * time.Second),
			WriteTimeout: Duration(30 * time.Second), IdleTimeout: Duration(120 * time.Second),
			ShutdownTimeout: Duration(30 * time.Second),
		},
		Storage: Storage{
			Backend: "bbolt", Path: "./data/relayd.db", MaxPending: 100000, MinFreeBytes: 64 << 20,
			DedupeTTL: Duration(24 * time.Hour),
			NATS:      NATS{Stream: "RELAYD", Partitions: 16, Replicas: 1},
		},
		Operator: Operator{
			BaseURL: "https://operator.io", APIKey: "op-key", Timeout: Duration(60 * time.Second),
			Response: "stream", MaxTurn: Duration(30 * time.Minute),
			Concurrency: 8, RateLimit: RateLimit{PerSecond: 2, Burst: 5},
			Retry:    Retry{Initial: Duration(time.Second), Max: Duration(10 * time.Minute), MaxAttempts: 20},
			Preamble: &defaultPreamble,
		},
		Log: Log{Level: "info", Format: "json"},
		Sources: []Source{{
			Name: "gh", Path: "/hooks/gh", Body: "json", DedupeTTL: Duration(24 * time.Hour),
			Verify: &Verify{Type: "github", Secrets: []string{"s1"}, Tolerance: Duration(5 * time.Minute)},
		}},
		Routes:  []Route{{Name: "r1", Source: "gh", Template: "hello", MaxPromptBytes: 32768}},
		Redact:  Redact{Builtin: &builtinOn},
		History: History{Retention: Duration(168 * time.Hour), MaxEvents: 100000, MaxRejected: 10000},
	}
	got := *c
	got.md = nil
	if !reflect.DeepEqual(got, want) {
		gb, _ := yaml.Marshal(got)
		wb, _ := yaml.Marshal(want)
		t.Errorf("defaults differ:\ngot:\n%s\nwant:\n%s", gb, wb)
	}
}

func TestWrittenValuesOverrideDefaults(t *testing.T) {
	c := mustParse(t, `
server: {max_body_bytes: 100, idle_timeout: 7}
storage: {max_pending: 0, dedupe_ttl: 1h}
operator:
  api_key: k
  rate_limit: {per_second: 0.25}
  retry: {initial: 2s}
sources:
  - {name: a, path: /a, dedupe_ttl: 10m, body: auto, verify: {type: hmac, secrets: [x], tolerance: 30s}}
  - {name: b, path: /b, verify: {type: none}}
routes:
  - {name: r, source: a, template: t, rate_limit: {per_second: 3}}
`, nil)
	if c.Server.MaxBodyBytes != 100 || c.Server.MaxInflatedBytes != 400 {
		t.Errorf("max_inflated_bytes = %d, want 4 x max_body_bytes", c.Server.MaxInflatedBytes)
	}
	if c.Server.MaxInflightBodyBytes != 3200 {
		t.Errorf("max_inflight_body_bytes = %d, want 32 x max_body_bytes", c.Server.MaxInflightBodyBytes)
	}
	if c.Server.IdleTimeout.D() != 7*time.Second {
		t.Errorf("idle_timeout = %s", c.Server.IdleTimeout)
	}
	if c.Storage.MaxPending != 0 {
		t.Errorf("max_pending written as 0 became %d", c.Storage.MaxPending)
	}
	if c.Operator.RateLimit != (RateLimit{PerSecond: 0.25, Burst: 5}) {
		t.Errorf("rate_limit = %+v", c.Operator.RateLimit)
	}
	if c.Operator.Retry.Initial.D() != 2*time.Second || c.Operator.Retry.Max.D() != 10*time.Minute {
		t.Errorf("retry = %+v", c.Operator.Retry)
	}
	if c.Sources[0].DedupeTTL.D() != 10*time.Minute || c.Sources[1].DedupeTTL.D() != time.Hour {
		t.Errorf("dedupe_ttl = %s, %s", c.Sources[0].DedupeTTL, c.Sources[1].DedupeTTL)
	}
	if c.Sources[0].Body != "auto" || c.Sources[0].Verify.Tolerance.D() != 30*time.Second {
		t.Errorf("source a = %+v", c.Sources[0])
	}
	if rl := c.Routes[0].RateLimit; rl.Burst != 1 {
		t.Errorf("route burst = %d, want 1 by default", rl.Burst)
	}
}

// TestErrors: each kind of mistake is reported naming its field.
func TestErrors(t *testing.T) {
	// base is minimal with a hole for each case's changes.
	base := func(operator, sources, routes string) string {
		return "operator:\n" + indent(operator, "  ") +
			"sources:\n" + indent(sources, "  ") +
			"routes:\n" + indent(routes, "  ")
	}
	const (
		op    = "api_key: k\n"
		src   = "- {name: gh, path: /hooks/gh, verify: {type: github, secrets: [s]}}\n"
		route = "- {name: r, source: gh, template: t}\n"
	)
	tests := []struct {
		name string
		yaml string
		vars map[string]string
		want []string
	}{
		{"yaml syntax", "server: [\n", nil, []string{"yaml: line"}},
		{"top level not a mapping", "- a\n- b\n", nil, []string{"expected a mapping, got a list"}},
		{"empty file", "", nil, []string{"sources: at least one source is required", "operator.api_key: required"}},
		{"unknown top key", "servr: {}\n" + base(op, src, route), nil, []string{`line 1: unknown field "servr" (did you mean "server"?)`}},
		{"unknown route key", base(op, src, "- {name: r, source: gh, template: t, filtr: x}\n"), nil,
			[]string{`routes[0] "r" (line 6): unknown field "filtr" (did you mean "filter"?)`}},
		{"unknown nested key", "server: {tls: {}}\n" + base(op, src, route), nil, []string{`server (line 1): unknown field "tls"`}},
		{"unknown verify key", base(op, "- {name: gh, path: /hooks/gh, verify: {type: github, secret: [s]}}\n", route), nil,
			[]string{`sources[0] "gh".verify (line 4): unknown field "secret" (did you mean "secrets"?)`}},
		{"duplicate key", "server: {listen: ':1'}\nserver: {listen: ':2'}\n" + base(op, src, route), nil,
			[]string{"server (line 2): written twice (first on line 1)"}},
		{"int field gets text", "storage: {max_pending: lots}\n" + base(op, src, route), nil,
			[]string{`storage.max_pending (line 1): expected an integer, got "lots"`}},
		{"bool field gets text", "server: {trust_proxy: maybe}\n" + base(op, src, route), nil,
			[]string{`server.trust_proxy (line 1): expected true or false, got "maybe"`}},
		{"list field gets scalar", base(op, "- {name: gh, path: /hooks/gh, verify: {type: github, secrets: s}}\n", route), nil,
			[]string{`sources[0] "gh".verify.secrets (line 4): expected a list, got a single value`}},
		{"mapping field gets scalar", "server: 8080\n" + base(op, src, route), nil,
			[]string{`server (line 1): expected a mapping, got "8080"`}},
		{"string field gets mapping", base("api_key: {a: b}\n", src, route), nil,
			[]string{"operator.api_key (line 2): expected a string, got a mapping"}},
		{"bad duration", base(op+"retry: {initial: 5x}\n", src, route), nil,
			[]string{`operator.retry.initial (line 3): invalid duration "5x"`}},
		{"duration as mapping", base(op+"timeout: {s: 1}\n", src, route), nil,
			[]string{"operator.timeout (line 3): invalid duration: expected a value such as 30s, got a mapping"}},
		{"missing env", base("api_key: ${OPERATOR_API_KEY}\n", src, route), nil,
			[]string{"operator.api_key (line 2): environment variable OPERATOR_API_KEY is not set"}},
		{"bad env reference", base("api_key: ${1X}\n", src, route), nil,
			[]string{"operator.api_key (line 2): invalid variable reference"}},
		{"unterminated env", base("api_key: ${X\n", src, route), nil,
			[]string{`operator.api_key (line 2): unterminated "${"`}},
		{"empty env into int", "storage: {max_pending: '${N}'}\n" + base(op, src, route), map[string]string{"N": ""},
			[]string{"storage.max_pending (line 1): empty value, expected an integer"}},
		{"empty secret from env", base("api_key: ${K}\n", src, route), map[string]string{"K": ""},
			[]string{"operator.api_key (line 2): empty"}},
		{"empty listed secret", base(op, "- {name: gh, path: /hooks/gh, verify: {type: github, secrets: [ok, '${S:-}']}}\n", route), nil,
			[]string{"sources[0] \"gh\".verify.secrets[1] (line 4): empty"}},
		{"empty admin token", "server: {admin_token: '${ADMIN_TOKEN:-}'}\n" + base(op, src, route), nil,
			[]string{"server.admin_token (line 1): empty"}},
		{"api key missing", base("timeout: 1s\n", src, route), nil,
			[]string{"operator.api_key (line 2): required (set api_key or api_key_file)"}},
		{"api key with newline", base("api_key: \"a\\nb\"\n", src, route), nil,
			[]string{"operator.api_key (line 2): contains whitespace or control characters"}},
		{"bad listen", "server: {listen: '8080'}\n" + base(op, src, route), nil, []string{`server.listen (line 1): invalid address "8080"`}},
		{"bad admin port", "server: {admin_listen: 'localhost:http'}\n" + base(op, src, route), nil, []string{`server.admin_listen (line 1): invalid port "http"`}},
		{"same listeners", "server: {listen: ':9000', admin_listen: ':9000'}\n" + base(op, src, route), nil,
			[]string{"server.admin_listen (line 1): same address as server.listen"}},
		{"zero body", "server: {max_body_bytes: 0}\n" + base(op, src, route), nil, []string{"server.max_body_bytes (line 1): must be > 0"}},
		{"inflated below body", "server: {max_body_bytes: 100, max_inflated_bytes: 10}\n" + base(op, src, route), nil,
			[]string{"server.max_inflated_bytes (line 1): must be >= max_body_bytes"}},
		{"inflight below inflated", "server: {max_inflight_body_bytes: 1000}\n" + base(op, src, route), nil,
			[]string{"server.max_inflight_body_bytes (line 1): must be >= max_inflated_bytes (4194304), got 1000"}},
		{"zero header bytes", "server: {max_header_bytes: 0}\n" + base(op, src, route), nil, []string{"server.max_header_bytes (line 1): must be > 0"}},
		{"zero timeout", "server: {read_header_timeout: 0s}\n" + base(op, src, route), nil, []string{"server.read_header_timeout (line 1): must be > 0"}},
		{"bad backend", "storage: {backend: redis}\n" + base(op, src, route), nil, []string{`storage.backend (line 1): must be bbolt or nats, got "redis"`}},
		{"empty bbolt path", "storage: {path: ''}\n" + base(op, src, route), nil, []string{"storage.path (line 1): required with backend bbolt"}},
		{"negative max pending", "storage: {max_pending: -1}\n" + base(op, src, route), nil, []string{"storage.max_pending (line 1): must be >= 0"}},
		{"negative free-space floor", "storage: {min_free_bytes: -1}\n" + base(op, src, route), nil, []string{"storage.min_free_bytes (line 1): must be >= 0"}},
		{"history bounds", "history: {retention: 0s, max_events: -1, max_rejected: 0}\n" + base(op, src, route), nil, []string{"history.retention (line 1): must be > 0", "history.max_events (line 1): must be > 0", "history.max_rejected (line 1): must be > 0"}},
		{"negative dedupe", "storage: {dedupe_ttl: -1s}\n" + base(op, src, route), nil, []string{"storage.dedupe_ttl (line 1): must be >= 0"}},
		{"nats without url", "storage: {backend: nats}\n" + base(op, src, route), nil, []string{"storage.nats.url (line 1): required with backend nats"}},
		{"nats url and urls", "storage: {backend: nats, nats: {url: 'nats://a:4222', urls: ['nats://b:4222']}}\n" + base(op, src, route), nil,
			[]string{"storage.nats.urls (line 1): set only one of url and urls"}},
		{"nats bad scheme", "storage: {backend: nats, nats: {urls: ['http://u:pw@a:4222']}}\n" + base(op, src, route), nil,
			[]string{`storage.nats.urls (line 1): server URL "http://u:<secret>@a:4222": scheme must be`}},
		{"nats bad stream", "storage: {backend: nats, nats: {url: 'nats://a:4222', stream: 'a.b'}}\n" + base(op, src, route), nil,
			[]string{`storage.nats.stream (line 1): invalid stream name "a.b"`}},
		{"nats partitions", "storage: {backend: nats, nats: {url: 'nats://a:4222', partitions: 0}}\n" + base(op, src, route), nil,
			[]string{"storage.nats.partitions (line 1): must be between 1 and 1024"}},
		{"nats replicas", "storage: {backend: nats, nats: {url: 'nats://a:4222', replicas: 7}}\n" + base(op, src, route), nil,
			[]string{"storage.nats.replicas (line 1): must be between 1 and 5"}},
		{"nats cert without key", "storage: {backend: nats, nats: {url: 'nats://a:4222', tls: {cert_file: /nonexistent/c.pem}}}\n" + base(op, src, route), nil,
			[]string{"storage.nats.tls (line 1): set both cert_file and key_file", "storage.nats.tls.cert_file (line 1): stat /nonexistent/c.pem"}},
		{"nats missing creds", "storage: {backend: nats, nats: {url: 'nats://a:4222', creds_file: /nonexistent/x.creds}}\n" + base(op, src, route), nil,
			[]string{"storage.nats.creds_file (line 1): stat /nonexistent/x.creds"}},
		{"base url relative", base(op+"base_url: operator.io\n", src, route), nil,
			[]string{`operator.base_url (line 3): must be an absolute http or https URL, got "operator.io"`}},
		{"base url ftp", base(op+"base_url: ftp://operator.io\n", src, route), nil, []string{"operator.base_url (line 3): must be an absolute http or https URL"}},
		{"base url query", base(op+"base_url: https://operator.io/?x=1\n", src, route), nil, []string{"operator.base_url (line 3): must not carry credentials, a query"}},
		{"zero concurrency", base(op+"concurrency: 0\n", src, route), nil, []string{"operator.concurrency (line 3): must be >= 1, got 0"}},
		{"zero operator timeout", base(op+"timeout: 0\n", src, route), nil, []string{"operator.timeout (line 3): must be > 0"}},
		{"zero max_turn", base(op+"max_turn: 0s\n", src, route), nil, []string{"operator.max_turn (line 3): must be > 0"}},
		{"unknown response", base(op+"response: sse\n", src, route), nil, []string{`operator.response (line 3): must be "stream" or "json", got "sse"`}},
		{"rate zero", base(op+"rate_limit: {per_second: 0, burst: 0}\n", src, route), nil,
			[]string{"operator.rate_limit.per_second (line 3): must be > 0", "operator.rate_limit.burst (line 3): must be >= 1"}},
		{"rate NaN", base(op+"rate_limit: {per_second: .nan}\n", src, route), nil, []string{"operator.rate_limit.per_second (line 3): must be > 0"}},
		{"retry zero initial", base(op+"retry: {initial: 0s}\n", src, route), nil, []string{"operator.retry.initial (line 3): must be > 0"}},
		{"retry max below initial", base(op+"retry: {initial: 1m, max: 1s}\n", src, route), nil, []string{"operator.retry.max (line 3): must be >= retry.initial"}},
		{"retry attempts", base(op+"retry: {max_attempts: 0}\n", src, route), nil, []string{"operator.retry.max_attempts (line 3): must be >= 1"}},
		{"log level", "log: {level: loud}\n" + base(op, src, route), nil, []string{`log.level (line 1): must be debug, info, warn or error, got "loud"`}},
		{"log format", "log: {format: xml}\n" + base(op, src, route), nil, []string{`log.format (line 1): must be json or text, got "xml"`}},
		{"no sources", "operator: {api_key: k}\nsources: []\n", nil, []string{"sources (line 2): at least one source is required"}},
		{"source without name", base(op, "- {path: /a, verify: {type: none}}\n", ""), nil, []string{"sources[0].name (line 4): required"}},
		{"source bad name", base(op, "- {name: GitHub, path: /a, verify: {type: none}}\n", ""), nil, []string{`sources[0] "GitHub".name (line 4): "GitHub": use lower-case`}},
		{"source long name", base(op, "- {name: "+strings.Repeat("a", 65)+", path: /a, verify: {type: none}}\n", ""), nil,
			[]string{"sources[0].name (line 4): longer than 64 characters"}},
		{"duplicate source name", base(op, src+"- {name: gh, path: /b, verify: {type: none}}\n", route), nil,
			[]string{`sources[1] "gh".name (line 5): "gh" already names sources[0]`}},
		{"source without path", base(op, "- {name: a, verify: {type: none}}\n", ""), nil, []string{"sources[0] \"a\".path (line 4): required"}},
		{"relative path", base(op, "- {name: a, path: hooks, verify: {type: none}}\n", ""), nil, []string{`sources[0] "a".path (line 4): "hooks" must start with /`}},
		{"path with param", base(op, "- {name: a, path: '/hooks/:id', verify: {type: none}}\n", ""), nil, []string{`sources[0] "a".path (line 4): "/hooks/:id": use letters`}},
		{"path not clean", base(op, "- {name: a, path: /hooks/, verify: {type: none}}\n", ""), nil, []string{`sources[0] "a".path (line 4): "/hooks/" is not a clean path; write "/hooks"`}},
		{"duplicate path", base(op, src+"- {name: b, path: /hooks/gh, verify: {type: none}}\n", route), nil,
			[]string{`sources[1] "b".path (line 5): "/hooks/gh" is already the path of sources[0]`}},
		{"admin path", base(op, "- {name: a, path: /admin/x, verify: {type: none}}\n", ""), nil, []string{`sources[0] "a".path (line 4): "/admin/x" is reserved`}},
		{"metrics path", base(op, "- {name: a, path: /metrics, verify: {type: none}}\n", ""), nil, []string{`sources[0] "a".path (line 4): "/metrics" is reserved`}},
		{"healthz path", base(op, "- {name: a, path: /healthz, verify: {type: none}}\n", ""), nil, []string{`sources[0] "a".path (line 4): "/healthz" is reserved`}},
		{"readyz path", base(op, "- {name: a, path: /readyz/x, verify: {type: none}}\n", ""), nil, []string{`sources[0] "a".path (line 4): "/readyz/x" is reserved`}},
		{"verify missing", base(op, "- {name: a, path: /a}\n", ""), nil,
			[]string{"sources[0] \"a\".verify (line 4): required (write type: none to accept unsigned webhooks)"}},
		{"verify null", base(op, "- {name: a, path: /a, verify: ~}\n", ""), nil, []string{"sources[0] \"a\".verify (line 4): required"}},
		{"verify type missing", base(op, "- {name: a, path: /a, verify: {secrets: [x]}}\n", ""), nil, []string{"sources[0] \"a\".verify.type (line 4): required"}},
		{"negative tolerance", base(op, "- {name: a, path: /a, verify: {type: standard-webhooks, secrets: [x], tolerance: -5m}}\n", ""), nil,
			[]string{"sources[0] \"a\".verify.tolerance (line 4): must be >= 0"}},
		{"bad body", base(op, "- {name: a, path: /a, body: xml, verify: {type: none}}\n", ""), nil, []string{`sources[0] "a".body (line 4): must be json, text or auto, got "xml"`}},
		{"bad unwrap", base(op, "- {name: a, path: /a, unwrap: sqs, verify: {type: none}}\n", ""), nil, []string{`sources[0] "a".unwrap (line 4): must be s3, pubsub or cloudevents`}},
		{"bad event header", base(op, "- {name: a, path: /a, event_header: 'X Event', verify: {type: none}}\n", ""), nil,
			[]string{`sources[0] "a".event_header (line 4): "X Event" is not a valid header name`}},
		{"bad delivery header", base(op, "- {name: a, path: /a, delivery_header: 'X:Id', verify: {type: none}}\n", ""), nil,
			[]string{`sources[0] "a".delivery_header (line 4): "X:Id" is not a valid header name`}},
		{"negative source dedupe", base(op, "- {name: a, path: /a, dedupe_ttl: -1h, verify: {type: none}}\n", ""), nil,
			[]string{"sources[0] \"a\".dedupe_ttl (line 4): must be >= 0"}},
		{"bad cidr", base(op, "- {name: a, path: /a, allow_cidrs: [10.0.0.0/8, 10.0.0.300, '::1/129'], verify: {type: none}}\n", ""), nil,
			[]string{`sources[0] "a".allow_cidrs[1] (line 4): "10.0.0.300" is not an IP address or CIDR`, `sources[0] "a".allow_cidrs[2] (line 4): "::1/129"`}},
		{"route without name", base(op, src, "- {source: gh, template: t}\n"), nil, []string{"routes[0].name (line 6): required"}},
		{"route bad name", base(op, src, "- {name: 'ci failures', source: gh, template: t}\n"), nil, []string{`routes[0] "ci failures".name (line 6): "ci failures": use lower-case`}},
		{"duplicate route name", base(op, src, route+route), nil, []string{`routes[1] "r".name (line 7): "r" already names routes[0]`}},
		{"route unknown source", base(op, src, "- {name: r, source: github, template: t}\n"), nil, []string{`routes[0] "r".source (line 6): unknown source "github"`}},
		{"route without source", base(op, src, "- {name: r, template: t}\n"), nil, []string{"routes[0] \"r\".source (line 6): required"}},
		{"route rate limit", base(op, src, "- {name: r, source: gh, template: t, rate_limit: {per_second: -1, burst: 0}}\n"), nil,
			[]string{"routes[0] \"r\".rate_limit.per_second (line 6): must be > 0", "routes[0] \"r\".rate_limit.burst (line 6): must be >= 1"}},
		{"conversation reset", base(op, src, "- {name: r, source: gh, template: t, conversation_reset: {after: -1h, messages: -2}}\n"), nil,
			[]string{"routes[0] \"r\".conversation_reset.after (line 6): must be >= 0", "routes[0] \"r\".conversation_reset.messages (line 6): must be >= 0"}},
		{"coalesce", base(op, src, "- {name: r, source: gh, template: t, coalesce: {wait: -1s, max_events: 0}}\n"), nil,
			[]string{"routes[0] \"r\".coalesce.wait (line 6): must be >= 0", "routes[0] \"r\".coalesce.max_events (line 6): must be between 1 and 1000"}},
		{"turn limit", base(op, src, "- {name: r, source: gh, template: t, turn_limit: {turns: 0, per: 0s}}\n"), nil,
			[]string{"routes[0] \"r\".turn_limit.turns (line 6): must be >= 1", "routes[0] \"r\".turn_limit.per (line 6): must be > 0"}},
		{"no template", base(op, src, "- {name: r, source: gh}\n"), nil, []string{"routes[0] \"r\".template (line 6): required (set template or template_file)"}},
		{"empty template", base(op, src, "- {name: r, source: gh, template: '  '}\n"), nil, []string{"routes[0] \"r\".template (line 6): empty"}},
		{"template and file", base(op, src, "- {name: r, source: gh, template: t, template_file: x.tmpl}\n"), nil,
			[]string{"routes[0] \"r\".template_file (line 6): set only one of template and template_file"}},
		{"missing template file", base(op, src, "- {name: r, source: gh, template_file: nope.tmpl}\n"), nil,
			[]string{"routes[0] \"r\".template_file (line 6): stat ", "nope.tmpl: no such file"}},
		{"missing api key file", base("api_key_file: nope\n", src, route), nil, []string{"operator.api_key_file (line 2): stat "}},
		{"api key and file", base("api_key: k\napi_key_file: f\n", src, route), nil,
			[]string{"operator.api_key_file (line 3): set only one of api_key and api_key_file"}},
		{"admin token and file", "server: {admin_token: a, admin_token_file: f}\n" + base(op, src, route), nil,
			[]string{"server.admin_token_file (line 1): set only one of admin_token and admin_token_file"}},
		{"secrets and file", base(op, "- {name: gh, path: /g, verify: {type: github, secrets: [s], secrets_file: f}}\n", ""), nil,
			[]string{"sources[0] \"gh\".verify.secrets_file (line 4): set only one of secrets and secrets_file"}},
		{"secret with newline", base(op, "- {name: gh, path: /hooks/gh, verify: {type: github, secrets: [\"${S}\"]}}\n", route), map[string]string{"S": "abc\n"},
			[]string{"sources[0] \"gh\".verify.secrets[0] (line 4): has leading or trailing whitespace"}},
		{"admin token metrics without token", "server: {admin_token_metrics: true}\n" + base(op, src, route), nil,
			[]string{"server.admin_token_metrics (line 1): needs admin_token or admin_token_file"}},
		{"alias cycle", "x: &a [*a]\n", nil, []string{"unknown field \"x\""}},
		{"merge cycle", base(op, "- {name: a, path: /a, verify: &v {type: none, <<: *v}}\n", ""), nil,
			[]string{"sources[0] \"a\".verify (line 4): alias refers to a value that contains it"}},
		{"alias to own list", base(op, "&s [{name: a, path: /a, verify: {type: none}}, *s]\n", ""), nil,
			[]string{"sources[1] (line 4): expected a mapping, got a list"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), t.TempDir(), env(tt.vars))
			if err == nil {
				t.Fatalf("no error for:\n%s", tt.yaml)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q; got:\n%v", w, err)
				}
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("no *FieldError in %T", err)
			}
		})
	}
}

func indent(s, prefix string) string {
	if s == "" {
		return prefix + "[]\n"
	}
	var b strings.Builder
	for line := range strings.Lines(s) {
		b.WriteString(prefix + line)
	}
	return b.String()
}

// TestAllErrorsReported: every problem is reported at once, and a field in
// error does not cause follow-on errors.
func TestAllErrorsReported(t *testing.T) {
	_, err := Parse([]byte(`
server: {listen: nope, idle_timeout: soon}
operator: {api_key: k, concurrency: 0}
sources:
  - {name: gh, path: /hooks/gh, verify: {type: github, secrets: ["${GH_SECRET}"]}, colour: red, body: xml}
routes:
  - {name: r, source: gl, template: t}
`), "", env(nil))
	if err == nil {
		t.Fatal("no error")
	}
	want := []string{
		`server.idle_timeout (line 2): invalid duration "soon"`,
		`sources[0] "gh".verify.secrets[0] (line 5): environment variable GH_SECRET is not set`,
		`sources[0] "gh" (line 5): unknown field "colour"`,
		`server.listen (line 2): invalid address "nope": want host:port or :port`,
		`operator.concurrency (line 3): must be >= 1, got 0`,
		`sources[0] "gh".body (line 5): must be json, text or auto, got "xml"`,
		`routes[0] "r".source (line 7): unknown source "gl"`,
	}
	got := strings.Split(err.Error(), "\n")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestFieldError(t *testing.T) {
	inner := errors.New("boom")
	e := &FieldError{Field: "routes[2].filter", Line: 9, Err: inner}
	if e.Error() != "routes[2].filter (line 9): boom" {
		t.Errorf("Error() = %q", e.Error())
	}
	if !errors.Is(e, inner) {
		t.Error("Unwrap lost the cause")
	}
	if (&FieldError{Err: inner}).Error() != "boom" {
		t.Error("a FieldError without field or line should print its cause only")
	}
}

func TestEnvInValues(t *testing.T) {
	vars := map[string]string{
		"KEY": "from-env", "PORT": "9999", "PENDING": "42", "TTL": "90", "EMPTY": "",
		"PROXY": "true", "RATE": "0.5", "NAME": "gh",
	}
	c := mustParse(t, `
server:
  listen: ":${PORT}"
  trust_proxy: ${PROXY}
storage:
  max_pending: ${PENDING}
  dedupe_ttl: "${TTL}"
operator:
  api_key: ${KEY}
  version: "${VERSION:-2024-06-01}"
  rate_limit: {per_second: "${RATE}", burst: "${BURST:-${FALLBACK_BURST:-7}}"}
sources:
  - name: ${NAME}
    path: /hooks/${NAME}
    verify: {type: github, secrets: ["${EMPTY:-dflt}", "lit$$eral", "keep $x and $", "{{ $$v }}"]}
routes:
  - name: r
    source: gh
    filter: '$env != nil'
    template: '{{ $x := .body }}{{ $x }} costs $$5'
`, vars)
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", c.Server.Listen, ":9999"},
		{"trust_proxy", c.Server.TrustProxy, true},
		{"max_pending", c.Storage.MaxPending, 42},
		{"dedupe_ttl", c.Storage.DedupeTTL.D(), 90 * time.Second},
		{"api_key", c.Operator.APIKey, Secret("from-env")},
		{"version default", c.Operator.Version, "2024-06-01"},
		{"per_second", c.Operator.RateLimit.PerSecond, 0.5},
		{"nested default", c.Operator.RateLimit.Burst, 7},
		{"source name", c.Sources[0].Name, "gh"},
		{"source path", c.Sources[0].Path, "/hooks/gh"},
		{"secrets", []string(c.Sources[0].Verify.Secrets), []string{"dflt", "lit$eral", "keep $x and $", "{{ $v }}"}},
		{"expr $env kept", c.Routes[0].Filter, "$env != nil"},
		{"template vars kept", c.Routes[0].Template, "{{ $x := .body }}{{ $x }} costs $5"},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %#v, want %#v", ck.name, ck.got, ck.want)
		}
	}
}

// A value that expands to text YAML would read as null or a number stays a
// string in string fields.
func TestEnvValueKeepsStringType(t *testing.T) {
	c := mustParse(t, strings.Replace(minimal, "api_key: op-key", "api_key: ${K}", 1), map[string]string{"K": "null"})
	if c.Operator.APIKey != "null" {
		t.Errorf("api_key = %q, want the literal text", c.Operator.APIKey)
	}
	c = mustParse(t, strings.Replace(minimal, "[s1]", "[\"${S}\"]", 1), map[string]string{"S": "0x1F"})
	if c.Sources[0].Verify.Secrets[0] != "0x1F" {
		t.Errorf("secret = %q", c.Sources[0].Verify.Secrets[0])
	}
}

func TestExpandEnv(t *testing.T) {
	vars := env(map[string]string{"A": "x", "E": "", "B_2": "y"})
	tests := []struct {
		in, want, err string
	}{
		{in: "plain", want: "plain"},
		{in: "${A}", want: "x"},
		{in: "a${A}b${B_2}c", want: "axbyc"},
		{in: "${E}", want: ""},
		{in: "${E:-d}", want: "d"},
		{in: "${U:-d}", want: "d"},
		{in: "${A:-d}", want: "x"},
		{in: "${U:-}", want: ""},
		{in: "${U:-a b:c}", want: "a b:c"},
		{in: "${U:-${A}}", want: "x"},
		{in: "${U:-${V:-deep}}", want: "deep"},
		{in: "${A:-${MISSING}}", want: "x"}, // an unused default is not evaluated
		{in: "$$", want: "$"},
		{in: "$${A}", want: "${A}"},
		{in: "$$$${A}", want: "$${A}"},
		{in: "$A $ $1 $", want: "$A $ $1 $"},
		{in: "${U:-$$}", want: "$"},
		{in: "${U}", err: "environment variable U is not set"},
		{in: "${}", err: "invalid variable reference"},
		{in: "${1A}", err: "invalid variable reference"},
		{in: "${A-x}", err: "invalid variable reference"},
		{in: "${A:=x}", err: "invalid variable reference"},
		{in: "${A", err: "unterminated"},
		{in: "${U:-abc", err: "unterminated"},
		{in: strings.Repeat("${U:-", 40) + "x" + strings.Repeat("}", 40), err: "nested too deeply"},
	}
	for _, tt := range tests {
		got, err := expandEnv(tt.in, vars)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("expandEnv(%q) error = %v, want %q", tt.in, err, tt.err)
		case tt.err == "" && err != nil:
			t.Errorf("expandEnv(%q): %v", tt.in, err)
		case tt.err == "" && got != tt.want:
			t.Errorf("expandEnv(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	var missing *MissingVarError
	if _, err := expandEnv("${NOPE}", vars); !errors.As(err, &missing) || missing.Name != "NOPE" {
		t.Errorf("missing variable error = %#v", err)
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{in: "1s", want: time.Second},
		{in: "10m", want: 10 * time.Minute},
		{in: "24h", want: 24 * time.Hour},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "250ms", want: 250 * time.Millisecond},
		{in: "30", want: 30 * time.Second},
		{in: "0", want: 0},
		{in: "-5", want: -5 * time.Second},
		{in: " 15 ", want: 15 * time.Second},
		{in: "5x", err: true},
		{in: "1.5", err: true},
		{in: "", err: true},
		{in: "99999999999999999", err: true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if tt.err {
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("invalid duration %q", tt.in)) {
				t.Errorf("ParseDuration(%q) = %v, %v; want an error quoting it", tt.in, got, err)
			}
			continue
		}
		if err != nil || got.D() != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}

	// Through YAML: plain integers, quoted, Go forms.
	var v struct {
		A, B, C Duration
	}
	if err := yaml.Unmarshal([]byte("a: 60\nb: '2m'\nc: 1h\n"), &v); err != nil {
		t.Fatal(err)
	}
	if v.A.D() != time.Minute || v.B.D() != 2*time.Minute || v.C.D() != time.Hour {
		t.Errorf("decoded %+v", v)
	}
	out, err := yaml.Marshal(v)
	if err != nil || string(out) != "a: 1m0s\nb: 2m0s\nc: 1h0m0s\n" {
		t.Errorf("marshal = %q, %v", out, err)
	}
	var back struct{ A, B, C Duration }
	if err := yaml.Unmarshal(out, &back); err != nil || back != v {
		t.Errorf("round trip = %+v, %v", back, err)
	}
	text, _ := Duration(90 * time.Second).MarshalText()
	var d Duration
	if string(text) != "1m30s" || d.UnmarshalText(text) != nil || d.D() != 90*time.Second {
		t.Errorf("text round trip: %q → %v", text, d)
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFileTwins(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "secrets/api-key", "op-from-file\n")
	writeFile(t, dir, "secrets/admin", "admin-from-file \r\n")
	writeFile(t, dir, "secrets/gh", "# rotated 2024-06\n\nold-secret\r\n  \nnew-secret  \n# end\n")
	abs := writeFile(t, t.TempDir(), "ci", "ci-from-abs-file")
	writeFile(t, dir, "prompts/ci.tmpl", "CI failed on {{ .body.repo }}\n${NOT_EXPANDED}\n")
	cfgPath := writeFile(t, dir, "relay.yaml", `
server:
  admin_token_file: secrets/admin
operator:
  api_key_file: ./secrets/api-key
sources:
  - name: gh
    path: /hooks/gh
    verify: {type: github, secrets_file: secrets/gh}
  - name: ci
    path: /hooks/ci
    verify: {type: bearer, secrets_file: `+abs+`}
routes:
  - name: r
    source: gh
    template_file: prompts/ci.tmpl
`)
	// Loading from another working directory still finds the files: they
	// are relative to the config file.
	c, err := LoadWith(cfgPath, Options{Lookup: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if c.Operator.APIKey != "op-from-file" {
		t.Errorf("api_key = %q", c.Operator.APIKey)
	}
	if c.Server.AdminToken != "admin-from-file" {
		t.Errorf("admin_token = %q", c.Server.AdminToken)
	}
	if got := []string(c.Sources[0].Verify.Secrets); !reflect.DeepEqual(got, []string{"old-secret", "new-secret"}) {
		t.Errorf("secrets = %q", got)
	}
	if got := []string(c.Sources[1].Verify.Secrets); !reflect.DeepEqual(got, []string{"ci-from-abs-file"}) {
		t.Errorf("absolute secrets_file = %q", got)
	}
	if c.Routes[0].Template != "CI failed on {{ .body.repo }}\n${NOT_EXPANDED}\n" {
		t.Errorf("template = %q (template files are read verbatim)", c.Routes[0].Template)
	}
	if c.Routes[0].TemplateFile != "prompts/ci.tmpl" || c.Operator.APIKeyFile != "./secrets/api-key" {
		t.Errorf("file fields should keep what was written")
	}
}

func TestFileTwinErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "empty", "\n\n")
	writeFile(t, dir, "comments", "# only\n\n#comments\n")
	writeFile(t, dir, "two-lines", "a\nb\n")
	writeFile(t, dir, "blank.tmpl", " \n")
	big := strings.Repeat("x", maxFileBytes+1)
	writeFile(t, dir, "big", big)
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, yaml, want string
	}{
		{"empty api key file", "operator: {api_key_file: empty}", "operator.api_key_file (line 1): empty is empty"},
		{"two-line api key file", "operator: {api_key_file: two-lines}", "operator.api_key_file (line 1): holds more than one line"},
		{"directory", "operator: {api_key_file: adir}", "operator.api_key_file (line 1): " + filepath.Join(dir, "adir") + ": not a regular file"},
		{"too big", "operator: {api_key_file: big}", "larger than"},
		{"empty admin token file", "operator: {api_key: k}\nserver: {admin_token_file: empty}", "server.admin_token_file (line 2): empty is empty"},
		{"secrets file of comments", "operator: {api_key: k}\nsources: [{name: a, path: /a, verify: {type: github, secrets_file: comments}}]", `sources[0] "a".verify.secrets_file (line 2): no secrets in comments`},
		{"blank template file", "operator: {api_key: k}\nroutes: [{name: r, source: a, template_file: blank.tmpl}]", `routes[0] "r".template_file (line 2): blank.tmpl is empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.yaml
			if !strings.Contains(src, "sources:") {
				src += "\nsources: [{name: a, path: /a, verify: {type: none}}]"
			}
			_, err := Parse([]byte(src), dir, env(nil))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "xxxxxxxx") {
				t.Error("error echoes file content")
			}
		})
	}
}

func TestReadFileOption(t *testing.T) {
	files := map[string]string{"/s/key": "k-from-fs\n"}
	c, err := ParseWith([]byte(strings.Replace(minimal, "api_key: op-key", "api_key_file: key", 1)), "/s", Options{
		Lookup: env(nil),
		ReadFile: func(name string) ([]byte, error) {
			if v, ok := files[name]; ok {
				return []byte(v), nil
			}
			return nil, os.ErrNotExist
		},
	})
	if err != nil || c.Operator.APIKey != "k-from-fs" {
		t.Fatalf("c = %v, err = %v", c, err)
	}
}

func TestNATS(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "nats/app.creds", "creds")
	c := mustParse(t, minimal, nil)
	_ = c
	c, err := Parse([]byte(minimal+`
storage:
  backend: nats
  nats:
    url: "nats://a:4222, nats://b:4222"
    creds_file: nats/app.creds
`), dir, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Storage.NATS.Servers(); !reflect.DeepEqual(got, []string{"nats://a:4222", "nats://b:4222"}) {
		t.Errorf("servers = %q", got)
	}
	if c.Storage.NATS.CredsFile != filepath.Join(dir, "nats/app.creds") {
		t.Errorf("creds_file = %q, want resolved against the config directory", c.Storage.NATS.CredsFile)
	}
	if (NATS{URLs: []string{"tls://x:1", " "}}).Servers()[0] != "tls://x:1" {
		t.Error("urls list not used")
	}
	// With bbolt, NATS settings are not checked.
	if _, err := Parse([]byte(minimal+"storage: {nats: {partitions: 0}}\n"), dir, env(nil)); err != nil {
		t.Errorf("nats settings checked under bbolt: %v", err)
	}
}

func TestAllowedPrefixes(t *testing.T) {
	c := mustParse(t, strings.Replace(minimal, "path: /hooks/gh", "path: /hooks/gh\n    allow_cidrs: [10.0.0.0/8, 192.168.1.7, '2001:db8::/32', '::1', 10.1.2.3/16]", 1), nil)
	got := c.Sources[0].AllowedPrefixes()
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("10.1.0.0/16"),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("prefixes = %v, want %v", got, want)
	}
}

func TestAnchorsAndMerge(t *testing.T) {
	c := mustParse(t, `
operator: {api_key: k}
x-verify: &gh {type: github, secrets: ["${GH}", "a$$b"]}
sources:
  - {name: one, path: /one, verify: *gh}
  - name: two
    path: /two
    verify:
      <<: *gh
      secrets: [other]
  - {name: three, path: /three, verify: *gh}
`, map[string]string{"GH": "gh-secret"})
	want := []string{"gh-secret", "a$b"} // expanded once, though used twice
	if got := []string(c.Sources[0].Verify.Secrets); !reflect.DeepEqual(got, want) {
		t.Errorf("sources[0] secrets = %q", got)
	}
	if got := []string(c.Sources[2].Verify.Secrets); !reflect.DeepEqual(got, want) {
		t.Errorf("sources[2] secrets = %q", got)
	}
	if v := c.Sources[1].Verify; v.Type != "github" || !reflect.DeepEqual([]string(v.Secrets), []string{"other"}) {
		t.Errorf("merged verify = %+v", v)
	}

	// Mistakes inside an anchor are reported where it is used.
	_, err := Parse([]byte(`
operator: {api_key: k}
x-verify: &v {type: github, secret: [s]}
sources:
  - {name: one, path: /one, verify: {<<: *v}}
`), "", env(nil))
	if err == nil || !strings.Contains(err.Error(), `sources[0] "one".verify (line 3): unknown field "secret"`) {
		t.Errorf("err = %v", err)
	}
	_, err = Parse([]byte("operator: {api_key: k, <<: 5}\nsources: [{name: a, path: /a, verify: {type: none}}]\n"), "", env(nil))
	if err == nil || !strings.Contains(err.Error(), "operator (line 1): a merge (<<) takes a mapping") {
		t.Errorf("err = %v", err)
	}
}

// TestAliasBomb: nested merges of aliases would visit 10^9 nodes; the walk
// gives up with an error instead.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("x-0: &m0 {type: none}\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&b, "x-%d: &m%d {<<: [%s]}\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*m%d, ", i-1), 10), ", "))
	}
	b.WriteString("sources: [{name: a, path: /a, verify: *m9}]\n")
	_, err := Parse([]byte(b.String()), "", env(nil))
	if err == nil || !strings.Contains(err.Error(), "too many aliases") {
		t.Fatalf("err = %v", err)
	}
}

func TestDevMode(t *testing.T) {
	noKey := strings.Replace(minimal, "api_key: op-key", "api_key: ${OPERATOR_API_KEY}", 1)
	if _, err := Parse([]byte(noKey), "", env(nil)); err == nil {
		t.Fatal("missing key accepted outside dev mode")
	}
	c, err := ParseWith([]byte(noKey), "", Options{Dev: true, Lookup: env(nil)})
	if err != nil || c.Operator.APIKey != "" {
		t.Fatalf("dev: %v, %v", c, err)
	}
	// Dev mode forgives the key only: other missing variables still fail.
	_, err = ParseWith([]byte(strings.Replace(noKey, "[s1]", "[\"${S}\"]", 1)), "", Options{Dev: true, Lookup: env(nil)})
	if err == nil || !strings.Contains(err.Error(), `sources[0] "gh".verify.secrets[0] (line 7): environment variable S is not set`) {
		t.Fatalf("err = %v", err)
	}
	if _, err := ParseWith([]byte(strings.Replace(minimal, "api_key: op-key", "", 1)), "", Options{Dev: true, Lookup: env(nil)}); err != nil {
		t.Fatalf("dev without api_key: %v", err)
	}
}

func TestLookups(t *testing.T) {
	c := mustParse(t, minimal, nil)
	if s, ok := c.SourceByName("gh"); !ok || s != &c.Sources[0] {
		t.Error("SourceByName(gh)")
	}
	if _, ok := c.SourceByName("nope"); ok {
		t.Error("SourceByName(nope) found something")
	}
	if r, ok := c.routeByName("r1"); !ok || r.Source != "gh" {
		t.Error("routeByName(r1)")
	}
	if _, ok := c.routeByName("nope"); ok {
		t.Error("routeByName(nope) found something")
	}
	if got := c.line("routes[0].template"); got != 11 {
		t.Errorf("Line(routes[0].template) = %d, want 11", got)
	}
	if got := c.line("routes[0].filter"); got != 9 {
		t.Errorf("Line of an unwritten field = %d, want its parent's line 9", got)
	}
	if got := c.line("nope"); got != 0 {
		t.Errorf("Line(nope) = %d", got)
	}
}

func TestUnsetPlaceholder(t *testing.T) {
	data := []byte(`
server:
  admin_listen: "127.0.0.1:${ADMIN_PORT:-9191}"
operator:
  api_key: ${NO_SUCH_KEY}
sources:
  - name: s
    path: /s
    verify: {type: github, secrets: ["${NO_SUCH_SECRET}"]}
routes:
  - {name: r, source: s, template: "x"}
`)
	lookup := func(string) (string, bool) { return "", false }
	if _, err := ParseWith(data, t.TempDir(), Options{Lookup: lookup}); err == nil {
		t.Fatal("unset variables accepted without Unset")
	}
	c, err := ParseWith(data, t.TempDir(), Options{Lookup: lookup, Unset: "placeholder"})
	if err != nil {
		t.Fatalf("with Unset: %v", err)
	}
	if c.Server.AdminListen != "127.0.0.1:9191" {
		t.Errorf("default not applied: admin_listen = %q", c.Server.AdminListen)
	}
	if c.Operator.APIKey != "placeholder" || c.Sources[0].Verify.Secrets[0] != "placeholder" {
		t.Errorf("placeholder not used: %q %q", c.Operator.APIKey, c.Sources[0].Verify.Secrets)
	}
}

func TestTurnKeys(t *testing.T) {
	c := mustParse(t, minimal+`  - name: r2
    source: gh
    template: t
    conversation: body.repository.full_name
    coalesce: {wait: 10s}
    supersede: 'body.check_run.name'
    turn_limit: {turns: 20, per: 1h}
    max_prompt_bytes: 16384
    batch_template: '{{ len .events }} events'
`, nil)
	r := c.Routes[1]
	if r.Coalesce == nil || r.Coalesce.Wait.D() != 10*time.Second || r.Coalesce.MaxEvents != DefaultCoalesceMaxEvents {
		t.Errorf("coalesce = %+v, want wait 10s and the default max_events", r.Coalesce)
	}
	if r.TurnLimit == nil || r.TurnLimit.Turns != 20 || r.TurnLimit.Per.D() != time.Hour {
		t.Errorf("turn_limit = %+v", r.TurnLimit)
	}
	if r.Supersede != "body.check_run.name" || r.BatchTemplate != "{{ len .events }} events" || r.MaxPromptBytes != 16384 {
		t.Errorf("route = %+v", r)
	}
	if c.Routes[0].Coalesce != nil {
		t.Errorf("a route without coalesce got %+v", c.Routes[0].Coalesce)
	}
}
