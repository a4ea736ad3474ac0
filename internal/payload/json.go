package payload

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// parseJSON decodes one JSON value into the types filters and templates
// read: map[string]any, []any, string, bool, nil, and numbers as int64 when
// they are integers that fit (ids print exactly in prompts and compare as
// numbers in filters), float64 otherwise.
//
// It is a single pass over the bytes that builds the value directly, with
// the nesting limit checked on the way down: about three times faster than
// encoding/json with UseNumber followed by a walk converting the numbers,
// and ingest decodes every body. Its results match encoding/json's,
// including U+FFFD for invalid UTF-8 and for lone surrogate escapes; a
// fuzz test holds it to that.
func parseJSON(data []byte) (any, error) { return parseJSONText(string(data)) }

// parseJSONText is parseJSON for text already held as a string. Strings
// without escapes in the result share text's memory rather than being
// copied one by one: the body is copied once per request, not once per
// field.
func parseJSONText(text string) (any, error) {
	p := parsers.Get().(*jsonParser)
	defer p.release()
	p.data, p.pos, p.depth = text, 0, 0
	p.skipSpace()
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return nil, errors.New("unexpected data after the JSON value")
	}
	return v, nil
}

// parsers keep their stacks between requests.
var parsers = sync.Pool{New: func() any { return new(jsonParser) }}

// maxJSONDepth bounds nesting so a hostile body cannot make the decoder
// (or later walks over the value) recurse without end.
const maxJSONDepth = 64

var errTooDeep = fmt.Errorf("JSON nested deeper than %d levels", maxJSONDepth)

var errJSONEnd = errors.New("unexpected end of JSON input")

type jsonParser struct {
	data  string
	pos   int
	depth int
	// Members of the objects and arrays being read, innermost last: each
	// map and slice is made once at its final size.
	keys []string
	vals []any
}

func (p *jsonParser) release() {
	// Members are cleared as their object or array closes; what is left
	// after an error must not pin this body until the next parse.
	clear(p.keys)
	clear(p.vals)
	p.keys, p.vals, p.data = p.keys[:0], p.vals[:0], ""
	if cap(p.vals) <= 4096 { // one hostile body must not pin a huge stack
		parsers.Put(p)
	}
}

func (p *jsonParser) syntaxError(what string) error {
	if p.pos >= len(p.data) {
		return errJSONEnd
	}
	return fmt.Errorf("invalid character %q %s at offset %d", p.data[p.pos], what, p.pos)
}

func (p *jsonParser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *jsonParser) value() (any, error) {
	if p.pos >= len(p.data) {
		return nil, errJSONEnd
	}
	switch c := p.data[p.pos]; c {
	case '{':
		return p.object()
	case '[':
		return p.array()
	case '"':
		return p.str()
	case 't':
		return true, p.literal("true")
	case 'f':
		return false, p.literal("false")
	case 'n':
		return nil, p.literal("null")
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return p.number()
		}
		return nil, p.syntaxError("looking for beginning of value")
	}
}

func (p *jsonParser) literal(word string) error {
	end := p.pos + len(word)
	if end > len(p.data) || p.data[p.pos:end] != word {
		// Point at the first byte that differs.
		for i := 0; i < len(word) && p.pos < len(p.data) && p.data[p.pos] == word[i]; i++ {
			p.pos++
		}
		return p.syntaxError("in literal " + word)
	}
	p.pos = end
	return nil
}

func (p *jsonParser) enter() error {
	p.depth++
	if p.depth > maxJSONDepth {
		return errTooDeep
	}
	return nil
}

// open steps into the object or array whose opening byte is at p.pos and
// reports whether it closes (with end) at once.
func (p *jsonParser) open(end byte) (empty bool, err error) {
	if err := p.enter(); err != nil {
		return false, err
	}
	p.pos++
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == end {
		p.pos++
		p.depth--
		return true, nil
	}
	return false, nil
}

// next reads what follows a member of an object or array: ',' (more is
// true) or end, which closes it; anything else is a syntax error found
// after what.
func (p *jsonParser) next(end byte, what string) (more bool, err error) {
	p.skipSpace()
	if p.pos >= len(p.data) {
		return false, errJSONEnd
	}
	switch p.data[p.pos] {
	case ',':
		p.pos++
		p.skipSpace()
		return true, nil
	case end:
		p.pos++
		p.depth--
		return false, nil
	default:
		return false, p.syntaxError(what)
	}
}

func (p *jsonParser) object() (any, error) {
	kbase, vbase := len(p.keys), len(p.vals)
	empty, err := p.open('}')
	if err != nil {
		return nil, err
	}
	if empty {
		return map[string]any{}, nil
	}
	for {
		if p.pos >= len(p.data) {
			return nil, errJSONEnd
		}
		if p.data[p.pos] != '"' {
			return nil, p.syntaxError("looking for beginning of object key string")
		}
		key, err := p.str()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, errJSONEnd
		}
		if p.data[p.pos] != ':' {
			return nil, p.syntaxError("after object key")
		}
		p.pos++
		p.skipSpace()
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		p.keys = append(p.keys, key)
		p.vals = append(p.vals, v)
		if more, err := p.next('}', "after object key:value pair"); err != nil {
			return nil, err
		} else if !more {
			keys, vals := p.keys[kbase:], p.vals[vbase:]
			m := make(map[string]any, len(keys))
			for i, k := range keys {
				m[k] = vals[i]
			}
			clear(keys)
			clear(vals)
			p.keys, p.vals = p.keys[:kbase], p.vals[:vbase]
			return m, nil
		}
	}
}

