package route

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/event"
	"github.com/relayd/relayd/internal/samples"
	"github.com/relayd/relayd/internal/templates"
	"github.com/relayd/relayd/internal/xtest"
)

// The route example of the public contract.
const (
	contractFilter       = `event == "workflow_run" && body.action == "completed" && body.workflow_run.conclusion == "failure"`
	contractConversation = `body.repository.full_name`
	contractTemplate     = `CI failed on {{ .body.repository.full_name }} ({{ .body.workflow_run.head_branch }}).
Run: {{ .body.workflow_run.html_url }}
Find the cause and propose a fix.
`
)

func contractSpec() Spec {
	return Spec{
		Name: "ci-failures", Source: "github",
		Filter: contractFilter, Conversation: contractConversation, Template: contractTemplate,
	}
}

// decode parses JSON as ingest does: integers int64, other numbers float64.
func decode(t testing.TB, data []byte) any { return xtest.DecodeJSON(t, data) }

// githubEnv is the environment of a real GitHub delivery of the sample for
// ghEvent/action, after edit (if any) has changed its decoded body.
func githubEnv(t testing.TB, ghEvent, action string, edit func(body map[string]any)) map[string]any {
	t.Helper()
	raw, err := samples.GitHub(ghEvent, action)
	if err != nil {
		t.Fatal(err)
	}
	body := decode(t, raw).(map[string]any)
	if edit != nil {
		edit(body)
	}
	ev := event.Event{
		Source:   "github",
		Event:    ghEvent,
		Delivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
		Headers: map[string]string{
			"x-github-event":    ghEvent,
			"x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
			"content-type":      "application/json",
			"user-agent":        "GitHub-Hookshot/044aadd",
		},
		Body:       body,
		Raw:        string(raw),
		ReceivedAt: time.Date(2020, 10, 5, 16, 34, 0, 0, time.UTC),
	}
	return ev.Env()
}

// failed turns a workflow_run sample into a failed run.
func failed(body map[string]any) {
	body["workflow_run"].(map[string]any)["conclusion"] = "failure"
}

func textEnv(text string) map[string]any {
	ev := event.Event{Source: "ci", Headers: map[string]string{}, Body: text, Raw: text}
	return ev.Env()
}

func mustCompile(t testing.TB, s Spec) *Route {
	t.Helper()
	r, err := Compile(s)
	if err != nil {
		t.Fatalf("Compile(%+v): %v", s, err)
	}
	return r
}

