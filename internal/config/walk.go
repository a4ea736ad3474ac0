package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// maxNodes bounds the walk, so a document of nested aliases (a "billion
// laughs") fails instead of expanding without end.
const maxNodes = 100_000

// walker goes over the YAML node tree with the Go type each node decodes
// into, before anything is decoded. Knowing both the type and the field path
// of every scalar lets it expand ${VAR} per field, reject unknown keys and
// values of the wrong type with the field named, and note which fields were
// written (so defaults apply only to fields left out). A node that is in
// error is dropped from the tree, so the final decode cannot fail on it and
// validation still runs over the rest: every problem is reported at once.
type walker struct {
	lookup func(string) (string, bool)
	dev    bool

	errs   []error
	md     *meta           // lines, item names, values errors must not show
	bad    map[string]bool // field paths already reported
	secret map[string]bool // paths of Secret and SecretList fields
	unset  string          // Options.Unset

	expanded map[*yaml.Node]error    // scalars expanded once, even when aliased
	fromEnv  map[*yaml.Node][]string // what expanding each scalar looked up
	active   map[*yaml.Node]bool     // aliases being walked, to detect cycles
	cyclic   map[*yaml.Node]bool
	budget   int
	fatal    bool
}

func newWalker(o Options) *walker {
	return &walker{
		lookup:   o.lookup(),
		dev:      o.Dev,
		unset:    o.Unset,
		md:       newMeta(),
		bad:      map[string]bool{},
		secret:   map[string]bool{},
		expanded: map[*yaml.Node]error{},
		fromEnv:  map[*yaml.Node][]string{},
		active:   map[*yaml.Node]bool{},
		cyclic:   map[*yaml.Node]bool{},
		budget:   maxNodes,
	}
}

// fail reports a problem with the value at path, which then is not
// checked further (no follow-on errors for it).
func (w *walker) fail(path string, line int, err error) {
	w.report(path, line, err)
	w.bad[path] = true
}

// report reports a problem found in the mapping at path (an unknown key)
// that leaves the rest of it to be checked.
func (w *walker) report(path string, line int, err error) {
	w.errs = append(w.errs, w.md.fieldError(path, line, err))
}

// document walks a parsed file and returns its top node (nil when empty).
func (w *walker) document(doc *yaml.Node) *yaml.Node {
	top := doc
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil
		}
		top = doc.Content[0]
	}
	if top.Kind == 0 || isNull(top) {
		return nil
	}
	if w.walk(top, reflect.TypeFor[Config](), "") {
		w.fatal = true // not a mapping: nothing else is worth reporting
		return nil
	}
	return top
}

// walk checks n against t and reports whether the parent should drop n.
func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) (drop bool) {
	if w.fatal {
		return true
	}
	if w.budget--; w.budget < 0 {
		w.fatal = true
		w.fail("", 0, errors.New("config too large or too many aliases"))
		return true
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil || w.active[n] {
			w.cyclic[n] = true
			w.fail(path, n.Line, errors.New("alias refers to a value that contains it"))
			return true
		}
		w.active[n] = true
		drop = w.walk(n.Alias, t, path)
		delete(w.active, n)
		if _, ok := w.md.lines[path]; ok {
			w.md.lines[path] = n.Line
		}
		return drop || w.cyclic[n]
	}
	if isNull(n) {
		return false
	}
	w.md.lines[path] = n.Line
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if isSecretType(t) {
		w.secret[path] = true
		w.md.hide(path)
	}
	if n.Kind == yaml.ScalarNode && w.isSecret(path) {
		w.md.hide(path, n.Value)
	}
	switch {
	case isUnmarshaler(t):
		return w.leaf(n, t, path)
	case t.Kind() == reflect.Struct:
		return w.object(n, t, path)
	case t.Kind() == reflect.Slice:
		return w.list(n, t, path)
	default:
		return w.leaf(n, t, path)
	}
}

