package config

import (
	"errors"
	"strings"
)

// expandEnv replaces ${VAR} with the variable's value, ${VAR:-default} with
// the value or, when the variable is unset or empty, the default (itself
// expanded, so defaults may nest), and $$ with a literal $. Any other $ is
// kept as written, so expr's $env and template variables ({{ $x }}) pass
// through. A variable that is unset, with no default, is a *MissingVarError.
func expandEnv(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	e := expander{s: s, lookup: lookup}
	out, err := e.text(true, false)
	if err != nil {
		return "", err
	}
	return out, nil
}

// errBadRef does not quote the text: the field may be a secret.
var errBadRef = errors.New(`invalid variable reference: want ${NAME} or ${NAME:-default} (write $$ for a literal $)`)

type expander struct {
	s      string
	i      int
	lookup func(string) (string, bool)
	depth  int
}

// text expands until the end of input or, when inDefault, an unmatched '}'
// (consumed). With eval false it only parses: an unused default may name
// variables that are not set.
func (e *expander) text(eval, inDefault bool) (string, error) {
	var b strings.Builder
	for e.i < len(e.s) {
		c := e.s[e.i]
		switch {
		case c == '}' && inDefault:
			e.i++
			return b.String(), nil
		case c == '$' && e.i+1 < len(e.s) && e.s[e.i+1] == '$':
			b.WriteByte('$')
			e.i += 2
		case c == '$' && e.i+1 < len(e.s) && e.s[e.i+1] == '{':
			e.i += 2
			v, err := e.variable(eval)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
		default:
			b.WriteByte(c)
			e.i++
		}
	}
	if inDefault {
		return "", errors.New(`unterminated "${": missing "}"`)
	}
	return b.String(), nil
}

// variable parses NAME} or NAME:-default} after "${".
func (e *expander) variable(eval bool) (string, error) {
	start := e.i
	for e.i < len(e.s) && isNameByte(e.s[e.i], e.i == start) {
		e.i++
	}
	name := e.s[start:e.i]
	switch {
	case e.i >= len(e.s):
		return "", errors.New(`unterminated "${": missing "}"`)
	case name == "":
		return "", errBadRef
	case e.s[e.i] == '}':
		e.i++
		if !eval {
			return "", nil
		}
		v, ok := e.lookup(name)
		if !ok {
			return "", &MissingVarError{Name: name}
		}
		return v, nil
	case strings.HasPrefix(e.s[e.i:], ":-"):
		e.i += 2
		e.depth++
		if e.depth > 32 {
			return "", errors.New("variable defaults nested too deeply")
		}
		v, ok := "", false
		if eval {
			v, ok = e.lookup(name)
		}
		def, err := e.text(eval && (!ok || v == ""), true)
		e.depth--
		if err != nil {
			return "", err
		}
		if !ok || v == "" {
			return def, nil
		}
		return v, nil
	default:
		return "", errBadRef
	}
}

func isNameByte(c byte, first bool) bool {
	switch {
	case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		return true
	case '0' <= c && c <= '9':
		return !first
	}
	return false
}
