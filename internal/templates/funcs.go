package templates

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode"
	"unicode/utf8"
)

// builtinFuncs are the helpers templates may call, built once, in sprig's argument order
// (the value last, so they work in pipelines: {{ .body.title | truncate 80 }}):
//
//	json v, toJson v          compact JSON, HTML characters not escaped
//	prettyjson v, toPrettyJson v  JSON indented by two spaces
//	truncate n s              first n runes of s, then "…" if s was longer
//	default d v               v, or d when v is empty (nil, "", 0, false, empty map/slice)
//	empty v                   whether v is empty in that sense
//	join sep list             list's elements as strings, nils dropped, joined by sep
//	trim s, lower s, upper s, title s
//	indent n s, nindent n s   every line of s indented by n spaces (nindent adds a leading newline)
//	lines n s                 the first n lines of s
//	replace old new s         every old in s replaced by new
//	contains sub s, hasPrefix p s, hasSuffix p s
//	split sep s               s split around sep into a list (empty s: empty list)
//	quote s...                each argument as a Go double-quoted string, space separated
//	first list, last list     the first or last element, nil when empty
//	toString v                v as text: nil is "", numbers without exponent
//	now                       the current time
//	date layout t             t (a time, RFC 3339 text, or Unix seconds) in Go layout
//	untrusted v               v fenced: <untrusted>v</untrusted>, markers inside neutralised
//	                          (objects and lists as JSON); for anything a sender wrote
//	index v keys...           like the builtin, but nil for a missing key or index
//	len v                     like the builtin, but 0 for nil
var builtinFuncs = template.FuncMap{
	"json":         toJSON,
	"toJson":       toJSON,
	"prettyjson":   toPrettyJSON,
	"toPrettyJson": toPrettyJSON,
	"truncate":     truncate,
	"default":      dfault,
	"empty":        empty,
	"join":         join,
	"trim":         func(s any) string { return strings.TrimSpace(toString(s)) },
	"lower":        func(s any) string { return strings.ToLower(toString(s)) },
	"upper":        func(s any) string { return strings.ToUpper(toString(s)) },
	"title":        title,
	"indent":       indent,
	"nindent":      nindent,
	"lines":        lines,
	"replace":      replace,
	"contains":     func(sub string, s any) bool { return strings.Contains(toString(s), sub) },
	"hasPrefix":    func(p string, s any) bool { return strings.HasPrefix(toString(s), p) },
	"hasSuffix":    func(p string, s any) bool { return strings.HasSuffix(toString(s), p) },
	"split":        split,
	"quote":        quote,
	"first":        first,
	"last":         last,
	"toString":     toString,
	"now":          time.Now,
	"date":         date,
	"untrusted":    untrusted,
	// Lenient versions of the builtins: nil and a missing key or index give
	// nil (or 0) rather than an error, since payloads vary.
	"index": index,
	"len":   length,
}

func toJSON(v any) (string, error) { return encodeJSON(v, "") }

func toPrettyJSON(v any) (string, error) { return encodeJSON(v, "  ") }

func encodeJSON(v any, indent string) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // prompts are not HTML: keep <, > and & readable
	if indent != "" {
		enc.SetIndent("", indent)
	}
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

func truncate(n, s any) (string, error) {
	max, err := toInt(n)
	if err != nil {
		return "", fmt.Errorf("truncate: length %w", err)
	}
	str := toString(s)
	if max < 0 {
		max = 0
	}
	if utf8.RuneCountInString(str) <= max {
		return str, nil
	}
	i, count := 0, 0
	for i = range str {
		if count == max {
			break
		}
		count++
	}
	return str[:i] + "…", nil
}

func dfault(d any, given ...any) any {
	if len(given) == 0 || empty(given[0]) {
		return d
	}
	return given[0]
}

// empty reports whether v is empty as sprig's default sees it.
func empty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case bool:
		return !x
	case int64:
		return x == 0
	case float64:
		return x == 0
	case map[string]any:
		return len(x) == 0
	case []any:
		return len(x) == 0
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return rv.Len() == 0
	case reflect.Bool:
		return !rv.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return rv.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return rv.Float() == 0
	case reflect.Complex64, reflect.Complex128:
		return rv.Complex() == 0
	case reflect.Pointer, reflect.Interface, reflect.Func, reflect.Chan:
		return rv.IsNil()
	}
	return false
}

func join(sep string, list any) string {
	switch l := list.(type) {
	case nil:
		return ""
	case []string:
		return strings.Join(l, sep)
	case string:
		return l
	}
	items := toList(list)
	if items == nil {
		return toString(list)
	}
	parts := make([]string, 0, len(items))
	for _, it := range items {
		if it != nil {
			parts = append(parts, toString(it))
		}
	}
	return strings.Join(parts, sep)
}

// toList returns the elements of a slice or array, or nil for anything else.
func toList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return nil
	}
	out := make([]any, rv.Len())
	for i := range out {
		out[i] = rv.Index(i).Interface()
	}
	return out
}

// title upper-cases the first letter of each word, as the deprecated
// strings.Title did.
func title(s any) string {
	prev := ' '
	return strings.Map(func(r rune) rune {
		if isSeparator(prev) {
			prev = r
			return unicode.ToTitle(r)
		}
		prev = r
		return r
	}, toString(s))
}

func isSeparator(r rune) bool {
	if r <= 0x7F {
		switch {
		case '0' <= r && r <= '9', 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', r == '_':
			return false
		}
		return true
	}
	if unicode.IsLetter(r) || unicode.IsDigit(r) {
		return false
	}
	return unicode.IsSpace(r)
}