func (w *walker) object(n *yaml.Node, t reflect.Type, path string) bool {
	if n.Kind != yaml.MappingNode {
		w.fail(path, n.Line, fmt.Errorf("expected a mapping, got %s", w.got(n, path)))
		return true
	}
	fields := fieldsOf(t)
	seen := map[string]int{}
	kept := make([]*yaml.Node, 0, len(n.Content))
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			if !w.merge(v, t, path) {
				kept = append(kept, k, v)
			}
			continue
		}
		if k.Kind != yaml.ScalarNode {
			w.report(path, k.Line, fmt.Errorf("expected a field name, got %s", kindName(k)))
			continue
		}
		ft, ok := fields[k.Value]
		if !ok && path == "" && strings.HasPrefix(k.Value, "x-") {
			// Extension keys hold anchors for the rest of the file, as in
			// Compose files; they are checked where they are used.
			kept = append(kept, k, v)
			continue
		}
		if !ok {
			w.report(path, k.Line, unknownField(k.Value, fields))
			continue
		}
		fp := join(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			w.fail(fp, k.Line, fmt.Errorf("written twice (first on line %d)", first))
			continue
		}
		seen[k.Value] = k.Line
		if w.walk(v, ft, fp) {
			w.bad[fp] = true
			continue
		}
		kept = append(kept, k, v)
	}
	n.Content = kept
	return false
}

// merge walks the value of a YAML merge key ("<<: *defaults"): one mapping
// or a list of them, merged into the mapping at path.
func (w *walker) merge(v *yaml.Node, t reflect.Type, path string) (drop bool) {
	one := func(m *yaml.Node) bool {
		r := m
		for r.Kind == yaml.AliasNode && r.Alias != nil {
			if w.active[r] {
				w.cyclic[r] = true
				w.fail(path, m.Line, errors.New("alias refers to a value that contains it"))
				return true
			}
			r = r.Alias
		}
		if r.Kind != yaml.MappingNode {
			w.fail(path, m.Line, errors.New("a merge (<<) takes a mapping or a list of mappings"))
			return true
		}
		return w.walk(m, t, path)
	}
	if v.Kind == yaml.SequenceNode {
		for _, m := range v.Content {
			if one(m) {
				return true
			}
		}
		return false
	}
	return one(v)
}

func (w *walker) list(n *yaml.Node, t reflect.Type, path string) bool {
	if n.Kind != yaml.SequenceNode {
		w.fail(path, n.Line, fmt.Errorf("expected a list, got %s", w.got(n, path)))
		return true
	}
	for i, e := range n.Content {
		ep := index(path, i)
		if name, ok := itemName(e); ok {
			w.md.names[ep] = name
		}
		if w.walk(e, t.Elem(), ep) {
			w.bad[ep] = true
			n.Content[i] = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: e.Line, Column: e.Column}
		}
	}
	return false
}

