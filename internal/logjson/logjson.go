// Package logjson is a slog.Handler writing one JSON object a line, as
// slog.JSONHandler does, with durations in seconds ("took":0.00218).
//
// Its output is what slog.JSONHandler writes with a ReplaceAttr that turns
// every duration into seconds, byte for byte (tested against it) except
// where slog's line is not JSON. It formats the common values itself:
// slog's handler runs every attribute through ReplaceAttr and every float
// through encoding/json, which made the line relayd logs per turn cost
// several microseconds.
package logjson

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/relayd/relayd/internal/jsonstr"
)

// Handler writes records to its writer as JSON lines.
type Handler struct {
	out   *output
	level slog.Leveler

	pre    []byte   // attributes from WithAttrs, formatted, in the groups opened there
	nOpen  int      // groups opened in pre
	groups []string // every group from WithGroup, the first nOpen opened in pre
}

// output is the writer Handlers made from one New share, with its lock.
type output struct {
	mu sync.Mutex
	w  io.Writer
}

var _ slog.Handler = (*Handler)(nil)

// New returns a Handler writing to w the records at level or above (Info
// when level is nil).
func New(w io.Writer, level slog.Leveler) *Handler {
	if level == nil {
		level = slog.LevelInfo
	}
	return &Handler{out: &output{w: w}, level: level}
}

// Enabled reports whether records at level are written.
func (h *Handler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.level.Level()
}

func (h *Handler) clone() *Handler {
	h2 := *h
	h2.pre = bytes.Clone(h.pre)
	h2.groups = h.groups[:len(h.groups):len(h.groups)]
	return &h2
}

// WithAttrs returns a Handler that writes attrs with every record.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	empty := 0
	for _, a := range attrs {
		if a.Value.Kind() == slog.KindGroup && len(a.Value.Group()) == 0 {
			empty++
		}
	}
	if empty == len(attrs) {
		return h
	}
	h2 := h.clone()
	s := state{buf: h2.pre}
	if len(h2.pre) > 0 && h2.pre[len(h2.pre)-1] != '{' {
		s.sep = true
	}
	pos := len(s.buf)
	for _, g := range h2.groups[h2.nOpen:] {
		s.openGroup(g)
	}
	if s.appendAttrs(attrs) {
		h2.nOpen = len(h2.groups)
	} else {
		s.buf = s.buf[:pos]
	}
	h2.pre = s.buf
	return h2
}

// WithGroup returns a Handler that writes the attributes that follow
// inside a group named name.
func (h *Handler) WithGroup(name string) slog.Handler {
	h2 := h.clone()
	h2.groups = append(h2.groups, name)
	return h2
}

var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Handle writes r as one line.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	bp := bufs.Get().(*[]byte)
	s := state{buf: append((*bp)[:0], '{')}
	if !r.Time.IsZero() {
		s.appendKey(slog.TimeKey)
		s.appendTime(r.Time.Round(0))
	}
	s.appendKey(slog.LevelKey)
	s.appendString(r.Level.String())
	s.appendKey(slog.MessageKey)
	s.appendString(r.Message)
	if len(h.pre) > 0 {
		s.buf = append(s.buf, ',')
		s.buf = append(s.buf, h.pre...)
		s.sep = h.pre[len(h.pre)-1] != '{'
	}
	open := h.nOpen
	if r.NumAttrs() > 0 {
		pos, sep := len(s.buf), s.sep
		for _, g := range h.groups[h.nOpen:] {
			s.openGroup(g)
		}
		open = len(h.groups)
		empty := true
		r.Attrs(func(a slog.Attr) bool {
			if s.appendAttr(a) {
				empty = false
			}
			return true
		})
		if empty {
			s.buf, s.sep, open = s.buf[:pos], sep, h.nOpen
		}
	}
	for range open {
		s.buf = append(s.buf, '}')
	}
	s.buf = append(s.buf, '}', '\n')
	h.out.mu.Lock()
	_, err := h.out.w.Write(s.buf)
	h.out.mu.Unlock()
	if cap(s.buf) <= 16<<10 {
		*bp = s.buf
		bufs.Put(bp)
	}
	return err
}

// state is one line being formatted; sep is whether the next key needs a
// comma before it.
type state struct {
	buf []byte
	sep bool
}

func (s *state) appendKey(key string) {
	if s.sep {
		s.buf = append(s.buf, ',')
	}
	s.appendString(key)
	s.buf = append(s.buf, ':')
	s.sep = true
}

func (s *state) openGroup(name string) {
	s.appendKey(name)
	s.buf = append(s.buf, '{')
	s.sep = false
}

func (s *state) closeGroup() {
	s.buf = append(s.buf, '}')
	s.sep = true
}

// appendAttrs reports whether anything was written.
func (s *state) appendAttrs(as []slog.Attr) bool {
	wrote := false
	for _, a := range as {
		if s.appendAttr(a) {
			wrote = true
		}
	}
	return wrote
}

