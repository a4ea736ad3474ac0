package operator

import "encoding/json"

// chatIDKeys are the names under which an answer carries its chat id; the
// first one present wins.
var chatIDKeys = []string{"chatId", "chat_id", "chatID"}

// chatIDOf finds the chat id in a decoded JSON object: at the top level
// under chatIDKeys or one of extra (a JSON answer's "id"), else under
// "messageMetadata" or "data" (stream events). "" when there is none.
func chatIDOf(obj map[string]json.RawMessage, extra ...string) string {
	for _, keys := range [][]string{chatIDKeys, extra} {
		for _, k := range keys {
			if s := str(obj[k]); s != "" {
				return s
			}
		}
	}
	for _, k := range []string{"messageMetadata", "data"} {
		var inner map[string]json.RawMessage
		if json.Unmarshal(obj[k], &inner) == nil {
			for _, k := range chatIDKeys {
				if s := str(inner[k]); s != "" {
					return s
				}
			}
		}
	}
	return ""
}

// chatIDIn finds the chat id in an error body's data (a 409 names the chat
// an earlier attempt with the same Idempotency-Key went to).
func chatIDIn(data map[string]any) string {
	for _, k := range chatIDKeys {
		if s, ok := data[k].(string); ok && s != "" {
			return s
		}
	}
	return ""
}