func TestContractRoute(t *testing.T) {
	r := mustCompile(t, contractSpec())
	if r.Name != "ci-failures" || r.Source != "github" {
		t.Fatalf("Name, Source = %q, %q", r.Name, r.Source)
	}
	tests := []struct {
		name   string
		env    map[string]any
		match  bool
		key    string
		prompt string
	}{
		{
			name:  "workflow_run failure",
			env:   githubEnv(t, "workflow_run", "completed", failed),
			match: true, key: "octo-org/octo-repo",
			prompt: "CI failed on octo-org/octo-repo (master).\n" +
				"Run: https://github.com/octo-org/octo-repo/actions/runs/289782451\n" +
				"Find the cause and propose a fix.\n",
		},
		{
			name: "workflow_run failure on another repository and branch",
			env: githubEnv(t, "workflow_run", "completed", func(b map[string]any) {
				failed(b)
				b["repository"].(map[string]any)["full_name"] = "octo-org/other"
				b["workflow_run"].(map[string]any)["head_branch"] = "fix/flaky"
			}),
			match: true, key: "octo-org/other",
			prompt: "CI failed on octo-org/other (fix/flaky).\n" +
				"Run: https://github.com/octo-org/octo-repo/actions/runs/289782451\n" +
				"Find the cause and propose a fix.\n",
		},
		{name: "workflow_run success (the sample as is)", env: githubEnv(t, "workflow_run", "completed", nil), key: "octo-org/octo-repo"},
		{name: "workflow_run with pull requests", env: githubEnv(t, "workflow_run", "completed.with-pull-requests", nil), key: "octo-org/octo-repo"},
		{
			name: "workflow_run failure still in progress",
			env: githubEnv(t, "workflow_run", "completed", func(b map[string]any) {
				failed(b)
				b["action"] = "requested"
			}),
			key: "octo-org/octo-repo",
		},
		{
			name: "workflow_run without a conclusion (null)",
			env: githubEnv(t, "workflow_run", "completed", func(b map[string]any) {
				b["workflow_run"].(map[string]any)["conclusion"] = nil
			}),
			key: "octo-org/octo-repo",
		},
		{
			name: "workflow_run without workflow_run at all",
			env: githubEnv(t, "workflow_run", "completed", func(b map[string]any) {
				delete(b, "workflow_run")
			}),
			key: "octo-org/octo-repo",
		},
		{name: "push: no workflow_run field", env: githubEnv(t, "push", "", nil), key: "Codertocat/Hello-World"},
		{name: "workflow_job failure is another event", env: githubEnv(t, "workflow_job", "completed", nil), key: "Codertocat/Hello-World"},
		{name: "pull_request", env: githubEnv(t, "pull_request", "opened", nil), key: "Codertocat/Hello-World"},
		{name: "ping", env: githubEnv(t, "ping", "", nil), key: "Octocoders/Hello-World"},
		{name: "text body", env: textEnv("not json"), key: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := r.Match(tc.env)
			if err != nil {
				t.Fatalf("Match: %v", err)
			}
			if ok != tc.match {
				t.Fatalf("Match = %v, want %v", ok, tc.match)
			}
			key, err := r.ConversationKey(tc.env)
			if err != nil && tc.name != "text body" {
				t.Fatalf("ConversationKey: %v", err)
			}
			if key != tc.key {
				t.Errorf("ConversationKey = %q, want %q", key, tc.key)
			}
			if !tc.match {
				return
			}
			prompt, err := r.Render(tc.env)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if prompt != tc.prompt {
				t.Errorf("Render =\n%s\nwant\n%s", prompt, tc.prompt)
			}
		})
	}
}

