package fake

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// parseChatFast reads the one shape clients send most, a single user
// message with a single text part and no whitespace between tokens (what
// encoding/json writes), without reflection. Anything else, and anything
// the full parser would reject, is not ok: parseChat then decides.
func parseChatFast(body []byte) (p parsedChat, ok bool) {
	s := string(body) // one copy, which p's strings share
	const (
		message = `"messages":[{"role":"user","parts":[{"type":"text","text":`
		end     = `}]}]}`
	)
	rest, ok := strings.CutPrefix(s, "{")
	if !ok {
		return parsedChat{}, false
	}
	if r, found := strings.CutPrefix(rest, `"id":`); found {
		if p.id, rest, ok = readString(r); !ok {
			return parsedChat{}, false
		}
		if rest, ok = strings.CutPrefix(rest, ","); !ok {
			return parsedChat{}, false
		}
	}
	if rest, ok = strings.CutPrefix(rest, message); !ok {
		return parsedChat{}, false
	}
	if p.text, rest, ok = readString(rest); !ok || rest != end || strings.TrimSpace(p.text) == "" {
		return parsedChat{}, false
	}
	return p, true
}

// readString reads a JSON string at the start of s: plain characters and
// the simple escapes. A surrogate escape, invalid UTF-8 or a control
// character is not ok (the full parser has rules for those).
func readString(s string) (str, rest string, ok bool) {
	if len(s) == 0 || s[0] != '"' {
		return "", "", false
	}
	var b []byte // nil while the string has no escapes
	start := 1
	for i := 1; i < len(s); {
		c := s[i]
		switch {
		case c == '"':
			if b == nil {
				return s[1:i], s[i+1:], true
			}
			return string(append(b, s[start:i]...)), s[i+1:], true
		case c < 0x20:
			return "", "", false
		case c == '\\':
			if i+1 >= len(s) {
				return "", "", false
			}
			b = append(b, s[start:i]...)
			switch e := s[i+1]; e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				if i+6 > len(s) {
					return "", "", false
				}
				r, err := strconv.ParseUint(s[i+2:i+6], 16, 16)
				if err != nil || (r >= 0xD800 && r <= 0xDFFF) {
					return "", "", false
				}
				b = utf8.AppendRune(b, rune(r))
				i += 4
			default:
				return "", "", false
			}
			i += 2
			start = i
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				return "", "", false
			}
			i += size
		}
	}
	return "", "", false
}