// leaf expands and checks one scalar value.
func (w *walker) leaf(n *yaml.Node, t reflect.Type, path string) bool {
	if n.Kind != yaml.ScalarNode && !isUnmarshaler(t) {
		w.fail(path, n.Line, fmt.Errorf("expected %s, got %s", want(t), w.got(n, path)))
		return true
	}
	if vals, ok := w.fromEnv[n]; ok {
		w.md.env[path] = true
		w.md.hide(path, vals...)
	}
	if err, done := w.expanded[n]; done {
		if err != nil {
			w.bad[path] = true
			return true
		}
	} else if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "$") {
		// Whatever a variable held is never shown in an error about
		// this field: it may be a secret, whichever field it landed in.
		var vals []string
		used := false
		lookup := func(k string) (string, bool) {
			used = true
			v, ok := w.lookup(k)
			if ok && v != "" {
				vals = append(vals, v)
			}
			return v, ok
		}
		v, err := expandEnv(n.Value, lookup)
		var missing *MissingVarError
		if w.unset != "" {
			v, err = w.expandTolerant(n.Value, v, err, lookup)
		}
		if used {
			w.fromEnv[n] = vals
			w.md.env[path] = true
			w.md.hide(path, vals...)
			if w.isSecret(path) {
				w.md.hide(path, v)
			}
		}
		if w.dev && path == "operator.api_key" && errors.As(err, &missing) {
			// Dev mode talks to the in-process fake, which takes any key.
			v, err = "", nil
		}
		w.expanded[n] = err
		if err != nil {
			w.fail(path, n.Line, err)
			return true
		}
		n.Value = v
		if t.Kind() == reflect.String {
			n.Tag, n.Style = "!!str", n.Style&^(yaml.TaggedStyle)
		} else {
			if strings.TrimSpace(v) == "" {
				w.fail(path, n.Line, fmt.Errorf("empty value, expected %s", want(t)))
				return true
			}
			// "${PORT}" is a string as written; what it expands to is
			// read as if it had been written in place, quotes or not.
			n.Tag, n.Style = "", 0
		}
	}
	probe := reflect.New(t)
	if err := n.Decode(probe.Interface()); err != nil {
		if isUnmarshaler(t) {
			w.fail(path, n.Line, err)
		} else {
			w.fail(path, n.Line, fmt.Errorf("expected %s, got %s", want(t), w.got(n, path)))
		}
		return true
	}
	return false
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func isUnmarshaler(t reflect.Type) bool { return reflect.PointerTo(t).Implements(unmarshalerType) }

var fieldCache sync.Map // reflect.Type → map[string]reflect.Type

// fieldsOf maps the YAML names of t's fields to their types.
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := make(map[string]reflect.Type, t.NumField())
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	fieldCache.Store(t, m)
	return m
}

func unknownField(name string, fields map[string]reflect.Type) error {
	best, bestD := "", 3
	for f := range fields {
		if d := editDistance(name, f); d < bestD || d == bestD && f < best {
			best, bestD = f, d
		}
	}
	if best != "" {
		return fmt.Errorf("unknown field %q (did you mean %q?)", name, best)
	}
	return fmt.Errorf("unknown field %q", name)
}

// editDistance is Levenshtein's, for "did you mean" hints on short names.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func want(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a " + t.Kind().String()
}

// got describes the node at path for a type error: its value only when it
// is neither a secret nor from the environment.
func (w *walker) got(n *yaml.Node, path string) string {
	if n.Kind == yaml.ScalarNode && w.md.sensitive(path) {
		return "a single value"
	}
	return kindName(n)
}

// isSecret reports whether path is a Secret or SecretList field or inside one.
func (w *walker) isSecret(path string) bool {
	for _, p := range parents(path) {
		if w.secret[p] {
			return true
		}
	}
	return false
}

// itemName is the name a list item gives itself ("name: ci-failures"),
// for errors; not when it comes from the environment, nor when too long
// to be one.
func itemName(n *yaml.Node) (string, bool) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		return "", false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "name" {
			if v.Kind != yaml.ScalarNode || v.Value == "" || len(v.Value) > maxNameLen || strings.Contains(v.Value, "$") {
				return "", false
			}
			return v.Value, true
		}
	}
	return "", false
}

// kindName describes a node for errors. Scalars are quoted only when short:
// the value may be a secret written in the wrong place.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		if len(n.Value) <= 32 {
			return fmt.Sprintf("%q", n.Value)
		}
		return "a long value"
	}
	return "nothing"
}

// expandTolerant re-expands s with Options.Unset standing in for every
// variable that is unset and has no default; defaults still apply.
func (w *walker) expandTolerant(s, v string, err error, lookup func(string) (string, bool)) (string, error) {
	missing := map[string]bool{}
	var miss *MissingVarError
	for errors.As(err, &miss) && !missing[miss.Name] {
		missing[miss.Name] = true
		v, err = expandEnv(s, func(k string) (string, bool) {
			if missing[k] {
				return w.unset, true
			}
			return lookup(k)
		})
	}
	return v, err
}
