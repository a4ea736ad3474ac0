package config

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// FieldError is a problem with one field of the config. Field is its path
// ("routes[2].filter", "sources[0].verify.secrets[1]"); "" for the file as a
// whole. Load reports every FieldError it finds, joined with errors.Join, so
// errors.As finds the first one. It prints the path with the name of each
// list item on it, then the line:
//
//	routes[2] "ci-failures".filter (line 31): unknown name evnt (1:1)
type FieldError struct {
	Field string
	Line  int // line in the file, 0 when unknown
	Err   error

	names map[string]string // list item path ("routes[2]") → its name
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Field != "" {
		b.WriteString(namedPath(e.Field, e.names))
	}
	switch {
	case e.Line > 0 && b.Len() > 0:
		fmt.Fprintf(&b, " (line %d)", e.Line)
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d", e.Line)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

// namedPath writes each named list item of path with its name:
// "routes[2].filter" → `routes[2] "ci-failures".filter`.
func namedPath(path string, names map[string]string) string {
	if len(names) == 0 {
		return path
	}
	var b strings.Builder
	for i := 0; i < len(path); i++ {
		b.WriteByte(path[i])
		if path[i] == ']' {
			if n, ok := names[path[:i+1]]; ok {
				fmt.Fprintf(&b, " %q", n)
			}
		}
	}
	return b.String()
}

// MissingVarError is a ${VAR} reference, without a default, to a variable
// that is not set.
type MissingVarError struct{ Name string }

func (e *MissingVarError) Error() string {
	return "environment variable " + e.Name + " is not set"
}

// join builds field paths: join("routes[1]", "filter") = "routes[1].filter".
func join(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func index(parent string, i int) string { return fmt.Sprintf("%s[%d]", parent, i) }

// parents returns path and each of its ancestors, nearest first:
// "a[1].b" → "a[1].b", "a[1]", "a".
func parents(path string) []string {
	out := []string{path}
	for i := len(path) - 1; i > 0; i-- {
		if path[i] == '.' || path[i] == '[' {
			out = append(out, path[:i])
		}
	}
	return out
}

func lineOf(lines map[string]int, field string) int {
	for _, p := range parents(field) {
		if l, ok := lines[p]; ok {
			return l
		}
	}
	return 0
}

// hiddenText stands in an error for a value it must not show.
const hiddenText = "<hidden>"

// meta is what loading learnt about the file beyond the values: where each
// field was written, the names of list items, and which fields hold values
// no error may show (secrets, and whatever came from the environment).
type meta struct {
	lines map[string]int
	names map[string]string
	// hidden maps a field path to the values its errors must not show: a
	// secret field's value, the variables expanded into a field. A path
	// present with no values still has its error arguments hidden.
	hidden map[string][]string
	env    map[string]bool // paths whose value came from the environment
}

func newMeta() *meta {
	return &meta{lines: map[string]int{}, names: map[string]string{}, hidden: map[string][]string{}, env: map[string]bool{}}
}

// fromEnv reports whether field, or a field it is part of, came from the
// environment.
func (m *meta) fromEnv(field string) bool {
	for _, p := range parents(field) {
		if m.env[p] {
			return true
		}
	}
	return false
}

// hide records values that errors about path must not show.
func (m *meta) hide(path string, values ...string) {
	m.hidden[path] = append(m.hidden[path], values...)
}

// related reports whether a and b are the same path or one contains the other.
func related(a, b string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	return b == a || strings.HasPrefix(b, a) && (b[len(a)] == '.' || b[len(a)] == '[')
}

// sensitive reports whether errors about field could show a hidden value:
// the field, one of its parents or one of its children is hidden.
func (m *meta) sensitive(field string) bool {
	for p := range m.hidden {
		if related(p, field) {
			return true
		}
	}
	return false
}

// fieldError builds the error for field, with every hidden value of the
// field, its parents and its children taken out of the message. A message
// that had to be changed loses its chain: the original text must not be
// reachable by unwrapping.
func (m *meta) fieldError(field string, line int, err error) *FieldError {
	msg := err.Error()
	scrubbed := msg
	for p, values := range m.hidden {
		if !related(p, field) {
			continue
		}
		for _, v := range values {
			scrubbed = scrub(scrubbed, v)
		}
	}
	if scrubbed != msg {
		err = errors.New(scrubbed)
	}
	return &FieldError{Field: field, Line: line, Err: err, names: m.names}
}

// scrub takes v out of msg wherever it stands on its own: not inside a
// longer word, so that a short value does not mangle the message around it.
func scrub(msg, v string) string {
	if v == "" {
		return msg
	}
	var b strings.Builder
	from := 0 // msg[:from] is written
	for at := 0; ; {
		i := strings.Index(msg[at:], v)
		if i < 0 {
			b.WriteString(msg[from:])
			return b.String()
		}
		i += at
		end := i + len(v)
		if wordByte(msg, i-1) && wordByte(msg, i) || wordByte(msg, end-1) && wordByte(msg, end) {
			at = i + 1
			continue
		}
		b.WriteString(msg[from:i])
		b.WriteString(hiddenText)
		from, at = end, end
	}
}

// wordByte reports whether s[i] exists and is a letter or digit.
func wordByte(s string, i int) bool {
	if i < 0 || i >= len(s) {
		return false
	}
	c := s[i]
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// fieldPathRE matches the field path at the start of an error from code
// that compiles a loaded config ("routes[2].filter: …").
var fieldPathRE = regexp.MustCompile(`^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*): `)

// fieldSegRE matches one more field name at the start of a message.
var fieldSegRE = regexp.MustCompile(`^([a-z_]+(?:\[\d+\])?): `)

// Describe turns errors about fields of c, found after loading (compiling
// filters, templates and verifiers), into *FieldErrors like Load's own: each
// error, or each of an errors.Join, that starts with a field path
// ("routes[2].filter: …") gets the item names and the line of what the user
// wrote, and loses any secret or value from the environment:
//
//	routes[2] "ci-failures".filter (line 31): unknown name evnt (1:1)
//
// Errors that name no field, and a nil error, are returned as they are.
func (c *Config) Describe(err error) error {
	if err == nil || c == nil {
		return err
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs := j.Unwrap()
		out := make([]error, len(errs))
		for i, e := range errs {
			out[i] = c.Describe(e)
		}
		return errors.Join(out...)
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return err // already described
	}
	msg := err.Error()
	m := fieldPathRE.FindStringSubmatch(msg)
	if m == nil {
		return err
	}
	field, rest := m[1], msg[len(m[0]):]
	md := c.meta()
	// The compiler's own message may go on naming a field inside
	// ("sources[0].verify: header: …"): take that in too when the file
	// wrote it, so the line is that field's.
	for {
		s := fieldSegRE.FindStringSubmatch(rest)
		if s == nil {
			break
		}
		if _, ok := md.lines[field+"."+s[1]]; !ok {
			break
		}
		field, rest = field+"."+s[1], rest[len(s[0]):]
	}
	var inner error = &strippedError{msg: rest, err: err}
	if md.fromEnv(field) {
		// A compiler's message quotes pieces of the value (names, tokens)
		// that scrubbing the whole value would not catch.
		inner = errFromEnv
	}
	return md.fieldError(field, lineOf(md.lines, field), inner)
}

// errFromEnv stands for a message about a value from the environment.
var errFromEnv = errors.New("invalid (the message is not shown: the value comes from the environment; try it written in place)")

// strippedError is an error without the field path its text started with.
type strippedError struct {
	msg string
	err error
}

func (e *strippedError) Error() string { return e.msg }
func (e *strippedError) Unwrap() error { return e.err }
