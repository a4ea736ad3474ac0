package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/relayd/relayd/internal/prompt"
)

var (
	defaultPreamble = prompt.DefaultPreamble
	builtinOn       = true
)

func TestPreamble(t *testing.T) {
	const (
		src    = "sources:\n  - {name: gh, path: /hooks/gh, verify: {type: github, secrets: [s]}}\n"
		routes = "routes:\n" +
			"  - {name: inherits, source: gh, template: t}\n" +
			"  - {name: own, source: gh, template: t, preamble: Route text.}\n" +
			"  - {name: none, source: gh, template: t, preamble: ''}\n"
	)
	tests := []struct {
		name     string
		operator string
		want     map[string]string // route name to PreambleFor
	}{
		{"default", "operator: {api_key: k}\n",
			map[string]string{"inherits": prompt.DefaultPreamble, "own": "Route text.", "none": ""}},
		{"operator text", "operator: {api_key: k, preamble: Top text.}\n",
			map[string]string{"inherits": "Top text.", "own": "Route text.", "none": ""}},
		{"operator none", "operator: {api_key: k, preamble: ''}\n",
			map[string]string{"inherits": "", "own": "Route text.", "none": ""}},
		{"operator null is the default", "operator: {api_key: k, preamble: ~}\n",
			map[string]string{"inherits": prompt.DefaultPreamble, "own": "Route text.", "none": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.operator+src+routes, nil)
			for name, want := range tt.want {
				r, _ := c.routeByName(name)
				if got := c.PreambleFor(r); got != want {
					t.Errorf("PreambleFor(%s) = %q, want %q", name, got, want)
				}
			}
		})
	}
	if prompt.DefaultPreamble == "" || !strings.Contains(prompt.DefaultPreamble, "<untrusted>") {
		t.Errorf("DefaultPreamble does not explain the fence: %q", prompt.DefaultPreamble)
	}
}

func TestRedactFor(t *testing.T) {
	const head = "operator: {api_key: k}\nsources:\n  - {name: gh, path: /hooks/gh, verify: {type: github, secrets: [s]}}\n"
	tests := []struct {
		name  string
		yaml  string
		route prompt.RedactOptions
	}{
		{"defaults", head + "routes:\n  - {name: r, source: gh, template: t}\n",
			prompt.RedactOptions{Builtin: true}},
		{"top-level patterns", head + "redact: {patterns: ['tok_[a-z]+']}\nroutes:\n  - {name: r, source: gh, template: t}\n",
			prompt.RedactOptions{Builtin: true, Patterns: []string{"tok_[a-z]+"}}},
		{"route adds patterns", head + "redact: {patterns: [a+]}\nroutes:\n  - {name: r, source: gh, template: t, redact: {patterns: [b+]}}\n",
			prompt.RedactOptions{Builtin: true, Patterns: []string{"a+", "b+"}}},
		{"top-level builtin off", head + "redact: {builtin: false}\nroutes:\n  - {name: r, source: gh, template: t, redact: {patterns: [b+]}}\n",
			prompt.RedactOptions{Builtin: false, Patterns: []string{"b+"}}},
		{"route builtin overrides", head + "redact: {builtin: false}\nroutes:\n  - {name: r, source: gh, template: t, redact: {builtin: true}}\n",
			prompt.RedactOptions{Builtin: true}},
		{"route builtin off", head + "routes:\n  - {name: r, source: gh, template: t, redact: {builtin: false}}\n",
			prompt.RedactOptions{Builtin: false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.yaml, nil)
			r, _ := c.routeByName("r")
			got := c.RedactFor(r)
			if !reflect.DeepEqual(got, tt.route) {
				t.Errorf("RedactFor = %+v, want %+v", got, tt.route)
			}
			if _, err := prompt.NewRedactor(got); err != nil {
				t.Errorf("NewRedactor(%+v): %v", got, err)
			}
		})
	}
}

func TestMaxPromptBytes(t *testing.T) {
	c := mustParse(t, minimal, nil)
	if got := c.Routes[0].MaxPromptBytes; got != DefaultMaxPromptBytes {
		t.Errorf("default max_prompt_bytes = %d, want %d", got, DefaultMaxPromptBytes)
	}
	c = mustParse(t, strings.Replace(minimal, "template: hello", "template: hello\n    max_prompt_bytes: 16384", 1), nil)
	if got := c.Routes[0].MaxPromptBytes; got != 16384 {
		t.Errorf("max_prompt_bytes = %d, want 16384", got)
	}
}

// The field paths are checked without their list prefix, whose format
// (index, name) is the loader's own business.
func TestPromptSafetyErrors(t *testing.T) {
	const head = "operator: {api_key: k}\nsources:\n  - {name: gh, path: /hooks/gh, verify: {type: github, secrets: [s]}}\n"
	route := func(extra string) string {
		return head + "routes:\n  - {name: r, source: gh, template: t" + extra + "}\n"
	}
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"top-level pattern does not compile", head + "redact: {patterns: [ok, '(unclosed']}\n" + route(""),
			[]string{"redact.patterns[1]", "missing closing )", "line 4"}},
		{"route pattern matches empty", route(", redact: {patterns: ['x*']}"),
			[]string{"redact.patterns[0]", "matches the empty string"}},
		{"redact builtin not a bool", route(", redact: {builtin: maybe}"), []string{"redact.builtin", "expected true or false"}},
		{"unknown redact key", route(", redact: {pattern: [x]}"), []string{`unknown field "pattern" (did you mean "patterns"?)`}},
		{"max_prompt_bytes zero", route(", max_prompt_bytes: 0"), []string{`routes[0] "r".max_prompt_bytes (line 5): must be between 256 and 16777216, got 0`}},
		{"max_prompt_bytes negative", route(", max_prompt_bytes: -1"), []string{".max_prompt_bytes (line 5): must be between"}},
		{"max_prompt_bytes too small", route(", max_prompt_bytes: 100"), []string{".max_prompt_bytes (line 5): must be between"}},
		{"max_prompt_bytes too large", route(", max_prompt_bytes: 1000000000"), []string{".max_prompt_bytes (line 5): must be between"}},
		{"preamble not text", "operator: {api_key: k, preamble: [a]}\n" + route(""), []string{"operator.preamble", "expected"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), t.TempDir(), nil)
			if err == nil {
				t.Fatalf("no error for:\n%s", tt.yaml)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q; got:\n%v", w, err)
				}
			}
		})
	}
}
