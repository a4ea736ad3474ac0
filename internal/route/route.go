// Package route decides which events a route takes, in which conversation,
// with what prompt.
//
// A route's filter and conversation are expr programs and its prompt a
// template (package templates), all compiled at load so that a bad route
// fails the config, and an event only runs them.
package route

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/types"
	"github.com/expr-lang/expr/vm"

	"github.com/relayd/relayd/internal/event"
	"github.com/relayd/relayd/internal/prompt"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/templates"
)

// Spec is a route as written in the config.
type Spec struct {
	Name         string
	Source       string
	Filter       string // expr, bool; empty matches every event
	Conversation string // expr giving the conversation key; empty: one conversation
	Template     string // text/template prompt

	// Redactor replaces credentials in every rendered prompt; nil: none.
	Redactor *prompt.Redactor
	// MaxPromptBytes bounds a prompt; a longer one is cut. 0: no bound.
	MaxPromptBytes int

	// Supersede is an expr giving the supersede key; empty: none.
	Supersede string
	// BatchTemplate renders a turn of several events; empty: none.
	BatchTemplate string
	// ReplyTarget says the route replies with a github_comment: ingest
	// keeps each event's target (reply.FindTarget) on its message.
	ReplyTarget bool
}

// Route is a compiled route. It is safe for concurrent use.
type Route struct {
	Name   string
	Source string
	// ReplyTarget: see Spec.ReplyTarget.
	ReplyTarget bool

	filter       *vm.Program // nil: every event
	conversation *vm.Program // nil: key ""
	supersede    *vm.Program // nil: no key
	prompt       *templates.Template
	redactor     *prompt.Redactor
	maxBytes     int
	batch        *templates.Template // nil: the plain format
}

// FieldError is a Spec field that does not compile. Field is "filter",
// "conversation", "supersede", "template" or "batch_template", so callers can prefix their own path
// ("routes[2].").
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + oneLine(e.Err) }
func (e *FieldError) Unwrap() error { return e.Err }

// errNotBool is a filter whose result is not known to be a bool.
var errNotBool = errors.New(`not known to be true or false (body fields are untyped): compare, as in body.pull_request.merged == true`)

// oneLine drops the source snippet expr appends to its messages, keeping
// the position, so errors fit on one log or check line.
func oneLine(err error) string {
	var fe *file.Error
	if errors.As(err, &fe) && fe.Snippet != "" {
		return fmt.Sprintf("%s (%d:%d)", fe.Message, fe.Line, fe.Column+1)
	}
	return err.Error()
}

// envTypes declares the names filters see, typed as event.SampleEnv types
// them, except body: it is parsed JSON for most sources but text for
// others, so it is left untyped and `body contains "deploy"` compiles as
// well as `body.action == "opened"`.
var envTypes = func() types.Map {
	env := event.SampleEnv()
	m := make(types.Map, len(env))
	for k, v := range env {
		m[k] = types.TypeOf(v)
	}
	m["body"] = types.Any
	return m
}()

// Compile checks and compiles a route. Unknown top-level names, syntax
// errors, a filter that is not boolean and a template that does not parse
// are errors; fields inside body are not, since bodies vary by event.
func Compile(s Spec) (*Route, error) {
	r := &Route{Name: s.Name, Source: s.Source, ReplyTarget: s.ReplyTarget, redactor: s.Redactor, maxBytes: s.MaxPromptBytes}
	var err error
	if strings.TrimSpace(s.Filter) != "" {
		if r.filter, err = compileExpr(s.Filter, expr.AsBool()); err != nil {
			return nil, &FieldError{Field: "filter", Err: err}
		}
		// AsBool lets through what may or may not be a bool at run time
		// (body is untyped): body.repository.full_name would compile and
		// then drop every event. Ask for a comparison instead.
		if t := r.filter.Node().Type(); t == nil || t.Kind() != reflect.Bool {
			return nil, &FieldError{Field: "filter", Err: errNotBool}
		}
	}
	if strings.TrimSpace(s.Conversation) != "" {
		if r.conversation, err = compileExpr(s.Conversation); err != nil {
			return nil, &FieldError{Field: "conversation", Err: err}
		}
	}
	if strings.TrimSpace(s.Supersede) != "" {
		if r.supersede, err = compileExpr(s.Supersede); err != nil {
			return nil, &FieldError{Field: "supersede", Err: err}
		}
	}
	if r.prompt, err = templates.Compile(s.Name, s.Template); err != nil {
		return nil, &FieldError{Field: "template", Err: err}
	}
	if strings.TrimSpace(s.BatchTemplate) != "" {
		if r.batch, err = templates.Compile(s.Name+".batch_template", s.BatchTemplate); err != nil {
			return nil, &FieldError{Field: "batch_template", Err: err}
		}
	}
	return r, nil
}

func compileExpr(src string, opts ...expr.Option) (p *vm.Program, err error) {
	// expr is not expected to panic on any input, but a config must never
	// bring the process down: turn one into a load error.
	defer func() {
		if v := recover(); v != nil {
			p, err = nil, fmt.Errorf("invalid expression: %v", v)
		}
	}()
	opts = append([]expr.Option{expr.Env(envTypes), expr.Patch(nilSafe{})}, opts...)
	return expr.Compile(src, opts...)
}

// nilSafe makes every member access optional (a.b behaves as a?.b), so a
// field missing from one payload is nil rather than a run-time error:
// body.workflow_run.conclusion == "failure" is simply false on a push.
// Accesses on structs (received_at) stay strict, so typos there still fail
// at load, and method calls are left alone.
type nilSafe struct{}

