package operator

import (
	"bytes"
	"encoding/json"
	"errors"
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

// The fast read of a text delta agrees with a full decode, and leaves
// every shape it does not know to it.
func TestTextDelta(t *testing.T) {
	tests := []struct {
		payload string
		want    string
		ok      bool
	}{
		{`{"type":"text-delta","id":"txt_0","delta":"Hello "}`, "Hello ", true},
		{`{"type":"text-delta","id":"t","delta":"a \"quoted\" \\ word\n\u00e9"}`, "a \"quoted\" \\ word\né", true},
		{`{"type":"text-delta","delta":""}`, "", true},
		{`{"type":"text-delta","meta":{"delta":"inner"}}`, "", false},                     // not the outer object's
		{`{"type":"text-delta","delta":"a","extra":1}`, "", false},                        // delta not last
		{`{"type": "text-delta","delta":"a"}`, "", false},                                 // spaced: full decode
		{`{"type":"text-delta-x","delta":"a"}`, "", false},                                // another type
		{`{"type":"text-delta","x":{"y":"z"},"delta":"a\"}`, "", false},                   // unterminated
		{`{"type":"text-delta","note":"say ,\"delta\":\"no","delta":"yes"}`, "yes", true}, // key text inside a string
	}
	for _, tt := range tests {
		got, ok := textDelta([]byte(tt.payload))
		if ok != tt.ok || got != tt.want {
			t.Errorf("textDelta(%s) = %q, %v; want %q, %v", tt.payload, got, ok, tt.want, tt.ok)
		}
		if ok {
			var full struct{ Delta string }
			if err := json.Unmarshal([]byte(tt.payload), &full); err != nil || full.Delta != got {
				t.Errorf("textDelta(%s) = %q, a full decode says %q (%v)", tt.payload, got, full.Delta, err)
			}
		}
	}
}
