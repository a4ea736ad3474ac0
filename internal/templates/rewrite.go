package templates

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
)

// printFunc is the command appended to printing actions. The rewrite also
// defines one function per field chain, named genPrefix + kind + number.
const (
	printFunc = "_relayd_print"
	genPrefix = "_relayd_"
)

var internalFuncs = template.FuncMap{printFunc: printable}

// Why the rewrite: text/template stops with "nil pointer evaluating
// interface {}.deeper" when a field chain crosses a missing or null value,
// and prints "<no value>" for a missing key. So every field chain .a.b.c
// (and $x.a.b.c, (pipe).a.b.c) is replaced by a call to a function made for
// that chain, which walks it leniently:
//
//   - {{ .a.b.c }} alone becomes {{ _relayd_vN . }}: the value, printable
//     (nil as "", floats without exponent);
//   - a chain that is a whole command, first in its pipeline, becomes
//     (_relayd_lN .): the value, nil when missing;
//   - elsewhere (a method call with arguments, an argument of eq, and, or,
//     not...) it becomes (_relayd_hN .).c, where _relayd_hN walks .a.b and
//     returns a value that has c (a map, or a value with a method or field
//     c), or an empty map. The last step stays text/template's own, so
//     .received_at.Format "2006" still works and, with missingkey=zero, a
//     missing key gives a valid nil that the builtins accept.
//
// Other printing actions get a final _relayd_print command. Generated
// functions take the receiver alone: path names as string arguments would
// cost an allocation each per render.

type rewriter struct {
	funcs template.FuncMap
	paths map[string]string // generated function name to the chain it reads, for errors
}

func newRewriter() *rewriter {
	return &rewriter{funcs: template.FuncMap{}, paths: map[string]string{}}
}

// define registers fn for the chain fields and returns its name.
func (rw *rewriter) define(kind string, fields []string, fn any) string {
	name := genPrefix + kind + strconv.Itoa(len(rw.funcs))
	rw.funcs[name] = fn
	rw.paths[name] = "." + strings.Join(fields, ".")
	return name
}

func (rw *rewriter) list(l *parse.ListNode) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		rw.node(n)
	}
}

func (rw *rewriter) node(n parse.Node) {
	switch n := n.(type) {
	case *parse.ActionNode:
		if len(n.Pipe.Decl) == 0 && len(n.Pipe.Cmds) == 1 {
			if c := n.Pipe.Cmds[0]; len(c.Args) == 1 {
				if args, ok := rw.pathCall("v", c.Args[0]); ok {
					c.Args = args
					return
				}
			}
		}
		rw.pipe(n.Pipe)
		if len(n.Pipe.Decl) == 0 {
			n.Pipe.Cmds = append(n.Pipe.Cmds, &parse.CommandNode{
				NodeType: parse.NodeCommand, Pos: n.Pos,
				Args: []parse.Node{identifier(printFunc, n.Pos)},
			})
		}
	case *parse.IfNode:
		rw.branch(&n.BranchNode)
	case *parse.RangeNode:
		rw.branch(&n.BranchNode)
	case *parse.WithNode:
		rw.branch(&n.BranchNode)
	case *parse.TemplateNode:
		rw.pipe(n.Pipe)
	case *parse.ListNode:
		rw.list(n)
	}
}

func (rw *rewriter) branch(b *parse.BranchNode) {
	rw.pipe(b.Pipe)
	rw.list(b.List)
	rw.list(b.ElseList)
}

func (rw *rewriter) pipe(p *parse.PipeNode) {
	if p == nil {
		return
	}
	for ci, c := range p.Cmds {
		if ci == 0 && len(c.Args) == 1 {
			if args, ok := rw.pathCall("l", c.Args[0]); ok {
				c.Args = args
				continue
			}
		}
		for i, a := range c.Args {
			c.Args[i] = rw.arg(a)
		}
	}
}

// chain splits a field chain into its receiver and field names.
func (rw *rewriter) chain(n parse.Node) (recv parse.Node, fields []string, ok bool) {
	switch n := n.(type) {
	case *parse.FieldNode:
		return &parse.DotNode{NodeType: parse.NodeDot, Pos: n.Pos}, n.Ident, true
	case *parse.VariableNode:
		if len(n.Ident) > 1 {
			return &parse.VariableNode{NodeType: parse.NodeVariable, Pos: n.Pos, Ident: n.Ident[:1]}, n.Ident[1:], true
		}
	case *parse.ChainNode:
		return rw.arg(n.Node), n.Field, true
	}
	return nil, nil, false
}

// pathCall returns the arguments of (fn recv) reading the chain n whole:
// kind "v" for printing, "l" for the value.
func (rw *rewriter) pathCall(kind string, n parse.Node) ([]parse.Node, bool) {
	recv, fields, ok := rw.chain(n)
	if !ok {
		return nil, false
	}
	path := fields
	fn := func(v any) (any, error) { return lookup(v, path) }
	if kind == "v" {
		fn = func(v any) (any, error) {
			v, err := lookup(v, path)
			return printable(v), err
		}
	}
	return []parse.Node{identifier(rw.define(kind, fields, fn), n.Position()), recv}, true
}

