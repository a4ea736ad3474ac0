package prompt

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Redacted is what replaces each credential.
const Redacted = "[REDACTED]"

// RedactOptions configure a Redactor: redact: {builtin, patterns} from the
// config, the route's merged over the top level.
type RedactOptions struct {
	Builtin  bool     // the built-in kinds (see Builtins)
	Patterns []string // more, as Go regexps (RE2 syntax)
}

// ErrEmptyMatch is a pattern that matches the empty string: it would put
// [REDACTED] between every two characters.
var ErrEmptyMatch = errors.New("matches the empty string")

// Redactor replaces credentials in a turn's text by [REDACTED]. It is built
// once at load and safe for concurrent use.
//
// Each built-in kind starts with a literal (ghp_, AKIA, -----BEGIN …). One
// scan finds which literals occur; a kind's regexp runs only where its
// literal occurs, only from there and over a bounded window. A turn without
// any costs a few byte searches, not a regexp pass per kind. User patterns
// run over the whole text, when their literal prefix (if any) occurs.
type Redactor struct {
	rules   []*rule
	builtin bool // rules starts with builtinRules
}

// A rule is one kind of credential.
type rule struct {
	name string
	// lits are the literals a match starts with (for built-ins) or that
	// must occur in the text (user patterns); none: always run.
	lits []string
	sets []litSet // for built-ins, lits grouped by their probed byte (see probe)
	// re matches at a literal's position (anchored) for built-ins, or
	// anywhere (user patterns, anchored false).
	re       *regexp.Regexp
	anchored bool
	// before, when set, must hold for the byte before the literal; at the
	// start of the text the match is allowed only when atStart is.
	before  func(byte) bool
	atStart bool
	// groups: replace only what the capturing groups matched.
	groups bool
	// window bounds the text an anchored regexp sees: Go's regexp clears
	// state in proportion to its input, so a try at each literal must not
	// cost the length of the rest of the text.
	window int
	// locate, when set, finds the next place at or after pos where a match
	// may start, instead of the literals (which then serve the scan only).
	locate func(s string, pos int) int
}

// builtin describes a built-in kind: its literals and the regexp that
// matches from a literal's position. Ref is the same kind as a plain
// regexp, for tests: redacted text never contains a match of it.
type builtin struct {
	Name    string
	lits    []string
	expr    string
	before  func(byte) bool
	atStart bool
	groups  bool
	window  int // default tokenWindow
	locate  func(s string, pos int) int
	Ref     string
}

// tokenWindow is the longest match looked for by default: no token of the
// built-in kinds is longer. A longer run is redacted in its first
// tokenWindow bytes and its rest, no longer recognisable, left.
const tokenWindow = 1 << 10

