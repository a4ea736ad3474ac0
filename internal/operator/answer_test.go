package operator

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestReadChatForms covers answer forms the fake does not produce: other
// spellings of the chat id and an X-Chat-Id header.
func TestReadChatForms(t *testing.T) {
	tests := []struct {
		name, ct, header, body string
		chatID, text           string
	}{
		{"chatId", "application/json", "", `{"chatId":"c1","text":"t"}`, "c1", "t"},
		{"chat_id", "application/json", "", `{"chat_id":"c2","text":"t"}`, "c2", "t"},
		{"id", "application/json", "", `{"id":"c3"}`, "c3", ""},
		{"header with empty body", "", "c4", ``, "c4", ""},
		{"body wins over header", "application/json", "hdr", `{"chatId":"c5"}`, "c5", ""},
		{"header with SSE lacking an id", "text/event-stream; charset=utf-8", "c6", "data: {\"type\":\"text-delta\",\"delta\":\"x\"}\n\n", "c6", "x"},
		{"JSON without content type", "", "", `{"chatId":"c7","text":"t"}`, "c7", "t"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(tt.body))}
			if tt.ct != "" {
				resp.Header.Set("Content-Type", tt.ct)
			}
			if tt.header != "" {
				resp.Header.Set("X-Chat-Id", tt.header)
			}
			got, err := readChat(resp)
			if err != nil || got.ChatID != tt.chatID || got.Text != tt.text {
				t.Fatalf("got %+v %v, want %q %q", got, err, tt.chatID, tt.text)
			}
		})
	}
}
