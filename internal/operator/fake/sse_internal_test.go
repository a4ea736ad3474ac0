package fake

import (
	"encoding/json"
	"testing"
)

// appendEvent writes the bytes json.Marshal writes, escapes included.
func TestAppendEventMatchesJSON(t *testing.T) {
	t.Parallel()
	for _, ev := range []sseEvent{
		{Type: "start", MessageID: "msg_1", ChatID: "chat_abc"},
		{Type: "start-step"},
		{Type: "text-delta", ID: "txt_0", Delta: "Created 5 "},
		{Type: "text-delta", ID: "txt_0", Delta: "quote \" backslash \\ <tag> & \n tab\t é ✓ \u2028 \x7f \xff"},
		{Type: "tool-output-available", ToolCallID: "call_1", Output: &sseStep{Step: 1, Of: 3, Status: "done"}},
		{Type: "finish", ChatID: "chat_abc"},
		{},
	} {
		want, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendEvent(nil, &ev); string(got) != string(want) {
			t.Errorf("appendEvent(%+v) = %s, want %s", ev, got, want)
		}
	}
}
