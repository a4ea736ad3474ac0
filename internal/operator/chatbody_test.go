package operator

import (
	"bytes"
	"encoding/json"
	"testing"
)

func marshalChatBody(t testing.TB, chatID, text string) []byte {
	t.Helper()
	want, err := json.Marshal(chatBody{ID: chatID, Messages: []chatMessage{{Role: "user", Parts: []chatPart{{Type: "text", Text: text}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return want
}

func TestAppendChatBodyIsWhatJSONMarshalMakes(t *testing.T) {
	tests := []struct{ name, chatID, text string }{
		{"new chat", "", "Push to octo/repo"},
		{"continued", "chat_0123", "CI failed"},
		{"quotes and backslashes", `c"\`, `say "hi" \ bye`},
		{"control characters", "", "a\x00b\x01\x1f\b\f\n\r\t\x7f"},
		{"HTML", "", "<script>alert('x') && y</script>"},
		{"line and paragraph separators", "", "a\u2028b\u2029c"},
		{"invalid UTF-8", "\xff", "ok \xe2\x82 cut \xc0\xaf"},
		{"non-ASCII", "", "日本語 — ünïcödé 🚀"},
		{"empty text", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := appendChatBody(nil, tt.chatID, tt.text)
			if want := marshalChatBody(t, tt.chatID, tt.text); !bytes.Equal(got, want) {
				t.Errorf("appendChatBody = %s\njson.Marshal  = %s", got, want)
			}
		})
	}
}

func FuzzAppendChatBody(f *testing.F) {
	f.Add("", "Push to octo/repo")
	f.Add("chat_1", "a\u2028<b>\x00\xff")
	f.Fuzz(func(t *testing.T, chatID, text string) {
		got := appendChatBody(nil, chatID, text)
		if want := marshalChatBody(t, chatID, text); !bytes.Equal(got, want) {
			t.Fatalf("appendChatBody = %q\njson.Marshal  = %q", got, want)
		}
	})
}