func (p *jsonParser) array() (any, error) {
	base := len(p.vals)
	empty, err := p.open(']')
	if err != nil {
		return nil, err
	}
	if empty {
		return []any{}, nil
	}
	for {
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		p.vals = append(p.vals, v)
		if more, err := p.next(']', "after array element"); err != nil {
			return nil, err
		} else if !more {
			vals := p.vals[base:]
			a := make([]any, len(vals))
			copy(a, vals)
			clear(vals)
			p.vals = p.vals[:base]
			return a, nil
		}
	}
}

// str reads a string starting at its opening quote. The common case, no
// escapes and valid UTF-8, is one scan and one copy.
func (p *jsonParser) str() (string, error) {
	start := p.pos + 1
	ascii := true
	for i := start; i < len(p.data); i++ {
		c := p.data[i]
		if c == '"' {
			if s := p.data[start:i]; ascii || utf8.ValidString(s) {
				p.pos = i + 1
				return s, nil
			}
			break // invalid UTF-8 is replaced, as encoding/json does
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			p.pos = i
			return "", p.syntaxError("in string literal")
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	return p.slowStr(start)
}

// slowStr decodes a string with escapes or invalid UTF-8.
func (p *jsonParser) slowStr(start int) (string, error) {
	out := make([]byte, 0, 64)
	i := start
	for i < len(p.data) {
		c := p.data[i]
		switch {
		case c == '"':
			p.pos = i + 1
			return string(out), nil
		case c == '\\':
			if i+1 >= len(p.data) {
				p.pos = len(p.data)
				return "", errJSONEnd
			}
			switch e := p.data[i+1]; e {
			case '"', '\\', '/':
				out = append(out, e)
				i += 2
			case 'b':
				out, i = append(out, '\b'), i+2
			case 'f':
				out, i = append(out, '\f'), i+2
			case 'n':
				out, i = append(out, '\n'), i+2
			case 'r':
				out, i = append(out, '\r'), i+2
			case 't':
				out, i = append(out, '\t'), i+2
			case 'u':
				r, ok := hex4(p.data, i+2)
				if !ok {
					p.pos = min(i+2, len(p.data))
					for k := 0; k < 4 && p.pos < len(p.data) && isHex(p.data[p.pos]); k++ {
						p.pos++
					}
					return "", p.syntaxError("in \\u hexadecimal character escape")
				}
				i += 6
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if i+1 < len(p.data) && p.data[i] == '\\' && p.data[i+1] == 'u' {
						if v, ok := hex4(p.data, i+2); ok {
							r2 = v
						}
					}
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						out = utf8.AppendRune(out, dec)
						i += 6
						break
					}
					r = utf8.RuneError
				}
				out = utf8.AppendRune(out, r)
			default:
				p.pos = i + 1
				return "", p.syntaxError("in string escape code")
			}
		case c < 0x20:
			p.pos = i
			return "", p.syntaxError("in string literal")
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(p.data[i:])
			if r == utf8.RuneError && size == 1 {
				out = utf8.AppendRune(out, utf8.RuneError)
			} else {
				out = append(out, p.data[i:i+size]...)
			}
			i += size
		}
	}
	p.pos = len(p.data)
	return "", errJSONEnd
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func hex4(b string, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for k := i; k < i+4; k++ {
		c := b[k]
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// number reads a JSON number: int64 when it has no fraction or exponent
// and fits, float64 otherwise (±Inf past float64's range, as
// json.Number.Float64 gives).
func (p *jsonParser) number() (any, error) {
	start := p.pos
	i := p.pos
	if p.data[i] == '-' {
		i++
	}
	digits := i
	switch {
	case i < len(p.data) && p.data[i] == '0':
		i++
	case i < len(p.data) && p.data[i] >= '1' && p.data[i] <= '9':
		for i < len(p.data) && p.data[i] >= '0' && p.data[i] <= '9' {
			i++
		}
	default:
		p.pos = i
		return nil, p.syntaxError("in numeric literal")
	}
	intEnd := i
	integer := true
	if i < len(p.data) && p.data[i] == '.' {
		integer = false
		i++
		if i >= len(p.data) || p.data[i] < '0' || p.data[i] > '9' {
			p.pos = i
			return nil, p.syntaxError("after decimal point in numeric literal")
		}
		for i < len(p.data) && p.data[i] >= '0' && p.data[i] <= '9' {
			i++
		}
	}
	if i < len(p.data) && (p.data[i] == 'e' || p.data[i] == 'E') {
		integer = false
		i++
		if i < len(p.data) && (p.data[i] == '+' || p.data[i] == '-') {
			i++
		}
		if i >= len(p.data) || p.data[i] < '0' || p.data[i] > '9' {
			p.pos = i
			return nil, p.syntaxError("in exponent of numeric literal")
		}
		for i < len(p.data) && p.data[i] >= '0' && p.data[i] <= '9' {
			i++
		}
	}
	p.pos = i
	lit := p.data[start:i]
	if integer && intEnd-digits <= 18 {
		// Up to 18 digits always fits in int64: no overflow check needed.
		var n int64
		for _, c := range p.data[digits:intEnd] {
			n = n*10 + int64(c-'0')
		}
		if digits > start {
			n = -n
		}
		return n, nil
	}
	if integer {
		if n, err := strconv.ParseInt(lit, 10, 64); err == nil {
			return n, nil
		}
	}
	f, _ := strconv.ParseFloat(lit, 64)
	return f, nil
}
