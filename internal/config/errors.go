package config

import (
	"fmt"
	"strings"
)

// FieldError is a problem with one field of the config. Field is its path
// ("routes[2].filter", "sources[0].verify.secrets[1]"); "" for the file as a
// whole. Load reports every FieldError it finds, joined with errors.Join, so
// errors.As finds the first one.
type FieldError struct {
	Field string
	Line  int // line in the file, 0 when unknown
	Err   error
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

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
