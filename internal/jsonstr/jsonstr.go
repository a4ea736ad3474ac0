// Package jsonstr appends strings as JSON strings, byte for byte as
// encoding/json or log/slog's JSON handler writes them.
package jsonstr

import "unicode/utf8"

const hexDigits = "0123456789abcdef"

// AppendMarshal appends s quoted as json.Marshal quotes it: <, > and &
// escaped, \b and \f short, invalid UTF-8 as U+FFFD, U+2028 and U+2029
// escaped.
func AppendMarshal(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendEscaped(dst, s, true)
	return append(dst, '"')
}

// AppendSlog appends s quoted as slog's JSON handler quotes it: as
// json.Marshal without HTML escaping, with \b and \f as \u0008 and \u000c.
func AppendSlog(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendEscaped(dst, s, false)
	return append(dst, '"')
}

func appendEscaped(dst []byte, s string, marshal bool) []byte {
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && (!marshal || (b != '<' && b != '>' && b != '&')) {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch {
			case b == '\\' || b == '"':
				dst = append(dst, '\\', b)
			case b == '\n':
				dst = append(dst, '\\', 'n')
			case b == '\r':
				dst = append(dst, '\\', 'r')
			case b == '\t':
				dst = append(dst, '\\', 't')
			case b == '\b' && marshal:
				dst = append(dst, '\\', 'b')
			case b == '\f' && marshal:
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(dst, s[start:]...)
}
