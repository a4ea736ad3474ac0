package templates

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/relayd/relayd/internal/prompt"
)

// untrusted fences text written by an outside sender: <untrusted>, the
// text, </untrusted>. Strings go in as they are, numbers and booleans as
// text, objects and lists as compact JSON, nil as nothing.
//
// Inside, every '<' that starts something an agent could read as a fence
// marker is written as "&lt;", so the fence cannot be closed (or a new one
// opened) from inside: any letter case, and whitespace around the slash
// ("< / UNTRUSTED"). Markers are neutralised, not removed, so the agent
// still sees what the sender wrote.
func untrusted(v any) (string, error) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case map[string]any, []any:
		var err error
		if s, err = toJSON(x); err != nil {
			return "", err
		}
	default:
		if rv, ok := indirect(reflect.ValueOf(v)); !ok && rv.IsValid() {
			break // a typed nil pointer prints as nothing, as elsewhere
		}
		if !isObject(v) {
			s = toString(v)
			break
		}
		var err error
		if s, err = toJSON(v); err != nil {
			return "", err
		}
	}
	var b strings.Builder
	b.Grow(len(prompt.FenceOpen) + len(s) + len(prompt.FenceClose) + 8)
	b.WriteString(prompt.FenceOpen)
	writeNeutralised(&b, s)
	b.WriteString(prompt.FenceClose)
	return b.String(), nil
}

// writeNeutralised writes s with each '<' that starts a fence marker
// replaced by "&lt;".
func writeNeutralised(b *strings.Builder, s string) {
	for {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			b.WriteString(s)
			return
		}
		b.WriteString(s[:i])
		if startsMarker(s[i+1:]) {
			b.WriteString("&lt;")
		} else {
			b.WriteByte('<')
		}
		s = s[i+1:]
	}
}

// startsMarker reports whether s, the text after a '<', reads as the rest
// of a fence marker: optional whitespace, an optional '/', optional
// whitespace, then "untrusted" in any case.
func startsMarker(s string) bool {
	s = strings.TrimLeft(s, " \t\r\n\f\v")
	if rest, ok := strings.CutPrefix(s, "/"); ok {
		s = strings.TrimLeft(rest, " \t\r\n\f\v")
	}
	const word = "untrusted"
	if len(s) < len(word) {
		return false
	}
	for i := range len(word) {
		if c := s[i]; c|0x20 != word[i] { // ASCII letters only: 'T'|0x20 == 't'
			return false
		}
	}
	return true
}

// isObject reports whether v is written as JSON: a map, a list or a struct
// that does not print itself.
func isObject(v any) bool {
	switch v.(type) {
	case nil, []byte, fmt.Stringer, error:
		return false
	}
	rv, ok := indirect(reflect.ValueOf(v))
	if !ok {
		return false
	}
	switch rv.Kind() {
	case reflect.Map, reflect.Slice, reflect.Array, reflect.Struct:
		return true
	}
	return false
}
