package templates

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func render(t *testing.T, text string, data map[string]any) (string, error) {
	t.Helper()
	tm, err := Compile("t", text)
	if err != nil {
		t.Fatalf("Compile(%q): %v", text, err)
	}
	return tm.Render(data)
}

func TestHelpers(t *testing.T) {
	data := map[string]any{
		"s":      "Hello, World",
		"pad":    "  padded \n",
		"ml":     "one\ntwo\nthree",
		"html":   "<a & b>",
		"uni":    "héllo wörld",
		"n":      int64(3),
		"f":      2.0,
		"zero":   int64(0),
		"fzero":  0.0,
		"no":     false,
		"yes":    true,
		"empty":  "",
		"nil":    nil,
		"emap":   map[string]any{},
		"elist":  []any{},
		"list":   []any{"a", int64(2), nil, 1.5, true},
		"strs":   []string{"x", "y"},
		"obj":    map[string]any{"b": int64(2), "a": "x<y", "c": []any{int64(1), nil}},
		"big":    int64(12345678901234567),
		"numstr": "4",
		"t":      time.Date(2024, 2, 3, 4, 5, 6, 0, time.UTC),
		"ts":     "2020-10-05T16:33:24Z",
		"unix":   int64(1700000000),
	}
	tests := []struct {
		name, tmpl, want string
	}{
		// json
		{"json map sorted compact unescaped", `{{ json .obj }}`, `{"a":"x<y","b":2,"c":[1,null]}`},
		{"json pipeline", `{{ .obj | json }}`, `{"a":"x<y","b":2,"c":[1,null]}`},
		{"json string", `{{ json .html }}`, `"<a & b>"`},
		{"json big int exact", `{{ json .big }}`, `12345678901234567`},
		{"json missing", `{{ json .missing }}`, `null`},
		{"toJson alias", `{{ toJson .list }}`, `["a",2,null,1.5,true]`},
		{"prettyjson", `{{ prettyjson .obj }}`, "{\n  \"a\": \"x<y\",\n  \"b\": 2,\n  \"c\": [\n    1,\n    null\n  ]\n}"},
		{"toPrettyJson alias", `{{ .elist | toPrettyJson }}`, `[]`},
		// truncate
		{"truncate cut", `{{ truncate 5 .s }}`, "Hello…"},
		{"truncate pipeline", `{{ .s | truncate 5 }}`, "Hello…"},
		{"truncate exact length", `{{ truncate 12 .s }}`, "Hello, World"},
		{"truncate longer", `{{ truncate 100 .s }}`, "Hello, World"},
		{"truncate runes", `{{ truncate 4 .uni }}`, "héll…"},
		{"truncate zero", `{{ truncate 0 .s }}`, "…"},
		{"truncate negative", `{{ truncate -2 .s }}`, "…"},
		{"truncate count from data", `{{ truncate .n .s }}`, "Hel…"},
		{"truncate float count", `{{ truncate .f .s }}`, "He…"},
		{"truncate numeric text count", `{{ truncate .numstr .s }}`, "Hell…"},
		{"truncate missing", `{{ truncate 3 .missing }}`, ""},
		{"truncate number", `{{ truncate 5 .big }}`, "12345…"},
		// default
		{"default non-empty", `{{ default "d" .s }}`, "Hello, World"},
		{"default missing", `{{ default "d" .missing }}`, "d"},
		{"default nil", `{{ default "d" .nil }}`, "d"},
		{"default empty string", `{{ default "d" .empty }}`, "d"},
		{"default zero int", `{{ default "d" .zero }}`, "d"},
		{"default zero float", `{{ default "d" .fzero }}`, "d"},
		{"default false", `{{ default "d" .no }}`, "d"},
		{"default true", `{{ default "d" .yes }}`, "true"},
		{"default empty map", `{{ default "d" .emap }}`, "d"},
		{"default empty list", `{{ default "d" .elist }}`, "d"},
		{"default number", `{{ default "d" .n }}`, "3"},
		{"default pipeline", `{{ .missing.deeper | default "none" }}`, "none"},
		{"default no value", `{{ default "d" }}`, "d"},
		{"empty", `{{ empty .elist }} {{ empty .list }} {{ empty .missing }}`, "true false true"},
		// join
		{"join any list drops nil", `{{ join ", " .list }}`, "a, 2, 1.5, true"},
		{"join strings", `{{ .strs | join "-" }}`, "x-y"},
		{"join missing", `{{ join "," .missing }}`, ""},
		{"join single string", `{{ join "," .s }}`, "Hello, World"},
		{"join from split", `{{ split "," "a,b,c" | join "+" }}`, "a+b+c"},
		// trim lower upper title
		{"trim", `[{{ trim .pad }}]`, "[padded]"},
		{"lower", `{{ lower .s }}`, "hello, world"},
		{"upper", `{{ .s | upper }}`, "HELLO, WORLD"},
		{"title", `{{ title "hello wide_world foo-bar" }}`, "Hello Wide_world Foo-Bar"},
		{"title unicode", `{{ title .uni }}`, "Héllo Wörld"},
		{"string helpers on missing", `[{{ trim .x }}{{ lower .x }}{{ upper .x }}{{ title .x }}]`, "[]"},
		// indent nindent
		{"indent", `{{ indent 2 .ml }}`, "  one\n  two\n  three"},
		{"indent pipeline", `{{ .ml | indent 1 }}`, " one\n two\n three"},
		{"indent zero", `{{ indent 0 .ml }}`, "one\ntwo\nthree"},
		{"nindent", `x:{{ nindent 2 .ml }}`, "x:\n  one\n  two\n  three"},
		// lines
		{"lines first two", `{{ lines 2 .ml }}`, "one\ntwo"},
		{"lines all", `{{ lines 3 .ml }}`, "one\ntwo\nthree"},
		{"lines more than there are", `{{ lines 10 .ml }}`, "one\ntwo\nthree"},
		{"lines one", `{{ .ml | lines 1 }}`, "one"},
		{"lines zero", `[{{ lines 0 .ml }}]`, "[]"},
		{"lines trailing newline", `[{{ lines 1 "a\n" }}]`, "[a]"},
		{"lines keeps empty lines", `[{{ lines 2 "a\n\nb" }}]`, "[a\n]"},
		// replace contains prefix suffix
		{"replace", `{{ replace "o" "0" .s }}`, "Hell0, W0rld"},
		{"replace pipeline", `{{ .s | replace ", " "-" }}`, "Hello-World"},
		{"contains", `{{ contains "World" .s }} {{ contains "world" .s }}`, "true false"},
		{"contains in if", `{{ if .s | contains "llo" }}yes{{ end }}`, "yes"},
		{"hasPrefix", `{{ hasPrefix "Hell" .s }} {{ hasPrefix "World" .s }}`, "true false"},
		{"hasSuffix", `{{ hasSuffix "World" .s }} {{ .s | hasSuffix "x" }}`, "true false"},
		{"contains missing", `{{ contains "a" .missing }}`, "false"},
		// split
		{"split", `{{ range split ", " .s }}[{{ . }}]{{ end }}`, "[Hello][World]"},
		{"split missing is empty", `{{ range split "," .missing }}[{{ . }}]{{ else }}none{{ end }}`, "none"},
		{"split index", `{{ index (split "/" "octo-org/octo-repo") 1 }}`, "octo-repo"},
		// quote
		{"quote", `{{ quote .s }}`, `"Hello, World"`},
		{"quote escapes", `{{ quote "a\"b\n" }}`, `"a\"b\n"`},
		{"quote several drops nil", `{{ quote .n .nil "x" }}`, `"3" "x"`},
		// first last
		{"first", `{{ first .list }}`, "a"},
		{"last", `{{ last .list }}`, "true"},
		{"first strings", `{{ first .strs }} {{ last .strs }}`, "x y"},
		{"first empty", `[{{ first .elist }}{{ last .elist }}]`, "[]"},
		{"first missing", `[{{ first .missing }}]`, "[]"},
		// toString
		{"toString big", `{{ toString .big }}`, "12345678901234567"},
		{"toString float", `{{ toString 1.5e10 }}`, "15000000000"},
		{"toString nil", `[{{ toString .nil }}]`, "[]"},
		{"toString bool", `{{ toString .yes }}`, "true"},
		{"toString then concat", `{{ printf "%s!" (toString .n) }}`, "3!"},
		// date
		{"date time", `{{ date "2006-01-02 15:04" .t }}`, "2024-02-03 04:05"},
		{"date pipeline", `{{ .t | date "Jan 2" }}`, "Feb 3"},
		{"date RFC 3339 text", `{{ date "Mon Jan 2 2006" .ts }}`, "Mon Oct 5 2020"},
		{"date unix seconds", `{{ date "2006-01-02T15:04:05Z07:00" .unix }}`, "2023-11-14T22:13:20Z"},
		{"date unparseable text as is", `{{ date "2006" .s }}`, "Hello, World"},
		{"date missing", `[{{ date "2006" .missing }}]`, "[]"},
		// lenient index and len
		{"index map", `{{ index .obj "a" }}`, "x<y"},
		{"index nested", `{{ index .obj "c" 0 }}`, "1"},
		{"index out of range", `[{{ index .list 99 }}]`, "[]"},
		{"index missing", `[{{ index .missing "a" 0 }}]`, "[]"},
		{"index int64 from data", `{{ index .list .n }}`, "1.5"},
		{"len", `{{ len .list }} {{ len .s }} {{ len .obj }}`, "5 12 3"},
		{"len missing", `{{ len .missing }}`, "0"},
		{"len in comparison", `{{ if gt (len .list) 2 }}many{{ end }}`, "many"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := render(t, tc.tmpl, data)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestHelperErrors(t *testing.T) {
	data := map[string]any{"s": "text", "obj": map[string]any{"a": int64(1)}, "n": int64(3)}
	tests := []struct {
		name, tmpl, wantErr string
	}{
		{"truncate non-numeric count", `{{ truncate .s .s }}`, "truncate: length not a number"},
		{"indent non-numeric width", `{{ indent "x" .s }}`, "indent: width not a number"},
		{"nindent non-numeric width", `{{ nindent .obj .s }}`, "nindent: width not a number"},
		{"lines non-numeric count", `{{ lines .obj .s }}`, "lines: count not a number"},
		{"index map with number", `{{ index .obj 1 }}`, "map key 1 (int) is not a string"},
		{"index a number", `{{ index .n 1 }}`, "can't index item of type int64"},
		{"len of a number", `{{ len .n }}`, "len of type int64"},
		{"json of a func", `{{ json 1i }}`, "unsupported type"},
		{"comparing missing with a number", `{{ if gt .missing 1 }}{{ end }}`, "at <gt .missing 1>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := render(t, tc.tmpl, data)
			if err == nil {
				t.Fatalf("Render = %q, want an error containing %q", got, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not contain %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "_relayd_") {
				t.Errorf("error %q shows the rewritten template", err)
			}
		})
	}
}

func TestNotANumberIsSentinel(t *testing.T) {
	_, err := render(t, `{{ truncate "x" "y" }}`, nil)
	if !errors.Is(err, errNotNumber) {
		t.Fatalf("err = %v, want errNotNumber in its chain", err)
	}
}

func TestNow(t *testing.T) {
	// Compared to the second around the render, never to a fixed instant.
	before := time.Now().Truncate(time.Second)
	got, err := render(t, `{{ now | date "2006-01-02T15:04:05.999999999Z07:00" }}`, nil)
	after := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	ts, err := time.Parse(time.RFC3339Nano, got)
	if err != nil {
		t.Fatalf("now rendered %q: %v", got, err)
	}
	if ts.Before(before) || ts.After(after) {
		t.Errorf("now = %v, not within [%v, %v]", ts, before, after)
	}
}

func TestFuncs(t *testing.T) {
	a := builtinFuncs
	for _, name := range []string{"json", "prettyjson", "toPrettyJson", "truncate", "default", "join", "trim",
		"lower", "upper", "title", "indent", "nindent", "lines", "replace", "contains", "hasPrefix",
		"hasSuffix", "split", "quote", "first", "last", "toString", "now", "date"} {
		if a[name] == nil {
			t.Errorf("builtinFuncs lacks %q", name)
		}
	}
	for name := range a {
		if strings.HasPrefix(name, "_") {
			t.Errorf("builtinFuncs exposes internal %q", name)
		}
	}
}