func indent(n, s any) (string, error) {
	w, err := toInt(n)
	if err != nil {
		return "", fmt.Errorf("indent: width %w", err)
	}
	pad := strings.Repeat(" ", max(w, 0))
	return pad + strings.ReplaceAll(toString(s), "\n", "\n"+pad), nil
}

func nindent(n, s any) (string, error) {
	out, err := indent(n, s)
	if err != nil {
		return "", fmt.Errorf("n%w", err)
	}
	return "\n" + out, nil
}

func lines(n, s any) (string, error) {
	count, err := toInt(n)
	if err != nil {
		return "", fmt.Errorf("lines: count %w", err)
	}
	str := toString(s)
	if count <= 0 {
		return "", nil
	}
	at := 0
	for range count {
		i := strings.IndexByte(str[at:], '\n')
		if i < 0 {
			return str, nil
		}
		at += i + 1
	}
	return str[:at-1], nil
}

func replace(old, repl string, s any) string {
	return strings.ReplaceAll(toString(s), old, repl)
}

func split(sep string, s any) []string {
	str := toString(s)
	if str == "" {
		return []string{}
	}
	return strings.Split(str, sep)
}

func quote(args ...any) string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		if a != nil {
			out = append(out, strconv.Quote(toString(a)))
		}
	}
	return strings.Join(out, " ")
}

func first(list any) any {
	if l := toList(list); len(l) > 0 {
		return l[0]
	}
	return nil
}

func last(list any) any {
	if l := toList(list); len(l) > 0 {
		return l[len(l)-1]
	}
	return nil
}

// toString renders v as text: nil as "", integers exactly, floats without
// exponent, anything else as fmt prints it.
func toString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case int:
		return strconv.Itoa(x)
	case float64:
		return formatFloat(x, 64)
	case float32:
		return formatFloat(float64(x), 32)
	case bool:
		return strconv.FormatBool(x)
	case json.Number:
		return string(x)
	case []byte:
		return string(x)
	case fmt.Stringer:
		return x.String()
	case error:
		return x.Error()
	}
	return fmt.Sprint(v)
}

// toInt converts a count given in a template (int constant) or taken from
// data (int64, float64, numeric text) to int.
func toInt(v any) (int, error) {
	switch x := v.(type) {
	case int:
		return x, nil
	case int64:
		return int(x), nil
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int(x), nil
		}
	case string:
		if i, err := strconv.Atoi(strings.TrimSpace(x)); err == nil {
			return i, nil
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return int(i), nil
		}
	default:
		rv := reflect.ValueOf(v)
		switch rv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return int(rv.Int()), nil
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			if rv.Uint() <= math.MaxInt {
				return int(rv.Uint()), nil
			}
		}
	}
	return 0, fmt.Errorf("%w: %v (%T)", errNotNumber, v, v)
}

// date formats t with a Go layout. t is a time.Time, RFC 3339 text (as
// GitHub sends timestamps) or Unix seconds; text that does not parse is
// returned unchanged, nil gives "".
func date(layout string, t any) string {
	var tm time.Time
	switch x := t.(type) {
	case nil:
		return ""
	case time.Time:
		tm = x
	case *time.Time:
		if x == nil {
			return ""
		}
		tm = *x
	case string:
		p, err := time.Parse(time.RFC3339Nano, x)
		if err != nil {
			return x
		}
		tm = p
	case int64:
		tm = time.Unix(x, 0).UTC()
	case int:
		tm = time.Unix(int64(x), 0).UTC()
	case float64:
		sec, frac := math.Modf(x)
		tm = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	default:
		return toString(t)
	}
	return tm.Format(layout)
}

// index is the builtin index, except that nil, a missing key and an index
// out of range give nil.
func index(item any, keys ...any) (any, error) {
	for _, k := range keys {
		if item == nil {
			return nil, nil
		}
		if m, ok := item.(map[string]any); ok {
			s, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("index: map key %v (%T) is not a string", k, k)
			}
			item = m[s]
			continue
		}
		rv, ok := indirect(reflect.ValueOf(item))
		if !ok {
			return nil, nil
		}
		switch rv.Kind() {
		case reflect.Map:
			kt := rv.Type().Key()
			kv := reflect.ValueOf(k)
			switch {
			case kv.IsValid() && kv.Kind() == reflect.String && kt.Kind() == reflect.String:
				kv = kv.Convert(kt)
			case !kv.IsValid() || !kv.Type().AssignableTo(kt):
				return nil, fmt.Errorf("index: key %v (%T) does not fit %s", k, k, rv.Type())
			}
			e := rv.MapIndex(kv)
			if !e.IsValid() {
				return nil, nil
			}
			item = e.Interface()
		case reflect.Slice, reflect.Array, reflect.String:
			i, err := toInt(k)
			if err != nil {
				return nil, fmt.Errorf("index: %w", err)
			}
			if i < 0 || i >= rv.Len() {
				return nil, nil
			}
			item = rv.Index(i).Interface()
		default:
			return nil, fmt.Errorf("index: can't index item of type %s", rv.Type())
		}
	}
	return item, nil
}

// length is the builtin len, except that nil has length 0.
func length(v any) (int, error) {
	if v == nil {
		return 0, nil
	}
	rv, ok := indirect(reflect.ValueOf(v))
	if !ok {
		return 0, nil
	}
	switch rv.Kind() {
	case reflect.Array, reflect.Chan, reflect.Map, reflect.Slice, reflect.String:
		return rv.Len(), nil
	}
	return 0, fmt.Errorf("len of type %s", rv.Type())
}
