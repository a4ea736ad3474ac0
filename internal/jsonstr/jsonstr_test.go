package jsonstr

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
)

// slogQuoted is how slog's JSON handler writes s as a value.
func slogQuoted(t testing.TB, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	r := slog.NewRecord(slog.Record{}.Time, slog.LevelInfo, "", 0)
	r.AddAttrs(slog.String("k", s))
	if err := slog.NewJSONHandler(&buf, nil).Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	line := buf.Bytes()
	const prefix = `{"level":"INFO","msg":"","k":`
	if !bytes.HasPrefix(line, []byte(prefix)) {
		t.Fatalf("unexpected slog line %s", line)
	}
	return line[len(prefix) : len(line)-2] // without "}\n"
}

var samples = []string{
	"", "plain", `q"b\`, "\x00\x01\b\f\n\r\t\x1f\x7f", "<a href='x'>&amp;</a>",
	"\u2028\u2029", "\xff\xe2\x82 \xc0\xaf \xed\xa0\x80", "日本語 🚀",
}

func check(t *testing.T, s string) {
	t.Helper()
	want, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := AppendMarshal(nil, s); !bytes.Equal(got, want) {
		t.Errorf("AppendMarshal(%q) = %s, json.Marshal %s", s, got, want)
	}
	if got, want := AppendSlog(nil, s), slogQuoted(t, s); !bytes.Equal(got, want) {
		t.Errorf("AppendSlog(%q) = %s, slog %s", s, got, want)
	}
}

func TestAppendIsWhatTheReferencesWrite(t *testing.T) {
	for _, s := range samples {
		check(t, s)
	}
}

func FuzzAppend(f *testing.F) {
	for _, s := range samples {
		f.Add(s)
	}
	f.Fuzz(check)
}
