package templates

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/event"
	"github.com/relayd/relayd/internal/samples"
	"github.com/relayd/relayd/internal/xtest"
)

// decode parses JSON as ingest does: integers int64, other numbers float64.
func decode(t testing.TB, data []byte) any { return xtest.DecodeJSON(t, data) }

// githubEnv is the environment of a real workflow_run delivery.
func githubEnv(t testing.TB) map[string]any {
	t.Helper()
	raw, err := samples.GitHub("workflow_run", "completed")
	if err != nil {
		t.Fatal(err)
	}
	ev := event.Event{
		Source:     "github",
		Event:      "workflow_run",
		Delivery:   "72d3162e-cc78-11e3-81ab-4c9367dc0958",
		Headers:    map[string]string{"x-github-event": "workflow_run", "content-type": "application/json"},
		Body:       decode(t, raw),
		Raw:        string(raw),
		ReceivedAt: time.Date(2020, 10, 5, 16, 33, 50, 0, time.UTC),
	}
	return ev.Env()
}

// The route example of the public contract, as YAML's block scalar gives it.
const contractTemplate = `CI failed on {{ .body.repository.full_name }} ({{ .body.workflow_run.head_branch }}).
Run: {{ .body.workflow_run.html_url }}
Find the cause and propose a fix.
`

