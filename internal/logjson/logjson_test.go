package logjson

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net"
	"testing"
	"time"
)

// secondsAttr is what the slog handler needs to write as Handler does.
func secondsAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.Float64Value(a.Value.Duration().Seconds())
	}
	return a
}

// pair is the same chain of WithAttrs and WithGroup on Handler and on
// slog's JSON handler.
type pair struct {
	got, want   slog.Handler
	gotW, wantW *bytes.Buffer
}

func newPair(level slog.Level) *pair {
	p := &pair{gotW: new(bytes.Buffer), wantW: new(bytes.Buffer)}
	p.got = New(p.gotW, level)
	p.want = slog.NewJSONHandler(p.wantW, &slog.HandlerOptions{Level: level, ReplaceAttr: secondsAttr})
	return p
}

func (p *pair) withAttrs(as []slog.Attr) {
	p.got, p.want = p.got.WithAttrs(as), p.want.WithAttrs(as)
}

func (p *pair) withGroup(name string) {
	p.got, p.want = p.got.WithGroup(name), p.want.WithGroup(name)
}

func (p *pair) check(t *testing.T, r slog.Record) {
	t.Helper()
	ctx := context.Background()
	if g, w := p.got.Enabled(ctx, r.Level), p.want.Enabled(ctx, r.Level); g != w {
		t.Fatalf("Enabled(%v) = %v, slog says %v", r.Level, g, w)
	}
	p.gotW.Reset()
	p.wantW.Reset()
	errG, errW := p.got.Handle(ctx, r.Clone()), p.want.Handle(ctx, r.Clone())
	if (errG == nil) != (errW == nil) {
		t.Fatalf("Handle error %v, slog's %v", errG, errW)
	}
	if !json.Valid(p.wantW.Bytes()) {
		// slog drops the comma after a group whose attributes all turn out
		// empty, and writes a time past year 9999 after its error; Handler
		// writes the comma, and the error alone.
		if !json.Valid(p.gotW.Bytes()) {
			t.Fatalf("line is not JSON: %s", p.gotW.Bytes())
		}
		return
	}
	if !bytes.Equal(p.gotW.Bytes(), p.wantW.Bytes()) {
		t.Fatalf("line differs from slog's\n got: %s\nwant: %s", p.gotW.Bytes(), p.wantW.Bytes())
	}
}

type valuer struct{ v slog.Value }

func (v valuer) LogValue() slog.Value { return v.v }

type marshaler struct{}

func (marshaler) MarshalJSON() ([]byte, error) { return []byte(`{"b": [1, 2]}`), nil }

type jsonError struct{}

func (jsonError) Error() string                { return "as error" }
func (jsonError) MarshalJSON() ([]byte, error) { return []byte(`"as json"`), nil }

type stringer struct{ p *int }

func (s *stringer) MarshalJSON() ([]byte, error) { return []byte{byte('0' + *s.p)}, nil }

var when = time.Date(2026, 11, 30, 4, 45, 12, 123456789, time.FixedZone("x", 3600))

// values covers every kind and the special cases of slog's handler.
var values = []slog.Value{
	slog.StringValue("plain"),
	slog.StringValue("esc \" \\ \n\r\t\x00\x1f <a&b> \u2028\u2029 \xff 日本"),
	slog.StringValue(""),
	slog.Int64Value(-42),
	slog.Int64Value(math.MaxInt64),
	slog.Uint64Value(math.MaxUint64),
	slog.Float64Value(0),
	slog.Float64Value(1.5),
	slog.Float64Value(-1e-7),
	slog.Float64Value(1e21),
	slog.Float64Value(123456789.125),
	slog.Float64Value(math.NaN()),
	slog.Float64Value(math.Inf(-1)),
	slog.BoolValue(true),
	slog.DurationValue(2180 * time.Microsecond),
	slog.DurationValue(0),
	slog.DurationValue(-time.Nanosecond),
	slog.DurationValue(90 * time.Minute),
	slog.TimeValue(when),
	slog.TimeValue(time.Time{}),
	slog.TimeValue(time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)),
	slog.AnyValue(errors.New("boom <x>")),
	slog.AnyValue(jsonError{}),
	slog.AnyValue(marshaler{}),
	slog.AnyValue(map[string]any{"k": []int{1, 2}, "h": "<&>"}),
	slog.AnyValue(net.IPv4(10, 0, 0, 1)),
	slog.AnyValue(nil),
	slog.AnyValue([]string{"a"}),
	slog.AnyValue(func() {}),
	slog.AnyValue((*stringer)(nil)),
	slog.AnyValue(&slog.Source{Function: "f", File: "a.go", Line: 3}),
	slog.AnyValue(&slog.Source{}),
	slog.AnyValue(valuer{slog.DurationValue(time.Second)}),
	slog.AnyValue(valuer{slog.GroupValue(slog.Int("in", 1))}),
	slog.GroupValue(),
	slog.GroupValue(slog.Attr{}),
	slog.GroupValue(slog.Int("a", 1), slog.Duration("d", time.Millisecond)),
	slog.GroupValue(slog.Group("", slog.String("inl", "x")), slog.Group("e")),
}

var keys = []string{"k", "", "we\"ird\n", "time", "msg"}

func attrOf(n int) slog.Attr {
	return slog.Attr{Key: keys[n%len(keys)], Value: values[(n/len(keys))%len(values)]}
}