// appendAttr writes a, as slog's handlers do: empty attributes are left
// out, a group with no key is inlined, a group whose attributes are all
// empty is left out (one with no attributes at all counts as written).
func (s *state) appendAttr(a slog.Attr) bool {
	a.Value = a.Value.Resolve()
	if a.Key == "" && a.Value.Kind() == slog.KindAny && a.Value.Any() == nil {
		return false // slog's empty Attr
	}
	if a.Value.Kind() == slog.KindAny {
		if src, ok := a.Value.Any().(*slog.Source); ok {
			if src == nil || *src == (slog.Source{}) {
				return false
			}
			a.Value = sourceGroup(src)
		}
	}
	if a.Value.Kind() != slog.KindGroup {
		s.appendKey(a.Key)
		s.appendValue(a.Value)
		return true
	}
	attrs := a.Value.Group()
	if len(attrs) == 0 {
		return true
	}
	pos, sep := len(s.buf), s.sep
	if a.Key != "" {
		s.openGroup(a.Key)
	}
	if !s.appendAttrs(attrs) {
		s.buf, s.sep = s.buf[:pos], sep
		return false
	}
	if a.Key != "" {
		s.closeGroup()
	}
	return true
}

func sourceGroup(src *slog.Source) slog.Value {
	var as []slog.Attr
	if src.Function != "" {
		as = append(as, slog.String("function", src.Function))
	}
	if src.File != "" {
		as = append(as, slog.String("file", src.File))
	}
	if src.Line != 0 {
		as = append(as, slog.Int("line", src.Line))
	}
	return slog.GroupValue(as...)
}

func (s *state) appendValue(v slog.Value) {
	var err error
	switch v.Kind() {
	case slog.KindString:
		s.appendString(v.String())
	case slog.KindInt64:
		s.buf = strconv.AppendInt(s.buf, v.Int64(), 10)
	case slog.KindUint64:
		s.buf = strconv.AppendUint(s.buf, v.Uint64(), 10)
	case slog.KindFloat64:
		err = s.appendFloat(v.Float64())
	case slog.KindBool:
		s.buf = strconv.AppendBool(s.buf, v.Bool())
	case slog.KindDuration:
		err = s.appendFloat(v.Duration().Seconds())
	case slog.KindTime:
		s.appendTime(v.Time())
	case slog.KindAny:
		err = s.appendAny(v.Any())
	default:
		panic(fmt.Sprintf("bad kind: %s", v.Kind()))
	}
	if err != nil {
		s.appendString(fmt.Sprintf("!ERROR:%v", err))
	}
}

// appendAny writes an error as its text and anything else as JSON. Only
// here does formatting run code of the value's own, which may panic.
func (s *state) appendAny(a any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = nil
			// As slog does: a nil pointer whose method panicked is <nil>.
			if rv := reflect.ValueOf(a); rv.Kind() == reflect.Pointer && rv.IsNil() {
				s.appendString("<nil>")
				return
			}
			s.appendString(fmt.Sprintf("!PANIC: %v", r))
		}
	}()
	_, jm := a.(json.Marshaler)
	if e, ok := a.(error); ok && !jm {
		s.appendString(e.Error())
		return nil
	}
	return s.appendMarshal(a)
}

// appendFloat writes f as encoding/json does; NaN and the infinities are
// its error.
func (s *state) appendFloat(f float64) error {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return s.appendMarshal(f)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	s.buf = strconv.AppendFloat(s.buf, f, format, -1, 64)
	if format == 'e' {
		// e-09 to e-9, as encoding/json writes it.
		if n := len(s.buf); n >= 4 && s.buf[n-4] == 'e' && s.buf[n-3] == '-' && s.buf[n-2] == '0' {
			s.buf[n-2] = s.buf[n-1]
			s.buf = s.buf[:n-1]
		}
	}
	return nil
}

var encoders = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
	return e
}}

type encoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

// appendMarshal writes v as json.Marshal would, without HTML escaping.
func (s *state) appendMarshal(v any) error {
	e := encoders.Get().(*encoder)
	defer func() {
		if e.buf.Cap() <= 16<<10 {
			e.buf.Reset()
			encoders.Put(e)
		}
	}()
	if err := e.enc.Encode(v); err != nil {
		return err
	}
	b := e.buf.Bytes()
	s.buf = append(s.buf, b[:len(b)-1]...) // without Encode's newline
	return nil
}

func (s *state) appendTime(t time.Time) {
	if y := t.Year(); y < 0 || y >= 10000 {
		// slog writes this error and the time after it, which is not
		// JSON; the error alone is.
		s.appendString("!ERROR:time.Time year outside of range [0,9999]")
		return
	}
	s.buf = append(s.buf, '"')
	s.buf = t.AppendFormat(s.buf, time.RFC3339Nano)
	s.buf = append(s.buf, '"')
}

func (s *state) appendString(str string) {
	s.buf = jsonstr.AppendSlog(s.buf, str)
}