// Builtins lists the built-in kinds, in the order they run. Near misses are
// left alone on purpose: a token prefix without the body a real token has
// (ghp_ alone, AKIA plus 15), a 40-character hex commit SHA, "Bearer"
// followed by a short word ("Bearer of bad news"), a URL with a port but no
// password (https://host:8443/x), ssh://git@host.
var builtins = []builtin{
	{
		// A PEM private key block: RSA, EC, OPENSSH, ENCRYPTED, PGP …
		// A block cut before its END line (a truncated log) is redacted to
		// the first character that cannot belong to its body.
		Name:   "pem",
		lits:   []string{"-----BEGIN "},
		window: 64 << 10, // a PGP key block runs to a few KiB
		expr:   `-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?:(?s:.*?)-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s\\:,.-]*)`,
		Ref:    `-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----`,
	},
	{
		// A JWT: header and payload are base64url JSON objects ("eyJ" is
		// `{"`); an unsigned or short-signed one is left alone.
		Name:    "jwt",
		lits:    []string{"eyJ"},
		window:  16 << 10, // claims can make a JWT long
		expr:    `eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}`,
		before:  notWord,
		atStart: true,
		Ref:     `\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}`,
	},
	{
		// GitHub: classic tokens are the prefix and 36 base62 characters;
		// fine-grained ones github_pat_ and 82.
		Name: "github",
		lits: []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"},
		expr: `(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{36,})`,
		Ref:  `(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{36,})`,
	},
	{
		// GitLab personal access tokens: glpat- and 20 or more characters
		// (newer ones carry dot-separated parts).
		Name: "gitlab",
		lits: []string{"glpat-"},
		expr: `glpat-[A-Za-z0-9_-]{20,}(?:\.[A-Za-z0-9_-]+)*`,
		Ref:  `glpat-[A-Za-z0-9_-]{20,}`,
	},
	{
		// Slack: xoxb-, xoxp- … then a numeric id, so "xoxo-hugs" is not one.
		Name: "slack",
		lits: []string{"xox"},
		expr: `xox[abposr]-[0-9]+-[A-Za-z0-9-]{8,}`,
		Ref:  `xox[abposr]-[0-9]+-[A-Za-z0-9-]{8,}`,
	},
	{
		// AWS access key ids: exactly 20 upper-case characters as a word.
		Name:    "aws",
		lits:    []string{"AKIA", "ASIA"},
		expr:    `(?:AKIA|ASIA)[A-Z0-9]{16}\b`,
		before:  notWord,
		atStart: true,
		Ref:     `\b(?:AKIA|ASIA)[A-Z0-9]{16}\b`,
	},
	{
		// Operator API keys.
		Name: "operator",
		lits: []string{"ck_live_"},
		expr: `ck_live_[A-Za-z0-9_-]{8,}`,
		Ref:  `ck_live_[A-Za-z0-9_-]{8,}`,
	},
	{
		// Authorization: Bearer <token>. The token (16 or more token
		// characters) is redacted, the scheme kept.
		Name:    "bearer",
		lits:    []string{"Bearer", "bearer", "BEARER"},
		expr:    `(?i:bearer)[ \t]+([A-Za-z0-9._~+/-]{16,}=*)`,
		before:  notWord,
		atStart: true,
		groups:  true,
		Ref:     `\b(?:Bearer|bearer|BEARER)[ \t]+[A-Za-z0-9._~+/-]{16,}`,
	},
	{
		// A password in a URL's userinfo (scheme://user:pass@host): the
		// password is redacted, user and host kept. The password runs to
		// the last @ before the host; quotes, backslashes and brackets end
		// it, so JSON around a URL is not taken for one.
		Name:   "userinfo",
		lits:   []string{"://"},
		locate: nextUserinfo,
		expr:   `://[^\s:/?#@\[\]"'<>\\` + "`" + `{}|^]*:([^\s/?#\[\]"'<>\\` + "`" + `{}|^]+)@`,
		before: isSchemeChar,
		groups: true,
		Ref:    `[A-Za-z0-9+.-]://[^\s:/?#@\[\]"'<>\\` + "`" + `{}|^]*:[^\s/?#\[\]"'<>\\` + "`" + `{}|^]+@`,
	},
}

// Builtins returns the names of the built-in kinds and, for each, a regexp
// that no redacted text matches.
func Builtins() map[string]string {
	out := make(map[string]string, len(builtins))
	for _, b := range builtins {
		out[b.Name] = b.Ref
	}
	return out
}

var builtinRules = func() []*rule {
	rules := make([]*rule, len(builtins))
	for i, b := range builtins {
		rules[i] = &rule{
			name: b.Name, lits: b.lits, re: regexp.MustCompile(`^(?:` + b.expr + `)`), anchored: true,
			before: b.before, atStart: b.atStart, groups: b.groups, window: b.window, locate: b.locate,
		}
		rules[i].sets = litSets(b.lits)
		if rules[i].window == 0 {
			rules[i].window = tokenWindow
		}
	}
	return rules
}()

// CompilePattern compiles a user pattern as NewRedactor does; config uses
// it to report a bad one at load.
func CompilePattern(expr string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, err
	}
	if re.MatchString("") {
		return nil, ErrEmptyMatch
	}
	return re, nil
}

// NewRedactor compiles opts. A pattern that does not compile, or that
// matches the empty string, is an error naming it by index.
func NewRedactor(opts RedactOptions) (*Redactor, error) {
	r := &Redactor{}
	if opts.Builtin {
		r.rules = append(r.rules, builtinRules...)
		r.builtin = true
	}
	for i, p := range opts.Patterns {
		re, err := CompilePattern(p)
		if err != nil {
			return nil, fmt.Errorf("patterns[%d] %q: %w", i, p, err)
		}
		ru := &rule{name: fmt.Sprintf("patterns[%d]", i), re: re, groups: re.NumSubexp() > 0}
		if prefix, _ := re.LiteralPrefix(); prefix != "" {
			ru.lits = []string{prefix}
		}
		r.rules = append(r.rules, ru)
	}
	return r, nil
}

