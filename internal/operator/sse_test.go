package operator

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// fakeStream is the stream the fake Operator sends (see package fake).
const fakeStream = `data: {"type":"start","messageId":"msg_1","chatId":"chat_abc123"}

data: {"type":"start-step"}

data: {"type":"text-start","id":"txt_0"}

data: {"type":"text-delta","id":"txt_0","delta":"Created 5 "}

data: {"type":"text-delta","id":"txt_0","delta":"variant instances."}

data: {"type":"text-end","id":"txt_0"}

data: {"type":"finish-step"}

data: {"type":"finish","chatId":"chat_abc123"}

data: [DONE]

`

func TestParseSSE(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		chatID string
		text   string
	}{
		{"fake operator stream", fakeStream, "chat_abc123", "Created 5 variant instances."},
		{"CRLF line ends", strings.ReplaceAll(fakeStream, "\n", "\r\n"), "chat_abc123", "Created 5 variant instances."},
		{"CR line ends", strings.ReplaceAll(fakeStream, "\n", "\r"), "chat_abc123", "Created 5 variant instances."},
		{"no space after colon", "data:{\"type\":\"text-delta\",\"delta\":\"a\"}\n\ndata:{\"chatId\":\"c1\"}\n\n", "c1", "a"},
		{"the JSON answer as one event", `data: {"chatId":"chat_x","text":"whole reply"}` + "\n\n", "chat_x", "whole reply"},
		{"chat_id spelling", `data: {"chat_id":"chat_y"}` + "\n\n", "chat_y", ""},
		{"chat id in message metadata", `data: {"type":"start","messageMetadata":{"chatId":"chat_m"}}` + "\n\n", "chat_m", ""},
		{"chat id in a data part", `data: {"type":"data-chat","data":{"chatId":"chat_d"}}` + "\n\n", "chat_d", ""},
		{"named chatId event", "event: chatId\ndata: chat_e\n\n", "chat_e", ""},
		{"first chat id wins", `data: {"chatId":"first"}` + "\n\n" + `data: {"chatId":"second"}` + "\n\n", "first", ""},
		{"textDelta spelling", `data: {"type":"text-delta","textDelta":"old sdk"}` + "\n\n", "", "old sdk"},
		{"deltas win over a final text", `data: {"type":"text-delta","delta":"ab"}` + "\n\n" + `data: {"type":"text","text":"ab (full)"}` + "\n\n", "", "ab"},
		{"full text when no deltas", `data: {"type":"text","text":"full"}` + "\n\n", "", "full"},
		{"comments and unknown fields skipped", ": keep-alive\nid: 7\nretry: 1000\ndata: {\"type\":\"text-delta\",\"delta\":\"x\"}\n\n", "", "x"},
		{"invalid JSON skipped", "data: {not json\n\ndata: {\"type\":\"text-delta\",\"delta\":\"ok\"}\n\n", "", "ok"},
		{"multi-line data joined", "data: {\"type\":\"text-delta\",\ndata: \"delta\":\"joined\"}\n\n", "", "joined"},
		{"nothing after DONE", "data: {\"type\":\"text-delta\",\"delta\":\"a\"}\n\ndata: [DONE]\n\ndata: {\"type\":\"text-delta\",\"delta\":\"b\"}\n\n", "", "a"},
		{"last event without blank line", "data: {\"type\":\"text-delta\",\"delta\":\"tail\"}", "", "tail"},
		{"BOM at start", "\xef\xbb\xbfdata: {\"chatId\":\"bom\"}\n\n", "bom", ""},
		{"empty stream", "", "", ""},
		{"only DONE", "data: [DONE]\n\n", "", ""},
		{"unicode deltas", `data: {"type":"text-delta","delta":"héllo "}` + "\n\n" + `data: {"type":"text-delta","delta":"wörld ✓"}` + "\n\n", "", "héllo wörld ✓"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSSE(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if got.ChatID != tt.chatID || got.Text != tt.text {
				t.Fatalf("got %+v, want chatId %q text %q", got, tt.chatID, tt.text)
			}
		})
	}
}