func (nilSafe) Visit(n *ast.Node) {
	m, ok := (*n).(*ast.MemberNode)
	if !ok || m.Method {
		return
	}
	if t := m.Node.Type(); t != nil && t.Kind() == reflect.Struct {
		return
	}
	m.Optional = true
	// One chain per outermost access: an inner chain we made is dissolved,
	// its optional jumps then land at the end of this one.
	if c, ok := m.Node.(*ast.ChainNode); ok {
		if inner, ok := c.Node.(*ast.MemberNode); ok && inner.Optional {
			m.Node = inner
		}
	}
	ast.Patch(n, &ast.ChainNode{Node: m})
}

// vms are reused: a VM keeps its stack between runs.
var vms = sync.Pool{New: func() any { return new(vm.VM) }}

func run(p *vm.Program, env map[string]any) (any, error) {
	v := vms.Get().(*vm.VM)
	defer vms.Put(v)
	return v.Run(p, env)
}

// Match reports whether the route takes the event. An error (say, comparing
// a missing field with a number) comes with false: log it and treat the
// event as filtered out.
func (r *Route) Match(env map[string]any) (bool, error) {
	if r.filter == nil {
		return true, nil
	}
	out, err := run(r.filter, env)
	if err != nil {
		return false, &FieldError{Field: "filter", Err: err}
	}
	ok, _ := out.(bool) // AsBool: a bool, or nil from an all-nil result
	return ok, nil
}

// ConversationKey returns the event's conversation key: the conversation
// expression's value as text (numbers exactly, nil as ""), or "" when the
// route has none.
func (r *Route) ConversationKey(env map[string]any) (string, error) {
	if r.conversation == nil {
		return "", nil
	}
	out, err := run(r.conversation, env)
	if err != nil {
		return "", &FieldError{Field: "conversation", Err: err}
	}
	return keyString(out), nil
}

// Supersedes reports whether the route gives its messages a supersede key.
func (r *Route) Supersedes() bool { return r.supersede != nil }

// SupersedeKey returns the event's supersede key, like ConversationKey:
// "" when the route has none (an empty key supersedes nothing).
func (r *Route) SupersedeKey(env map[string]any) (string, error) {
	if r.supersede == nil {
		return "", nil
	}
	out, err := run(r.supersede, env)
	if err != nil {
		return "", &FieldError{Field: "supersede", Err: err}
	}
	return keyString(out), nil
}

// HasBatchTemplate reports whether the route renders its turns of several
// events with a batch_template.
func (r *Route) HasBatchTemplate() bool { return r.batch != nil }

// RenderTurn renders a turn of several events with the batch_template. It
// sees .events (each with .prompt and the event's names source, event,
// delivery, received_at, and .id), .conversation and .route. The prompts
// were redacted at ingest, but the template may print other fields (a
// sender's delivery id, the conversation key), so its output is redacted
// too.
func (r *Route) RenderTurn(conversation string, msgs []queue.Message) (string, error) {
	if r.batch == nil {
		return "", errors.New("route has no batch_template")
	}
	events := make([]any, len(msgs))
	for i, m := range msgs {
		events[i] = map[string]any{
			"prompt": m.Prompt, "source": m.Source, "event": m.Event,
			"delivery": m.Delivery, "received_at": m.EnqueuedAt, "id": m.ID,
		}
	}
	text, err := r.batch.Render(map[string]any{"events": events, "conversation": conversation, "route": r.Name})
	if err != nil {
		return "", err
	}
	text, _ = r.redactor.Redact(text)
	return text, nil
}

// Render returns the prompt for the event. Its errors already read
// "template: <route>:<line>:<col>: executing ...".
func (r *Route) Render(env map[string]any) (string, error) {
	return r.prompt.Render(env)
}

// Prompt is an event's prompt as it is stored and sent.
type Prompt struct {
	Text       string
	Redactions int // credentials replaced by [REDACTED]
	CutBytes   int // bytes cut to keep within the budget; 0 when it fit
}

// Prompt renders the event's prompt and makes it safe to store and send:
// credentials are redacted, then the text is cut to the budget. Redaction
// comes first so that a cut never leaves half a credential that no longer
// matches a pattern.
func (r *Route) Prompt(env map[string]any) (Prompt, error) {
	text, err := r.prompt.Render(env)
	if err != nil {
		return Prompt{}, err
	}
	p := Prompt{Text: text}
	p.Text, p.Redactions = r.redactor.Redact(p.Text)
	if r.maxBytes > 0 {
		p.Text, p.CutBytes = prompt.Cut(p.Text, r.maxBytes)
	}
	return p, nil
}

// Key is a compiled expression giving a text key from an event, such as a
// source's delivery id. It is safe for concurrent use.
type Key struct{ p *vm.Program }

// CompileKey compiles a key expression, with the names and rules of a
// route's conversation expression.
func CompileKey(src string) (*Key, error) {
	p, err := compileExpr(src)
	if err != nil {
		return nil, errors.New(oneLine(err))
	}
	return &Key{p: p}, nil
}

// Eval returns the expression's value for env as text (numbers exactly, nil
// as "").
func (k *Key) Eval(env map[string]any) (string, error) {
	out, err := run(k.p, env)
	if err != nil {
		return "", err
	}
	return keyString(out), nil
}

func keyString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return strconv.FormatFloat(x, 'g', -1, 64)
		}
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprint(v)
}
