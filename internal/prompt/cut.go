package prompt

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// MinBudget is the smallest budget Cut is meant for: room for the marker,
// closing fences and some text. Config rejects smaller max_prompt_bytes.
const MinBudget = 256

// Cut returns text when it fits in maxBytes. A longer text is cut at a UTF-8
// boundary and ends with the marker "[… N bytes cut]", N being the bytes of
// text left out; the result, marker included, is at most maxBytes. Cut also
// returns N (0 when nothing was cut).
//
// A cut never leaves a fence open: when it lands inside <untrusted>, the
// fence is closed before the marker, within the budget, so the marker (and
// whatever follows the turn) is outside it. A cut in the middle of a marker
// drops the partial marker. A budget too small for the marker gives "".
func Cut(text string, maxBytes int) (string, int) {
	if len(text) <= maxBytes {
		return text, 0
	}
	// N <= len(text): reserving the marker for len(text) leaves room for
	// the real one.
	reserve := len(marker(len(text))) + 1 // and a newline before it
	budget := maxBytes - reserve
	if budget < 0 {
		return "", len(text)
	}
	end := runeStart(text, budget)
	var depth int
	for {
		end = dropPartialMarker(text, end)
		depth = openFences(text[:end])
		need := budget - depth*len(FenceClose)
		if end <= need {
			break
		}
		end = runeStart(text, max(need, 0))
	}
	var b strings.Builder
	b.Grow(maxBytes)
	b.WriteString(text[:end])
	for range depth {
		b.WriteString(FenceClose)
	}
	if b.Len() > 0 && !strings.HasSuffix(b.String(), "\n") {
		b.WriteByte('\n')
	}
	n := len(text) - end
	b.WriteString(marker(n))
	return b.String(), n
}

func marker(n int) string { return "[… " + strconv.Itoa(n) + " bytes cut]" }

// runeStart returns the largest i <= end at which a rune starts in text (a
// few bytes back at most: invalid text is cut where it is).
func runeStart(text string, end int) int {
	if end >= len(text) {
		return len(text)
	}
	for back := 0; end > 0 && back < utf8.UTFMax-1 && !utf8.RuneStart(text[end]); back++ {
		end--
	}
	return end
}

// dropPartialMarker moves end back to before a fence marker that text[:end]
// ends in the middle of ("…</untr").
func dropPartialMarker(text string, end int) int {
	tail := text[max(0, end-len(FenceClose)+1):end]
	i := strings.LastIndexByte(tail, '<')
	if i < 0 {
		return end
	}
	part := tail[i:]
	if strings.HasPrefix(FenceOpen, part) && part != FenceOpen || strings.HasPrefix(FenceClose, part) {
		return end - len(part)
	}
	return end
}

// openFences returns how many fences are open at the end of s: markers are
// counted in order, a closing one without an open fence ignored.
func openFences(s string) int {
	const word = "untrusted>"
	depth := 0
	for {
		i := strings.Index(s, word)
		if i < 0 {
			return depth
		}
		switch {
		case i >= 2 && s[i-2:i] == "</":
			if depth > 0 {
				depth--
			}
		case i >= 1 && s[i-1] == '<':
			depth++
		}
		s = s[i+len(word):]
	}
}
