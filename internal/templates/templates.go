// Package templates renders event data into prompts.
//
// Templates are Go text/template with a small set of helpers (see builtinFuncs).
// Event data is dynamic, so a template must never fail or print "<no value>"
// because a payload lacks a key: a missing key, or any field reached through
// a missing or null value ({{ .body.missing.deeper }}), renders empty and is
// false in if, with and range. Compile rewrites the parse tree once at load
// to get this; Render only executes.
package templates

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"unicode/utf8"
)

// Template is a compiled prompt template. It is safe for concurrent use.
type Template struct {
	name  string
	tmpl  *template.Template
	paths map[string]string // see rewriter.paths
}

// Error is a template that does not parse. Line and Col are 1-based; zero
// when unknown.
type Error struct {
	Name string // the template's name
	Line int
	Col  int
	Msg  string // text/template's message without its "template: name:line:" prefix
}

func (e *Error) Error() string {
	switch {
	case e.Line > 0 && e.Col > 0:
		return fmt.Sprintf("line %d, col %d: %s", e.Line, e.Col, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	default:
		return e.Msg
	}
}

// Compile parses text as a template named name. A syntax error, an unknown
// function or an unclosed block is an *Error giving its line and column.
func Compile(name, text string) (*Template, error) {
	t, err := parseText(name, text)
	if err != nil {
		return nil, parseError(name, text, err)
	}
	rw := newRewriter()
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			rw.list(tt.Root)
		}
	}
	t.Funcs(rw.funcs)
	return &Template{name: name, tmpl: t, paths: rw.paths}, nil
}

func parseText(name, text string) (*template.Template, error) {
	return template.New(name).
		Option("missingkey=zero").
		Funcs(internalFuncs).
		Funcs(builtinFuncs).
		Parse(text)
}

// Name returns the name the template was compiled with.
func (t *Template) Name() string { return t.name }

// maxPooled bounds the buffers kept for reuse, so one huge prompt does not
// pin its memory for the life of the process.
const maxPooled = 64 << 10

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Render executes the template with data as dot and returns the text.
func (t *Template) Render(data map[string]any) (string, error) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= maxPooled {
			bufPool.Put(buf)
		}
	}()
	if err := t.tmpl.Execute(buf, data); err != nil {
		return "", t.execError(err)
	}
	return buf.String(), nil
}

// renderError is an execution error whose message shows the template as
// written rather than as rewritten by Compile.
type renderError struct {
	msg string
	err error
}

func (e *renderError) Error() string { return e.msg }
func (e *renderError) Unwrap() error { return e.err }

// generated matches a call of a function made by the rewrite: its name
// and its receiver (. or a variable, possibly already restored to a path).
var generated = regexp.MustCompile(`\(?` + genPrefix + `([vlh]\d+) ([.$][\p{L}\d_.]*)\)?`)

// execError shows the template as written rather than as rewritten.
func (t *Template) execError(err error) error {
	msg := err.Error()
	if !strings.Contains(msg, genPrefix) {
		return err
	}
	for range 8 { // nested chains unwind one level per pass
		next := generated.ReplaceAllStringFunc(msg, func(m string) string {
			sub := generated.FindStringSubmatch(m)
			recv, path := sub[2], t.paths[genPrefix+sub[1]]
			if path == "." {
				path = ""
			}
			return strings.TrimSuffix(recv, ".") + path
		})
		if next == msg {
			break
		}
		msg = next
	}
	msg = strings.ReplaceAll(msg, " | "+printFunc, "")
	return &renderError{msg: msg, err: err}
}

// parseError turns text/template's "template: name:line: msg" into an *Error
// and finds the column of the action at fault.
func parseError(name, text string, err error) error {
	msg := err.Error()
	prefix := "template: " + name + ":"
	rest, ok := strings.CutPrefix(msg, prefix)
	if !ok {
		return &Error{Name: name, Msg: strings.TrimPrefix(msg, "template: ")}
	}
	num, after, ok := strings.Cut(rest, ": ")
	line, convErr := strconv.Atoi(num)
	if !ok || convErr != nil {
		return &Error{Name: name, Msg: rest}
	}
	return &Error{Name: name, Line: line, Col: column(name, text, line, msg), Msg: after}
}

// column finds the action on line that causes the parse error msg.
// text/template reports only lines, so each action starting on that line is
// tried in turn: the first one whose prefix of text fails with the same
// message is the culprit. It runs only on load errors.
func column(name, text string, line int, msg string) int {
	start := 0
	for l := 1; l < line; l++ {
		i := strings.IndexByte(text[start:], '\n')
		if i < 0 {
			return 0
		}
		start += i + 1
	}
	end := len(text)
	if i := strings.IndexByte(text[start:], '\n'); i >= 0 {
		end = start + i
	}
	for at := start; at < end; {
		i := strings.Index(text[at:end], "{{")
		if i < 0 {
			break
		}
		open := at + i
		cut := len(text)
		if j := strings.Index(text[open+2:], "}}"); j >= 0 {
			cut = open + 2 + j + 2
		}
		if _, err := parseText(name, text[:cut]); err != nil && err.Error() == msg {
			return utf8.RuneCountInString(text[start:open]) + 1
		}
		at = open + 2
	}
	return 0
}

// errNotNumber is returned by helpers given a count that is not a number.
var errNotNumber = errors.New("not a number")