// maxPasses bounds the passes over a text. One pass finds everything in
// practice; another runs only when one redacted something, so that the
// result is a fixed point (redacting it again changes nothing) even when
// removing one credential brings another's pieces together.
const maxPasses = 3

// Redact returns text with every credential replaced by [REDACTED] and the
// number of replacements. A nil Redactor, or one with no rules, returns text
// unchanged.
func (r *Redactor) Redact(text string) (string, int) {
	if r == nil || len(r.rules) == 0 {
		return text, 0
	}
	total := 0
	for range maxPasses {
		n := 0
		var seen uint64
		if r.builtin {
			seen = scan(text)
		}
		for i, ru := range r.rules {
			if r.builtin && i < len(builtinRules) && seen&(1<<i) == 0 {
				continue
			}
			var k int
			text, k = ru.apply(text)
			n += k
		}
		total += n
		if n == 0 {
			break
		}
	}
	return text, total
}

// apply redacts every match of ru in s.
func (ru *rule) apply(s string) (string, int) {
	if !ru.anchored {
		return ru.applyUnanchored(s)
	}
	var b strings.Builder
	last, n := 0, 0
	next := make([]int, len(ru.sets)) // next occurrence of each set at or after pos; -1: none
	for k := range next {
		next[k] = -2
	}
	for pos := 0; pos < len(s); {
		i := -1
		if ru.locate != nil {
			if i = ru.locate(s, pos); i < 0 {
				break
			}
		}
		for k, set := range ru.sets {
			if ru.locate != nil {
				break
			}
			if next[k] == -2 || (next[k] >= 0 && next[k] < pos) {
				next[k] = set.index(s, pos)
			}
			if next[k] >= 0 && (i < 0 || next[k] < i) {
				i = next[k]
			}
		}
		if i < 0 {
			break
		}
		pos = i + 1
		if ru.before != nil {
			if i == 0 && !ru.atStart || i > 0 && !ru.before(s[i-1]) {
				continue
			}
		}
		m := ru.re.FindStringSubmatchIndex(s[i:min(len(s), i+ru.window)])
		if m == nil || m[1] == 0 {
			continue
		}
		var ok bool
		if last, ok = replaceSpans(&b, s, last, i, m, ru.groups); ok {
			n++
		}
		pos = i + m[1]
	}
	if n == 0 {
		return s, 0
	}
	b.WriteString(s[last:])
	return b.String(), n
}

// applyUnanchored runs a user pattern over the whole text when its literal
// prefix, if any, occurs.
func (ru *rule) applyUnanchored(s string) (string, int) {
	for _, lit := range ru.lits {
		if !strings.Contains(s, lit) {
			return s, 0
		}
	}
	var b strings.Builder
	last, n := 0, 0
	for _, m := range ru.re.FindAllStringSubmatchIndex(s, -1) {
		if m[1] == m[0] || m[0] < last {
			continue
		}
		var ok bool
		if last, ok = replaceSpans(&b, s, last, 0, m, ru.groups); ok {
			n++
		}
	}
	if n == 0 {
		return s, 0
	}
	b.WriteString(s[last:])
	return b.String(), n
}

// replaceSpans writes s[last:] up to the match m (offsets relative to base)
// with the match, or its groups, replaced; it returns the new last and
// whether anything was replaced. A span that is [REDACTED] already is left
// as it is, so a user pattern such as password=(\S+) stays idempotent.
func replaceSpans(b *strings.Builder, s string, last, base int, m []int, groups bool) (int, bool) {
	if b.Len() == 0 {
		b.Grow(len(s))
	}
	if !groups {
		if s[base+m[0]:base+m[1]] == Redacted {
			return last, false
		}
		b.WriteString(s[last : base+m[0]])
		b.WriteString(Redacted)
		return base + m[1], true
	}
	replaced := false
	for g := 2; g+1 < len(m); g += 2 {
		from, to := base+m[g], base+m[g+1]
		if m[g] < 0 || from == to || from < last || s[from:to] == Redacted {
			continue // unset, empty, nested in a group already replaced, or done
		}
		b.WriteString(s[last:from])
		b.WriteString(Redacted)
		last, replaced = to, true
	}
	return last, replaced
}