func (rw *rewriter) arg(n parse.Node) parse.Node {
	if p, ok := n.(*parse.PipeNode); ok {
		rw.pipe(p)
		return p
	}
	recv, fields, ok := rw.chain(n)
	if !ok {
		return n
	}
	pos := n.Position()
	path, last := fields[:len(fields)-1], fields[len(fields)-1]
	name := rw.define("h", path, func(v any) (any, error) { return holder(v, path, last) })
	pipe := &parse.PipeNode{
		NodeType: parse.NodePipe, Pos: pos,
		Cmds: []*parse.CommandNode{{NodeType: parse.NodeCommand, Pos: pos, Args: []parse.Node{identifier(name, pos), recv}}},
	}
	return &parse.ChainNode{NodeType: parse.NodeChain, Pos: pos, Node: pipe, Field: []string{last}}
}

func identifier(name string, pos parse.Pos) *parse.IdentifierNode {
	return parse.NewIdentifier(name).SetPos(pos)
}

// emptyMap stands for a missing value whose field is asked for. Templates
// cannot write to it.
var emptyMap = map[string]any{}

// holder walks path from v and returns a value on which text/template can
// evaluate the field last: the value itself when it is a map or has a
// method or field last, otherwise an empty map.
func holder(v any, path []string, last string) (any, error) {
	for _, key := range path {
		var err error
		if v, err = step(v, key); err != nil {
			return nil, err
		}
		if v == nil {
			return emptyMap, nil
		}
	}
	switch v.(type) {
	case map[string]any, map[string]string:
		return v, nil
	case nil:
		return emptyMap, nil
	}
	rv := reflect.ValueOf(v)
	if rv.MethodByName(last).IsValid() {
		return v, nil
	}
	rv, ok := indirect(rv)
	if !ok {
		return emptyMap, nil
	}
	switch rv.Kind() {
	case reflect.Map:
		if rv.Type().Key().Kind() == reflect.String {
			return v, nil
		}
	case reflect.Struct:
		if f, ok := rv.Type().FieldByName(last); ok && f.IsExported() {
			return v, nil
		}
	}
	return emptyMap, nil
}

// lookup walks path from v; nil when any step is missing.
func lookup(v any, path []string) (any, error) {
	for _, key := range path {
		var err error
		if v, err = step(v, key); err != nil || v == nil {
			return nil, err
		}
	}
	return v, nil
}

// step returns v's key: a map entry, a niladic method's result or an
// exported struct field, as text/template would find it; nil when absent.
func step(v any, key string) (any, error) {
	switch m := v.(type) {
	case nil:
		return nil, nil
	case map[string]any:
		return m[key], nil
	case map[string]string:
		if s, ok := m[key]; ok {
			return s, nil
		}
		return nil, nil
	}
	rv := reflect.ValueOf(v)
	if m := rv.MethodByName(key); m.IsValid() {
		return callNiladic(m)
	}
	rv, ok := indirect(rv)
	if !ok {
		return nil, nil
	}
	switch rv.Kind() {
	case reflect.Map:
		kt := rv.Type().Key()
		if kt.Kind() != reflect.String {
			return nil, nil
		}
		if e := rv.MapIndex(reflect.ValueOf(key).Convert(kt)); e.IsValid() {
			return e.Interface(), nil
		}
	case reflect.Struct:
		if f, ok := rv.Type().FieldByName(key); ok && f.IsExported() {
			return rv.FieldByIndex(f.Index).Interface(), nil
		}
	}
	return nil, nil
}

var errorType = reflect.TypeFor[error]()

// callNiladic calls a method taking no arguments that returns a value, or a
// value and an error. Any other method is treated as absent.
func callNiladic(m reflect.Value) (any, error) {
	t := m.Type()
	if t.NumIn() != 0 {
		return nil, nil
	}
	switch {
	case t.NumOut() == 1:
		return m.Call(nil)[0].Interface(), nil
	case t.NumOut() == 2 && t.Out(1) == errorType:
		out := m.Call(nil)
		if err, _ := out[1].Interface().(error); err != nil {
			return nil, err
		}
		return out[0].Interface(), nil
	}
	return nil, nil
}

// indirect follows pointers and interfaces; ok is false at a nil.
func indirect(v reflect.Value) (_ reflect.Value, ok bool) {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return v, false
		}
		v = v.Elem()
	}
	return v, v.IsValid()
}

// printable is the last command of every printing action: nil prints as
// nothing and floats print without an exponent; the rest prints as usual.
func printable(v any) any {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return formatFloat(x, 64)
	case float32:
		return formatFloat(float64(x), 32)
	case json.Number:
		return string(x)
	}
	if rv, ok := indirect(reflect.ValueOf(v)); !ok && rv.IsValid() {
		return "" // a typed nil pointer
	}
	return v
}

func formatFloat(f float64, bits int) string {
	return strconv.FormatFloat(f, 'f', -1, bits)
}