func TestHandlerWritesWhatSlogWrites(t *testing.T) {
	// Every value under every key, alone and in a group.
	for n := range len(keys) * len(values) {
		a := attrOf(n)
		p := newPair(slog.LevelInfo)
		r := slog.NewRecord(when, slog.LevelWarn, "one attr", 0)
		r.AddAttrs(a)
		p.check(t, r)
		p.withGroup("g")
		p.check(t, r)
		p.withAttrs([]slog.Attr{a})
		p.check(t, r)
	}
}

func TestHandlerLevelsGroupsAndEmptyRecords(t *testing.T) {
	p := newPair(slog.LevelInfo)
	for _, lv := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn + 1, slog.LevelError, slog.LevelError + 8} {
		p.check(t, slog.NewRecord(when, lv, "level", 0))
	}
	p.check(t, slog.NewRecord(time.Time{}, slog.LevelInfo, "no time \"quoted\"", 0))
	p.withGroup("a")
	p.check(t, slog.NewRecord(when, slog.LevelInfo, "group without attrs", 0))
	p.withAttrs([]slog.Attr{slog.Group("empty")})
	p.check(t, slog.NewRecord(when, slog.LevelInfo, "only an empty group added", 0))
	p.withAttrs([]slog.Attr{{}, slog.Group("g", slog.Attr{})})
	p.check(t, slog.NewRecord(when, slog.LevelInfo, "nothing written by WithAttrs", 0))
	p.withAttrs([]slog.Attr{slog.String("route", "pushes")})
	p.withGroup("b")
	p.withGroup("")
	r := slog.NewRecord(when, slog.LevelInfo, "deep", 0)
	r.AddAttrs(slog.Attr{}, slog.Group("x"))
	p.check(t, r)
	r.AddAttrs(slog.Int("n", 1))
	p.check(t, r)
	r = slog.NewRecord(when, slog.LevelInfo, "only empties", 0)
	r.AddAttrs(slog.Attr{}, slog.Group("g", slog.Attr{}))
	p.check(t, r)
}

// A group whose attributes are all empty is left out, and the next
// attribute still gets its comma (slog's handler drops it).
func TestHandlerKeepsTheCommaAfterALeftOutGroup(t *testing.T) {
	var w bytes.Buffer
	r := slog.NewRecord(when, slog.LevelInfo, "m", 0)
	r.AddAttrs(slog.Group("g", slog.Attr{}), slog.Int("n", 1))
	if err := New(&w, nil).Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2026-11-30T04:45:12.123456789+01:00","level":"INFO","msg":"m","n":1}` + "\n"
	if w.String() != want {
		t.Fatalf("got  %s want %s", w.String(), want)
	}
}

func TestHandlerHandlesMoreAttrsThanARecordInlines(t *testing.T) {
	p := newPair(slog.LevelInfo)
	p.withAttrs([]slog.Attr{slog.String("route", "pushes"), slog.String("message_id", "01J")})
	r := slog.NewRecord(when, slog.LevelInfo, "delivered", 0)
	for i := range 14 {
		r.AddAttrs(attrOf(i * 7))
	}
	p.check(t, r)
}

func FuzzHandler(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{2, 2, 40, 1, 3, 200, 17, 0, 0, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		p := newPair(slog.LevelInfo)
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i]%4, int(ops[i+1])
			switch op {
			case 0:
				p.withGroup(keys[arg%len(keys)])
			case 1:
				p.withAttrs([]slog.Attr{attrOf(arg), attrOf(arg + 11)})
			default:
				r := slog.NewRecord(when, slog.Level(arg%16-4), "m", 0)
				for j := range arg % 9 {
					r.AddAttrs(attrOf(arg*3 + j))
				}
				p.check(t, r)
			}
		}
	})
}

func BenchmarkDeliveredLine(b *testing.B) {
	secs := func(w *bytes.Buffer) slog.Handler {
		return slog.NewJSONHandler(w, &slog.HandlerOptions{ReplaceAttr: secondsAttr})
	}
	own := func(w *bytes.Buffer) slog.Handler { return New(w, nil) }
	for _, c := range []struct {
		name string
		make func(*bytes.Buffer) slog.Handler
	}{{"slog+ReplaceAttr", secs}, {"logjson", own}} {
		b.Run(c.name, func(b *testing.B) {
			var w bytes.Buffer
			l := slog.New(c.make(&w))
			base := []slog.Attr{slog.String("route", "pushes"), slog.String("message_id", "01JXXXXXXXXXXXXXXXXXXXXXXX"),
				slog.String("delivery", "dsp-00001234"), slog.String("source", "github"), slog.String("event", "push")}
			b.ReportAllocs()
			for b.Loop() {
				w.Reset()
				attrs := append(base[:len(base):len(base)],
					slog.Int("status", 200), slog.String("outcome", "delivered"), slog.String("chat_id", "chat_0123456789abcdef"),
					slog.String("conversation", "octo/repo-0001"), slog.Int("attempts", 1),
					slog.Int("prompt_bytes", 180), slog.Int("reply_bytes", 80),
					slog.Duration("took", 1234*time.Microsecond), slog.Duration("latency", 2*time.Second))
				l.LogAttrs(context.Background(), slog.LevelInfo, "delivered", attrs...)
			}
		})
	}
}