func TestFilters(t *testing.T) {
	run := githubEnv(t, "workflow_run", "completed", failed)
	withPRs := githubEnv(t, "workflow_run", "completed.with-pull-requests", nil)
	push := githubEnv(t, "push", "", nil)
	job := githubEnv(t, "workflow_job", "completed", nil)
	tests := []struct {
		name, filter string
		env          map[string]any
		want         bool
	}{
		{"empty filter matches all", "", push, true},
		{"blank filter matches all", "  \n", textEnv("x"), true},
		{"event", `event == "push"`, push, true},
		{"event other", `event == "push"`, run, false},
		{"event in list", `event in ["push", "workflow_run"]`, run, true},
		{"source", `source == "github"`, run, true},
		{"source other", `source == "gitlab"`, run, false},
		{"header", `headers["x-github-event"] == "push"`, push, true},
		{"header prefix", `headers["user-agent"] startsWith "GitHub-Hookshot/"`, push, true},
		{"missing header is empty", `headers["x-nope"] == ""`, push, true},
		{"delivery", `delivery != ""`, push, true},
		{"received_at method", `received_at.Year() == 2020`, push, true},
		{"int64 field", `body.workflow_run.run_number > 100`, run, true},
		{"int64 equality", `body.workflow_run.id == 289782451`, run, true},
		{"branch", `body.ref == "refs/tags/simple-tag"`, push, true},
		{"string op on body field", `body.ref startsWith "refs/heads/"`, push, false},
		{"list length", `len(body.commits) == 0`, push, true},
		{"any over list", `any(body.workflow_run.pull_requests, .number == 2)`, withPRs, true},
		{"any over empty list", `any(body.workflow_run.pull_requests, .number == 2)`, run, false},
		{"nested missing is nil", `body.workflow_run.conclusion == "failure"`, push, false},
		{"deep missing is nil", `body.a.b.c.d == nil`, push, true},
		{"explicit optional chaining", `body?.workflow_run?.conclusion == "failure"`, run, true},
		{"null field compared", `body.workflow_run.previous_attempt_url == nil`, run, true},
		{"field of null", `body.workflow_run.previous_attempt_url.host == nil`, run, true},
		{"nil coalescing", `(body.workflow_run.conclusion ?? "none") == "none"`, push, true},
		{"in on missing", `body.workflow_run.conclusion in ["failure", "cancelled"]`, push, false},
		{"not on missing", `not (body.workflow_run.conclusion == "success")`, push, true},
		{"workflow_job failure", `event == "workflow_job" && body.workflow_job.conclusion == "failure"`, job, true},
		{"index syntax", `body["workflow_run"]["head_branch"] == "master"`, run, true},
		{"matches", `body.repository.full_name matches "^octo-org/"`, run, true},
		{"text body contains", `body contains "deploy"`, textEnv("please deploy now"), true},
		{"text body contains not", `body contains "deploy"`, textEnv("nothing"), false},
		{"raw", `raw contains "\"workflow_run\""`, run, true},
		{"extra absent", `ce.type == "com.example"`, run, false},
		{"extra absent nested", `object.bucket.name == "b"`, run, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mustCompile(t, Spec{Name: "r", Filter: tc.filter, Template: "x"})
			got, err := r.Match(tc.env)
			if err != nil {
				t.Fatalf("Match: %v", err)
			}
			if got != tc.want {
				t.Errorf("Match = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFilterWithExtras(t *testing.T) {
	ev := event.Event{
		Source: "events", Event: "com.example.deploy", Headers: map[string]string{}, Body: map[string]any{"ok": true},
		Extra: map[string]any{"ce": map[string]any{"type": "com.example.deploy", "source": "/ci"}},
	}
	r := mustCompile(t, Spec{Name: "r", Filter: `ce.type == "com.example.deploy" && ce.source == "/ci" && body.ok`, Template: "x"})
	ok, err := r.Match(ev.Env())
	if err != nil || !ok {
		t.Fatalf("Match = %v, %v; want true", ok, err)
	}
}

func TestFilterRunTimeErrors(t *testing.T) {
	push := githubEnv(t, "push", "", nil)
	tests := []struct {
		name, filter string
		env          map[string]any
		wantErr      string
	}{
		{"nil compared with a number", `body.missing > 1`, push, "invalid operation: <nil> > int"},
		{"string compared with a number", `body.ref > 1`, push, "invalid operation"},
		{"field of a text body", `body.action == "x"`, textEnv("text"), ""},
		{"index out of range", `body.commits[3].id == "x"`, push, "index out of range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mustCompile(t, Spec{Name: "r", Filter: tc.filter, Template: "x"})
			ok, err := r.Match(tc.env)
			if ok {
				t.Fatal("Match = true on a run-time error")
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "filter" {
				t.Fatalf("err = %v (%T), want *FieldError for filter", err, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "filter: ") || !strings.Contains(msg, tc.wantErr) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line starting \"filter: \" containing %q", msg, tc.wantErr)
			}
		})
	}
}

func TestConversationKey(t *testing.T) {
	run := githubEnv(t, "workflow_run", "completed", func(b map[string]any) {
		b["big"] = int64(12345678901)
		b["bigfloat"] = 1.2345678901e10
		b["frac"] = 0.25
		b["flag"] = true
	})
	tests := []struct {
		name, expr, want string
	}{
		{"empty", "", ""},
		{"string", `body.repository.full_name`, "octo-org/octo-repo"},
		{"int64 id", `body.repository.id`, "300029405"},
		{"int64 beyond int32", `body.big`, "12345678901"},
		{"integral float without exponent", `body.bigfloat`, "12345678901"},
		{"fraction", `body.frac`, "0.25"},
		{"bool", `body.flag`, "true"},
		{"nil", `body.workflow_run.previous_attempt_url`, ""},
		{"missing", `body.pull_request.number`, ""},
		{"concatenation", `source + "/" + body.repository.full_name + "#" + body.workflow_run.head_branch`, "github/octo-org/octo-repo#master"},
		{"arithmetic", `body.workflow_run.run_number + 1`, "164"},
		{"string of int", `string(body.workflow_run.id)`, "289782451"},
		{"conditional", `body.workflow_run.conclusion == "success" ? "green" : "red"`, "green"},
		{"header", `headers["x-github-event"]`, "workflow_run"},
		{"list", `[body.repository.name, body.workflow_run.run_number]`, "[octo-repo 163]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mustCompile(t, Spec{Name: "r", Conversation: tc.expr, Template: "x"})
			got, err := r.ConversationKey(run)
			if err != nil {
				t.Fatalf("ConversationKey: %v", err)
			}
			if got != tc.want {
				t.Errorf("ConversationKey = %q, want %q", got, tc.want)
			}
		})
	}

	r := mustCompile(t, Spec{Name: "r", Conversation: `body.missing + 1`, Template: "x"})
	key, err := r.ConversationKey(run)
	var fe *FieldError
	if key != "" || !errors.As(err, &fe) || fe.Field != "conversation" {
		t.Errorf("ConversationKey = %q, %v; want \"\" and a conversation *FieldError", key, err)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name  string
		spec  Spec
		field string
		want  string // the whole Error(), or its start when it ends in "…"
	}{
		{"unknown top-level name", Spec{Filter: `evnt == "push"`}, "filter", "filter: unknown name evnt (1:1)"},
		{"unknown name later on", Spec{Filter: `event == "push" && bdy.ref == "x"`}, "filter", "filter: unknown name bdy (1:20)"},
		{"syntax error", Spec{Filter: `event == `}, "filter", "filter: unexpected token EOF…"},
		{"unbalanced", Spec{Filter: `(event == "push"`}, "filter", "filter: unexpected token EOF…"},
		{"string filter", Spec{Filter: `source`}, "filter", "filter: expected bool, but got string"},
		{"number filter", Spec{Filter: `len(headers)`}, "filter", "filter: expected bool, but got int"},
		// body is untyped: a bare field would compile and drop every event.
		{"untyped body field", Spec{Filter: `body.repository.full_name`}, "filter", "filter: not known to be true or false…"},
		{"untyped arithmetic", Spec{Filter: `body.count + 1`}, "filter", "filter: not known to be true or false…"},
		{"unknown function", Spec{Filter: `nope(body)`}, "filter", "filter: unknown name nope (1:1)"},
		{"type mismatch", Spec{Filter: `source > 1`}, "filter", "filter: invalid operation: > (mismatched types string and int)…"},
		{"unknown field of received_at", Spec{Filter: `received_at.Nope == 1`}, "filter", "filter: type time.Time has no field Nope…"},
		{"conversation unknown name", Spec{Filter: `true`, Conversation: `body.repository.full_name + repo`}, "conversation", "conversation: unknown name repo…"},
		{"conversation syntax", Spec{Conversation: `body.`}, "conversation", "conversation: …"},
		{"template syntax", Spec{Template: "Hello\n{{ .body.x | nope }}"}, "template", `template: line 2, col 1: function "nope" not defined`},
		{"template unclosed", Spec{Template: "{{ if .x }}y"}, "template", "template: line 1, col 1: unexpected EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.spec
			s.Name = "r"
			if s.Template == "" {
				s.Template = "x"
			}
			r, err := Compile(s)
			if err == nil {
				t.Fatalf("Compile = %+v, want an error", r)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("err = %v (%T), want *FieldError for %s", err, err, tc.field)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			if prefix, ok := strings.CutSuffix(tc.want, "…"); ok {
				if !strings.HasPrefix(msg, prefix) {
					t.Errorf("error %q, want prefix %q", msg, prefix)
				}
			} else if msg != tc.want {
				t.Errorf("error %q, want %q", msg, tc.want)
			}
		})
	}
}

func TestTemplateErrorUnwraps(t *testing.T) {
	_, err := Compile(Spec{Name: "r", Template: "{{ .x ) }}"})
	var te *templates.Error
	if !errors.As(err, &te) || te.Line != 1 {
		t.Fatalf("err = %v, want a *templates.Error inside", err)
	}
}

func TestRenderError(t *testing.T) {
	r := mustCompile(t, Spec{Name: "r", Template: `{{ truncate .body.ref "x" }}`})
	if _, err := r.Render(githubEnv(t, "push", "", nil)); err == nil {
		t.Fatal("Render succeeded with a non-numeric truncate length")
	}
}

// Routes are shared by every ingest request: run them from many goroutines
// (with -race) to check that pooled VMs and templates keep runs apart.
func TestConcurrentUse(t *testing.T) {
	r := mustCompile(t, contractSpec())
	envs := []map[string]any{
		githubEnv(t, "workflow_run", "completed", failed),
		githubEnv(t, "workflow_run", "completed", nil),
		githubEnv(t, "push", "", nil),
	}
	wantMatch := []bool{true, false, false}
	wantKey := []string{"octo-org/octo-repo", "octo-org/octo-repo", "Codertocat/Hello-World"}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 60 {
				k := (g + i) % len(envs)
				ok, err := r.Match(envs[k])
				key, kerr := r.ConversationKey(envs[k])
				if err != nil || kerr != nil || ok != wantMatch[k] || key != wantKey[k] {
					errs <- "env " + strconv.Itoa(k) + ": match " + strconv.FormatBool(ok) + " key " + key
					return
				}
				if ok {
					if _, err := r.Render(envs[k]); err != nil {
						errs <- err.Error()
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func BenchmarkRoute(b *testing.B) {
	r := mustCompile(b, contractSpec())
	env := githubEnv(b, "workflow_run", "completed", failed)
	b.Run("Match", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ok, err := r.Match(env); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("ConversationKey", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.ConversationKey(env); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Render", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Render(env); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("All", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ok, err := r.Match(env)
			if !ok || err != nil {
				b.Fatal(ok, err)
			}
			if _, err := r.ConversationKey(env); err != nil {
				b.Fatal(err)
			}
			if _, err := r.Render(env); err != nil {
				b.Fatal(err)
			}
		}
	})
	miss := githubEnv(b, "push", "", nil)
	b.Run("MatchFilteredOut", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ok, err := r.Match(miss); ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
}

// FuzzCompile: no filter text makes Compile panic, and one that compiles
// runs on real payloads without panicking.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		contractFilter, contractConversation,
		`event == "push"`, `headers["x-github-event"] == "push"`, `source`, `evnt`,
		`body.a.b.c?.d ?? 1`, `any(body.commits, .id == "x")`, `body contains "x"`,
		`received_at.Year() > 2000 && len(raw) > 0`, `(`, `"`, `1 +`, `[1, 2][5]`,
		`let x = body.ref; x startsWith "refs/"`, `body | get("x")`, `ce?.type`,
		`map(body.commits, #.id)`, `body.ref[1:3] == "ef"`, `now() > received_at`,
	} {
		f.Add(s)
	}
	envs := []map[string]any{
		githubEnv(f, "workflow_run", "completed", nil),
		githubEnv(f, "push", "", nil),
		textEnv("plain text"),
	}
	f.Fuzz(func(t *testing.T, src string) {
		for _, s := range []Spec{{Name: "f", Filter: src, Template: "x"}, {Name: "f", Conversation: src, Template: "x"}} {
			r, err := Compile(s)
			if err != nil {
				var fe *FieldError
				if !errors.As(err, &fe) {
					t.Fatalf("error %v is %T, not *FieldError", err, err)
				}
				continue
			}
			for _, env := range envs {
				_, _ = r.Match(env)
				_, _ = r.ConversationKey(env)
			}
		}
	})
}
