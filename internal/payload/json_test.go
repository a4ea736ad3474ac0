package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/relayd/relayd/internal/samples"
	"github.com/relayd/relayd/internal/xtest"
)

// referenceJSON is what parseJSON must return: encoding/json with
// UseNumber, then integers that fit as int64 and other numbers as float64.
func referenceJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the JSON value")
	}
	if jsonDepth(v) > maxJSONDepth {
		return nil, errTooDeep
	}
	return xtest.Numbers(v), nil
}

// jsonDepth is the nesting of objects and arrays in v.
func jsonDepth(v any) int {
	d := 0
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			d = max(d, jsonDepth(e))
		}
		return d + 1
	case []any:
		for _, e := range x {
			d = max(d, jsonDepth(e))
		}
		return d + 1
	}
	return 0
}

func TestParseJSON(t *testing.T) {
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, tc := range []struct {
		in   string
		want any
		err  bool
	}{
		{in: `{"id": 1234567890123, "n": -5, "f": 1.5, "e": 1e3, "z": -0, "big": 92233720368547758070}`,
			want: map[string]any{"id": int64(1234567890123), "n": int64(-5), "f": 1.5, "e": 1000.0, "z": int64(0), "big": 9.223372036854776e19}},
		{in: `9223372036854775807`, want: int64(math.MaxInt64)},
		{in: `-9223372036854775808`, want: int64(math.MinInt64)},
		{in: `9223372036854775808`, want: 9.223372036854775808e18},
		{in: `1e400`, want: math.Inf(1)},
		{in: ` [true, false, null, "x", [], {}] `, want: []any{true, false, nil, "x", []any{}, map[string]any{}}},
		{in: `"a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00"`, want: "a\"b\\c/d\b\f\n\r\té😀"},
		{in: `"lone \ud800 and \udc00x \ud800\u0041"`, want: "lone \uFFFD and \uFFFDx \uFFFDA"},
		{in: "\"bad \xff utf8 \xe2\x82\"", want: "bad \uFFFD utf8 \uFFFD\uFFFD"},
		{in: "\"ok é\"", want: "ok é"},
		{in: `{"a":1,"a":2}`, want: map[string]any{"a": int64(2)}},
		{in: nest(maxJSONDepth), want: nil},
		{in: nest(maxJSONDepth + 1), err: true},
		{in: `{"a":1} x`, err: true},
		{in: `{"a":1}{}`, err: true},
		{in: ``, err: true},
		{in: `   `, err: true},
		{in: `{"a":}`, err: true},
		{in: `{"a" 1}`, err: true},
		{in: `{"a":1,}`, err: true},
		{in: `[1,]`, err: true},
		{in: `[1 2]`, err: true},
		{in: `{a:1}`, err: true},
		{in: `01`, err: true},
		{in: `1.`, err: true},
		{in: `.5`, err: true},
		{in: `-`, err: true},
		{in: `+1`, err: true},
		{in: `1e`, err: true},
		{in: `1e+`, err: true},
		{in: `tru`, err: true},
		{in: `nul`, err: true},
		{in: `"unterminated`, err: true},
		{in: `"bad \x escape"`, err: true},
		{in: `"bad \u12G4"`, err: true},
		{in: "\"control \x01 char\"", err: true},
		{in: "[\"a\"\n,\t\"b\"\r]", want: []any{"a", "b"}},
	} {
		got, err := parseJSON([]byte(tc.in))
		if tc.err {
			if err == nil {
				t.Errorf("%q: got %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if tc.want == nil && strings.HasPrefix(tc.in, "[[") {
			if jsonDepth(got) != maxJSONDepth {
				t.Errorf("nesting %d: got depth %d", maxJSONDepth, jsonDepth(got))
			}
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q:\n got %#v\nwant %#v", tc.in, got, tc.want)
		}
		ref, err := referenceJSON([]byte(tc.in))
		if err != nil || !reflect.DeepEqual(got, ref) {
			t.Errorf("%q: encoding/json gives %#v, %v", tc.in, ref, err)
		}
	}
}

// The real payloads decode exactly as encoding/json decodes them.
func TestParseJSONSamples(t *testing.T) {
	for _, ev := range samples.GitHubEvents() {
		raw, err := samples.GitHub(ev, "")
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseJSON(raw)
		if err != nil {
			t.Fatalf("%s: %v", ev, err)
		}
		want, err := referenceJSON(raw)
		if err != nil {
			t.Fatalf("%s: reference: %v", ev, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: parseJSON and encoding/json differ", ev)
		}
	}
}

// FuzzParseJSON holds parseJSON to encoding/json: the same value for every
// input both accept, and an error where encoding/json has one.
func FuzzParseJSON(f *testing.F) {
	for _, ev := range samples.GitHubEvents() {
		if raw, err := samples.GitHub(ev, ""); err == nil {
			f.Add(raw)
		}
	}
	for _, s := range []string{
		`{"a":[1,2.5,-3e2,true,null,"x\u00e9\ud83d\ude00"]}`, `"\ud800\u0041"`, "\"\xff\"", `1e999`,
		`-0`, `-0.0`, `[[[[]]]]`, `{"a":1}x`, ` 12 `, `123456789012345678901234567890`, `"\/\b"`, `{}`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := parseJSON(data)
		want, refErr := referenceJSON(data)
		if (err == nil) != (refErr == nil) {
			t.Fatalf("%q: parseJSON error %v, encoding/json error %v", data, err, refErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n got %#v\nwant %#v", data, got, want)
		}
	})
}

// BenchmarkParseBody decodes the 7.3 KB GitHub push sample as ingest does,
// against encoding/json with the number conversion it replaced.
func BenchmarkParseBody(b *testing.B) {
	raw, err := samples.GitHub("push", "")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("relayd", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			// As ingest does: one copy of the body, then the parse.
			if _, err := parseBody(JSON, "application/json", string(raw)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json-usenumber", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			if _, err := referenceJSON(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json-unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			var v map[string]any
			if err := json.Unmarshal(raw, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