// The scan finds which built-in kinds have a literal in the text: most
// turns have none of most. A substring search per literal would cost more
// (many literals start with bytes that are frequent in text). It looks at one byte of each literal,
// picked to be rare in payloads (an underscore in "ghp_", the J in "eyJ"),
// and checks the literal around each occurrence. Removing a credential
// never creates a literal (every literal lacks the brackets of
// [REDACTED]), so one scan serves a whole pass.
type probe struct {
	lit string
	off int    // where the probed byte is in lit
	bit uint64 // the rule's bit
}

var probeIndex [256]uint8 // byte -> index into probes; 0: none
var probes = [][]probe{nil}

// probeOffset picks the byte of lit to look for: the first of a few bytes
// that are rare in payloads, else the first.
func probeOffset(lit string) int {
	const rarest = "J_I:-Bb"
	for _, c := range []byte(rarest) {
		if off := strings.IndexByte(lit, c); off >= 0 {
			return off
		}
	}
	return 0
}

// A litSet is literals that have the same probed byte at the same offset
// ("ghp_", "gho_" … all have '_' at 3): one search finds them all.
type litSet struct {
	c    byte
	off  int
	lits []string
}

func litSets(lits []string) []litSet {
	var sets []litSet
next:
	for _, lit := range lits {
		off := probeOffset(lit)
		for k := range sets {
			if sets[k].c == lit[off] && sets[k].off == off {
				sets[k].lits = append(sets[k].lits, lit)
				continue next
			}
		}
		sets = append(sets, litSet{c: lit[off], off: off, lits: []string{lit}})
	}
	return sets
}

// index returns the first index >= pos where one of the set's literals
// occurs in s, or -1. It looks for the probed byte (strings.Index would
// start from the first byte, a frequent letter in "eyJ" or "ghp_").
func (ls *litSet) index(s string, pos int) int {
	for from := pos + ls.off; from < len(s); {
		j := strings.IndexByte(s[from:], ls.c)
		if j < 0 {
			return -1
		}
		i := from + j - ls.off
		if s[i] == ls.lits[0][0] || len(ls.lits) > 1 {
			for _, lit := range ls.lits {
				if strings.HasPrefix(s[i:], lit) {
					return i
				}
			}
		}
		from += j + 1
	}
	return -1
}

func init() {
	for k, b := range builtins {
		for _, lit := range b.lits {
			off := probeOffset(lit)
			c := lit[off]
			if probeIndex[c] == 0 {
				probeIndex[c] = uint8(len(probes))
				probes = append(probes, nil)
			}
			probes[probeIndex[c]] = append(probes[probeIndex[c]], probe{lit: lit, off: off, bit: 1 << k})
		}
	}
}

// scan returns the bits of the built-in rules whose literals occur in s.
// It jumps from one occurrence of a probed byte to the next (IndexByte is
// vectorised), and stops looking for a byte once every rule it serves has
// been seen: "://" is in most payloads, and found once is enough.
func scan(s string) uint64 {
	var seen uint64
	for x := 1; x < len(probes); x++ {
		ps := probes[x]
		c := ps[0].lit[ps[0].off]
		var all uint64
		for _, p := range ps {
			all |= p.bit
		}
		for i := 0; seen&all != all; i++ {
			j := strings.IndexByte(s[i:], c)
			if j < 0 {
				break
			}
			i += j
			for _, p := range ps {
				if seen&p.bit == 0 && i >= p.off && s[i-p.off] == p.lit[0] && strings.HasPrefix(s[i-p.off:], p.lit) {
					seen |= p.bit
				}
			}
		}
	}
	return seen
}

// nextUserinfo returns where the next "://" at or after pos is followed
// by an @ before anything that ends a URL's authority, or -1. It goes from
// @ to @ (rare in payloads) rather than from URL to URL (many).
func nextUserinfo(s string, pos int) int {
	for {
		j := strings.IndexByte(s[pos:], '@')
		if j < 0 {
			return -1
		}
		at := pos + j
		for k := at - 1; k >= max(pos+2, at-tokenWindow); k-- {
			switch s[k] {
			case '/':
				if s[k-2:k+1] == "://" {
					return k - 2
				}
			case '?', '#', ' ', '\t', '\n', '\r', '"', '\'', '<', '>', '\\':
			default:
				continue
			}
			break
		}
		pos = at + 1
	}
}

// notWord reports whether c cannot be part of a word (as \b sees words).
func notWord(c byte) bool { return !isWord(c) }

func isWord(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
}

func isSchemeChar(c byte) bool {
	return isWord(c) && c != '_' || c == '+' || c == '.' || c == '-'
}