func TestParseSSECutStream(t *testing.T) {
	cut := errors.New("connection reset")
	r := io.MultiReader(strings.NewReader(fakeStream[:200]), errReader{cut})
	got, err := parseSSE(r)
	if !errors.Is(err, cut) {
		t.Fatalf("err %v, want the read error", err)
	}
	if got.ChatID != "chat_abc123" {
		t.Fatalf("partial result %+v lost the chat id", got)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func FuzzParseSSE(f *testing.F) {
	f.Add([]byte(fakeStream))
	f.Add([]byte(strings.ReplaceAll(fakeStream, "\n", "\r\n")))
	f.Add([]byte("data: {\"chatId\":\"c\",\"text\":\"t\"}\n\n"))
	f.Add([]byte("event: chatId\ndata: chat_1\n\n: comment\ndata: [DONE]\n\n"))
	f.Add([]byte("data: {\"type\":\"text-delta\",\ndata: \"delta\":\"x\"}\r\r"))
	f.Add([]byte("\xef\xbb\xbfdata:{\"messageMetadata\":{\"chatId\":\"m\"}}"))
	f.Add([]byte("data\ndata:\n\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := parseSSE(bytes.NewReader(in))
		if err != nil {
			t.Fatalf("in-memory stream gave a read error: %v", err)
		}
		// JSON may turn one invalid byte into U+FFFD (3 bytes), never more.
		if len(got.Text) > 3*len(in) || len(got.ChatID) > 3*len(in) {
			t.Fatalf("result larger than the input: %+v", got)
		}
		if utf8.Valid(in) && !utf8.ValidString(got.Text) {
			t.Fatalf("valid input gave invalid UTF-8 text %q", got.Text)
		}
		// Line ends are framing only: LF and CRLF must parse the same.
		if !bytes.Contains(in, []byte("\r")) {
			crlf, err := parseSSE(bytes.NewReader(bytes.ReplaceAll(in, []byte("\n"), []byte("\r\n"))))
			if err != nil || crlf != got {
				t.Fatalf("LF gave %+v, CRLF gave %+v (%v)", got, crlf, err)
			}
		}
		// Deterministic, also when read a byte at a time.
		again, _ := parseSSE(&oneByteReader{b: in})
		if again != got {
			t.Fatalf("byte-wise read gave %+v, whole read %+v", again, got)
		}
	})
}

type oneByteReader struct{ b []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}

// flatPayloads are event payloads for the comparison of readFlat with a
// full decode: the shapes streams write, and the odd ones it must leave
// to encoding/json.
var flatPayloads = []string{
	`{"type":"text-delta","id":"txt_0","delta":"Hello "}`,
	`{"type":"start","messageId":"msg_1","chatId":"chat_abc123"}`,
	`{"type":"finish","chatId":"chat_abc123"}`,
	`{"type":"text-start","id":"txt_0"}`,
	`{"type":"text-delta","id":"t","delta":"a \"quoted\" \\ word\n\u00e9"}`,
	`{"type":"text-delta","delta":""}`,
	`{"type":"text-delta","meta":{"delta":"inner"}}`,
	`{"type":"text-delta","delta":"a","extra":1}`,
	` { "type" : "text-delta" , "delta" : "spaced" } `,
	`{"type":"text-delta","textDelta":"old sdk"}`,
	`{"type":"text","text":"full"}`,
	`{"text":"whole reply","chat_id":"c2"}`,
	`{"delta":"no type"}`,
	`{"chatID":"c3","chatId":"","chat_id":"c4"}`,
	`{"type":"text-delta","Delta":"case"}`,
	`{"TYPE":"text-delta","delta":"case"}`,
	`{"type":"text-delta","delta":"a","delta":"b"}`,
	`{"type":"text-delta","delta":null}`,
	`{"type":"text-delta","delta":"bad \x escape"}`,
	`{"type":"text-delta","note":"bad \q","delta":"x"}`,
	`{"type":"text-delta","delta":"a\"}`,
	`{"type":"text-delta","delta":"invalid ÿ utf-8"}`,
	"{\"type\":\"text-delta\",\"delta\":\"control \x01\"}",
	`{"ty\u0070e":"text-delta","delta":"escaped key"}`,
	`{"type":"text-delta","delta":"x"} trailing`,
	`{"type":"text-delta","delta":"x",}`,
	`{}`,
	`{`,
	`[]`,
	`"text"`,
	`null`,
}

// readFlat gives what a full decode gives, or leaves the payload to it.
func TestReadFlatAgreesWithFullDecode(t *testing.T) {
	flat := 0
	for _, p := range flatPayloads {
		if checkFlat(t, []byte(p)) {
			flat++
		}
	}
	if flat < 10 {
		t.Errorf("readFlat read %d of the payloads; the shapes streams write must not need a full decode", flat)
	}
}

func FuzzReadFlat(f *testing.F) {
	for _, p := range flatPayloads {
		f.Add([]byte(p))
	}
	f.Fuzz(func(t *testing.T, p []byte) { checkFlat(t, p) })
}

// checkFlat compares the fast and the full read of payload, with the chat
// id still unknown and known, and reports whether the fast read took it.
func checkFlat(t *testing.T, p []byte) bool {
	t.Helper()
	_, ok := readFlat(p)
	for _, known := range []string{"", "chat_known"} {
		var fast, full sseState
		fast.res.ChatID, full.res.ChatID = known, known
		fast.event(p, "")
		full.slowEvent(p, "")
		if fast.finish() != full.finish() || fast.haveFull != full.haveFull {
			t.Errorf("payload %q (chat id %q): read fast %+v, decoded %+v", p, known, fast.finish(), full.finish())
		}
	}
	return ok
}

// BenchmarkParseSSE reads a stream as the fake Operator writes one: a
// reply of twenty words, one text delta each.
func BenchmarkParseSSE(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`data: {"type":"start","messageId":"msg_1","chatId":"chat_abc123"}` + "\n\n" +
		`data: {"type":"start-step"}` + "\n\n" + `data: {"type":"text-start","id":"txt_0"}` + "\n\n")
	for i := range 20 {
		fmt.Fprintf(&sb, "data: {\"type\":\"text-delta\",\"id\":\"txt_0\",\"delta\":\"word%d \"}\n\n", i)
	}
	sb.WriteString(`data: {"type":"text-end","id":"txt_0"}` + "\n\n" + `data: {"type":"finish-step"}` + "\n\n" +
		`data: {"type":"finish","chatId":"chat_abc123"}` + "\n\n" + "data: [DONE]\n\n")
	stream := sb.String()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseSSE(strings.NewReader(stream)); err != nil {
			b.Fatal(err)
		}
	}
}