func TestContractExampleOnGitHubPayload(t *testing.T) {
	tm, err := Compile("ci-failures", contractTemplate)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tm.Render(githubEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	want := "CI failed on octo-org/octo-repo (master).\n" +
		"Run: https://github.com/octo-org/octo-repo/actions/runs/289782451\n" +
		"Find the cause and propose a fix.\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestRichTemplateOnGitHubPayload(t *testing.T) {
	const text = `{{ with .body.workflow_run -}}
Workflow {{ $.body.workflow.name | quote }} run #{{ .run_number }} (id {{ .id }}) {{ .conclusion | upper }}
Commit {{ truncate 7 .head_sha }} on {{ .head_branch }}: {{ .display_title }}
Started {{ date "2006-01-02 15:04 MST" .run_started_at }}, attempt {{ .run_attempt }}
{{- if .pull_requests }} PRs: {{ len .pull_requests }}{{ end }}
Previous: {{ .previous_attempt_url | default "none" }}{{ .previous_attempt_url.html_url }}
{{- end }}
Sender: {{ .body.sender.login }} via {{ index .headers "x-github-event" }} ({{ .event }}, {{ .source }})
Received: {{ .received_at.Format "15:04:05" }} delivery {{ .delivery }}
Missing: [{{ .body.pull_request.head.ref }}{{ .body.nope }}{{ .ce.type }}]`
	tm, err := Compile("rich", text)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tm.Render(githubEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	want := `Workflow "test" run #163 (id 289782451) SUCCESS
Commit 3484a3f… on master: ci(action): update actions/setup-node digest to 8c91899
Started 2020-10-05 16:33 UTC, attempt 1
Previous: none
Sender: Codertocat via workflow_run (workflow_run, github)
Received: 16:33:50 delivery 72d3162e-cc78-11e3-81ab-4c9367dc0958
Missing: []`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestMissingKeysRenderEmpty(t *testing.T) {
	data := map[string]any{
		"body": map[string]any{
			"null":  nil,
			"str":   "text",
			"num":   int64(7),
			"list":  []any{nil, map[string]any{"name": "second"}, "str"},
			"inner": map[string]any{"key": "value"},
		},
		"headers": map[string]string{"x-a": "1"},
	}
	tests := []struct {
		name, tmpl, want string
	}{
		{"top-level", `[{{ .missing }}]`, "[]"},
		{"nested", `[{{ .body.missing }}]`, "[]"},
		{"through a missing map", `[{{ .body.missing.deeper }}]`, "[]"},
		{"deep through a missing map", `[{{ .body.missing.deeper.still.more }}]`, "[]"},
		{"through null", `[{{ .body.null.deeper }}]`, "[]"},
		{"through a string", `[{{ .body.str.deeper }}]`, "[]"},
		{"through a number", `[{{ .body.num.deeper }}]`, "[]"},
		{"through a list", `[{{ .body.list.deeper }}]`, "[]"},
		{"present", `[{{ .body.inner.key }}]`, "[value]"},
		{"header missing", `[{{ .headers.missing }}{{ index .headers "x-b" }}]`, "[]"},
		{"root variable", `[{{ $.body.missing.deeper }}]`, "[]"},
		{"variable", `{{ $b := .body }}[{{ $b.missing.deeper }}{{ $b.inner.key }}]`, "[value]"},
		{"variable holding missing", `{{ $m := .body.missing }}[{{ $m }}{{ $m.deeper }}]`, "[]"},
		{"parenthesised", `[{{ (.body.missing).deeper }}{{ (.body.inner).key }}]`, "[value]"},
		{"if on missing", `{{ if .body.missing.deeper }}yes{{ else }}no{{ end }}`, "no"},
		{"if not missing", `{{ if not .body.missing.deeper }}yes{{ end }}`, "yes"},
		{"if eq missing", `{{ if eq .body.missing.deeper "x" }}yes{{ else }}no{{ end }}`, "no"},
		{"if ne missing", `{{ if ne .body.missing "x" }}yes{{ end }}`, "yes"},
		{"if and or", `{{ if and .body.inner .body.missing.x }}a{{ else if or .body.missing .body.inner }}b{{ end }}`, "b"},
		{"else if missing", `{{ if .body.nope }}a{{ else if .body.missing.x }}b{{ else }}c{{ end }}`, "c"},
		{"with missing", `{{ with .body.missing.deeper }}yes{{ else }}none{{ end }}`, "none"},
		{"with present", `{{ with .body.inner }}{{ .key }}{{ .missing.x }}{{ end }}`, "value"},
		{"range missing", `{{ range .body.missing.list }}x{{ else }}empty{{ end }}`, "empty"},
		{"range null", `{{ range .body.null }}x{{ end }}`, ""},
		{"range items with null", `{{ range .body.list }}[{{ .name }}]{{ end }}`, "[][second][]"},
		{"range with variables", `{{ range $i, $e := .body.list }}{{ $i }}={{ $e.name }};{{ end }}`, "0=;1=second;2=;"},
		{"range over missing nested in range", `{{ range .body.list }}{{ range .tags }}x{{ end }}{{ end }}`, ""},
		{"printf", `[{{ printf "%s" .body.str }}]`, "[text]"},
		{"pipeline into helper", `[{{ .body.missing.deeper | upper }}]`, "[]"},
		{"default", `{{ .body.missing.deeper | default "n/a" }}`, "n/a"},
		{"defined template", `{{ define "x" }}[{{ .a.b }}]{{ end }}{{ template "x" .body.missing }}`, "[]"},
		{"block", `{{ block "b" .body }}[{{ .missing.deeper }}{{ .inner.key }}]{{ end }}`, "[value]"},
		{"nil data", `[{{ .body.x }}]`, "[]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := data
			if tc.name == "nil data" {
				d = nil
			}
			got, err := render(t, tc.tmpl, d)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if strings.Contains(got, "<no value>") {
				t.Errorf("rendered <no value>: %q", got)
			}
		})
	}
}

// Values that are not plain maps keep text/template's field and method
// semantics.
func TestMethodsAndStructs(t *testing.T) {
	type inner struct{ Name string }
	type outer struct {
		In     inner
		Ptr    *inner
		hidden string
	}
	data := map[string]any{
		"at":     time.Date(2024, 3, 4, 5, 6, 7, 0, time.UTC),
		"s":      outer{In: inner{Name: "in"}, hidden: "h"},
		"err":    errorer{},
		"labels": map[string][]string{"team": {"a", "b"}},
	}
	tests := []struct {
		name, tmpl, want string
	}{
		{"method with argument", `{{ .at.Format "2006-01-02" }}`, "2024-03-04"},
		{"niladic method", `{{ .at.Year }}`, "2024"},
		{"niladic method chain", `{{ .at.UTC.Month }}`, "March"},
		{"struct fields", `{{ .s.In.Name }}`, "in"},
		{"nil pointer field", `[{{ .s.Ptr.Name }}]`, "[]"},
		{"unexported field", `[{{ .s.hidden }}]`, "[]"},
		{"other map types", `{{ index .labels.team 1 }}`, "b"},
		{"method returning an error", `{{ .err.Fail.X }}`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := render(t, tc.tmpl, data)
			if tc.name == "method returning an error" {
				if err == nil || !strings.Contains(err.Error(), "boom") {
					t.Fatalf("got %q, %v; want the method's error", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

type errorer struct{}

func (errorer) Fail() (string, error) { return "", errors.New("boom") }

func TestNumbersPrintExactly(t *testing.T) {
	data := map[string]any{
		"id":    int64(12345678901234567),
		"neg":   int64(-9007199254740993),
		"run":   int64(289782451),
		"float": 1.5,
		"big":   1.2345678901e10,
		"huge":  1e21,
		"small": 0.000001,
		"list":  []any{int64(1), 2.5},
	}
	tests := []struct {
		name, tmpl, want string
	}{
		{"int64 beyond float precision", `{{ .id }}`, "12345678901234567"},
		{"negative int64", `{{ .neg }}`, "-9007199254740993"},
		{"run id", `{{ .run }}`, "289782451"},
		{"float", `{{ .float }}`, "1.5"},
		{"integral float no exponent", `{{ .big }}`, "12345678901"},
		{"huge float no exponent", `{{ .huge }}`, "1000000000000000000000"},
		{"small float no exponent", `{{ .small }}`, "0.000001"},
		{"compare int64 with constant", `{{ if eq .run 289782451 }}yes{{ end }}`, "yes"},
		{"compare with gt", `{{ if gt .run 1 }}yes{{ end }}`, "yes"},
		{"json keeps ints", `{{ json .list }}`, "[1,2.5]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := render(t, tc.tmpl, data)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name, text string
		line, col  int
		msg        string
	}{
		{"unknown function", "Hello\n  {{ .x | nope }}", 2, 3, `function "nope" not defined`},
		{"second action on the line", `ab {{ .x }} {{ .y ) }}`, 1, 13, "unexpected right paren"},
		{"unclosed action", "x\n{{ .x", 2, 1, "unclosed action"},
		{"unclosed if", `{{ if .x }}hello`, 1, 1, "unexpected EOF"},
		{"stray end", "a\nb {{ end }}", 2, 3, "unexpected {{end}}"},
		{"bad range", "{{ range }}{{ end }}", 1, 1, "missing value for range"},
		{"multibyte before the action", `héllo {{ nope }}`, 1, 7, `function "nope" not defined`},
		{"unknown function in define", "{{ define \"x\" }}\n{{ nope }}{{ end }}", 2, 1, `function "nope" not defined`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile("route", tc.text)
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if te.Name != "route" || te.Line != tc.line || te.Col != tc.col || !strings.Contains(te.Msg, tc.msg) {
				t.Errorf("got %+v, want line %d col %d msg containing %q", *te, tc.line, tc.col, tc.msg)
			}
			want := fmt.Sprintf("line %d, col %d: ", tc.line, tc.col)
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("Error() = %q, want prefix %q", err.Error(), want)
			}
		})
	}
}

func TestErrorWithoutColumn(t *testing.T) {
	e := &Error{Name: "x", Line: 3, Msg: "unexpected EOF"}
	if got := e.Error(); got != "line 3: unexpected EOF" {
		t.Errorf("Error() = %q", got)
	}
	e = &Error{Name: "x", Msg: "something"}
	if got := e.Error(); got != "something" {
		t.Errorf("Error() = %q", got)
	}
}

func TestRenderTo(t *testing.T) {
	tm, err := Compile("t", `{{ .body.repository.full_name }}/{{ .body.missing.x }}`)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.WriteString(">")
	if err := tm.renderTo(&buf, githubEnv(t)); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != ">octo-org/octo-repo/" {
		t.Errorf("got %q", got)
	}
	if tm.Name() != "t" {
		t.Errorf("Name() = %q", tm.Name())
	}
	bad, err := Compile("t", `{{ truncate "x" .body }}`)
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.renderTo(&buf, githubEnv(t)); err == nil || !strings.Contains(err.Error(), "not a number") {
		t.Errorf("renderTo error = %v", err)
	}
}

func TestConcurrentRender(t *testing.T) {
	tm, err := Compile("ci-failures", contractTemplate)
	if err != nil {
		t.Fatal(err)
	}
	env := githubEnv(t)
	want, err := tm.Render(env)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for range 50 {
				got, err := tm.Render(env)
				if err == nil && got != want {
					err = fmt.Errorf("got %q", got)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func BenchmarkRenderContractExample(b *testing.B) {
	tm, err := Compile("ci-failures", contractTemplate)
	if err != nil {
		b.Fatal(err)
	}
	env := githubEnv(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tm.Render(env); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRenderToContractExample(b *testing.B) {
	tm, err := Compile("ci-failures", contractTemplate)
	if err != nil {
		b.Fatal(err)
	}
	env := githubEnv(b)
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := tm.renderTo(&buf, env); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompileContractExample(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile("ci-failures", contractTemplate); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzCompile: any text either fails to compile with an *Error or compiles
// to a template that renders a real payload without panicking.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		contractTemplate,
		`{{ .body.missing.deeper }}`,
		`{{ range $i, $e := .body.workflow_run.pull_requests }}{{ $e.number }}{{ end }}`,
		`{{ with .body }}{{ .action | upper | truncate 3 }}{{ end }}`,
		`{{ define "a" }}{{ .x.y }}{{ end }}{{ template "a" . }}`,
		`{{ (index .body "repository").owner.login }}`,
		`{{ $x := .body }}{{ $x.a.b }}{{ $.body.c }}`,
		`{{ if .x }}`, `{{ .x ) }}`, `{{`, `}}`, `{{/* c */}}`, `{{- .x -}}`,
		`{{ json .body | lines 2 | indent 2 }}`,
		`{{ .received_at.Format "2006" }}{{ .received_at.Nope }}`,
	} {
		f.Add(s)
	}
	env := githubEnv(f)
	// range over an integer runs that many times: give such templates data
	// with no large numbers in it, so a run stays short.
	small := map[string]any{"body": map[string]any{"a": []any{"x", nil, map[string]any{"b": 1.5}}, "n": int64(3)}}
	f.Fuzz(func(t *testing.T, text string) {
		tm, err := Compile("fuzz", text)
		if err != nil {
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("error %v is %T, not *Error", err, err)
			}
			return
		}
		data := env
		if strings.Contains(text, "range") {
			data = small
		}
		var buf bytes.Buffer
		_ = tm.renderTo(&limitWriter{w: &buf, n: 1 << 16}, data)
	})
}

// limitWriter stops a fuzzed template that prints without end.
type limitWriter struct {
	w *bytes.Buffer
	n int
}

var errLimit = errors.New("output limit")

func (l *limitWriter) Write(p []byte) (int, error) {
	if len(p) > l.n {
		return 0, errLimit
	}
	l.n -= len(p)
	return l.w.Write(p)
}

// renderTo executes the template into w, streaming. On error, w may hold
// part of the output.
func (t *Template) renderTo(w io.Writer, data map[string]any) error {
	if err := t.tmpl.Execute(w, data); err != nil {
		return t.execError(err)
	}
	return nil
}
