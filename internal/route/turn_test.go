package route

import (
	"errors"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/prompt"
	"github.com/relayd/relayd/internal/queue"
)

func TestSupersedeKey(t *testing.T) {
	r, err := Compile(Spec{Name: "pr-checks", Template: "x",
		Supersede: `string(body.check_run.pull_requests[0]?.number ?? "") + "/" + body.check_run.name`})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Supersedes() {
		t.Fatal("Supersedes() = false with a supersede expression")
	}
	env := map[string]any{"body": map[string]any{"check_run": map[string]any{
		"name": "build", "pull_requests": []any{map[string]any{"number": int64(7)}},
	}}}
	if k, err := r.SupersedeKey(env); err != nil || k != "7/build" {
		t.Fatalf("SupersedeKey = %q, %v; want 7/build", k, err)
	}
	plain, err := Compile(Spec{Name: "r", Template: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if k, err := plain.SupersedeKey(env); err != nil || k != "" || plain.Supersedes() {
		t.Fatalf("no supersede: key %q, %v", k, err)
	}
}

func TestTurnFieldErrors(t *testing.T) {
	for _, tt := range []struct {
		spec  Spec
		field string
	}{
		{Spec{Name: "r", Template: "x", Supersede: "evnt"}, "supersede"},
		{Spec{Name: "r", Template: "x", BatchTemplate: "{{ .events"}, "batch_template"},
	} {
		_, err := Compile(tt.spec)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("%+v: error %v, want a FieldError on %s", tt.spec, err, tt.field)
		}
	}
}

func TestRenderTurn(t *testing.T) {
	r, err := Compile(Spec{Name: "pr-checks", Template: "x", BatchTemplate: `{{ len .events }} check runs changed on {{ .conversation }} ({{ .route }}):
{{ range .events }}- {{ .prompt }} [{{ .event }} {{ .delivery }}]
{{ end }}`})
	if err != nil {
		t.Fatal(err)
	}
	if !r.HasBatchTemplate() {
		t.Fatal("HasBatchTemplate() = false")
	}
	now := time.Now()
	got, err := r.RenderTurn("acme/app", []queue.Message{
		{Prompt: "build failed", Event: "check_run", Delivery: "d1", EnqueuedAt: now},
		{Prompt: "lint passed", Event: "check_run", Delivery: "d2", EnqueuedAt: now},
	})
	want := "2 check runs changed on acme/app (pr-checks):\n- build failed [check_run d1]\n- lint passed [check_run d2]\n"
	if err != nil || got != want {
		t.Fatalf("RenderTurn = %q, %v\nwant %q", got, err, want)
	}
}

// A batch_template may print fields the ingest redaction never saw (a
// delivery id, the conversation key): its output is redacted too.
func TestRenderTurnRedacts(t *testing.T) {
	red, err := prompt.NewRedactor(prompt.RedactOptions{Patterns: []string{`sekrit-[0-9]+`}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Compile(Spec{Name: "r", Template: "x", Redactor: red,
		BatchTemplate: `{{ .conversation }}:{{ range .events }} {{ .prompt }}/{{ .delivery }}{{ end }}`})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.RenderTurn("sekrit-1", []queue.Message{{Prompt: "a", Delivery: "sekrit-2"}, {Prompt: "b", Delivery: "d"}})
	if want := "[REDACTED]: a/[REDACTED] b/d"; err != nil || got != want {
		t.Fatalf("RenderTurn = %q, %v; want %q", got, err, want)
	}
}
