package dispatch_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"

	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/queue"
)

// logKeys returns the keys of each log line with message msg, in order.
func logKeys(t *testing.T, h *harness, msg string) [][]string {
	t.Helper()
	var out [][]string
	for line := range bytes.SplitSeq(h.logs.Bytes(), []byte("\n")) {
		var rec map[string]any
		if json.Unmarshal(line, &rec) != nil || rec["msg"] != msg {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		var keys []string
		depth := 0
		for {
			tok, err := dec.Token()
			if err != nil {
				break
			}
			switch tok {
			case json.Delim('{'):
				depth++
				continue
			case json.Delim('}'):
				depth--
				continue
			}
			if s, ok := tok.(string); ok && depth == 1 && dec.More() {
				keys = append(keys, s)
				if _, err := dec.Token(); err != nil { // the value
					break
				}
			}
		}
		out = append(out, keys)
	}
	return out
}

// The "delivered" line keeps its fields and their order: the message's
// (and a turn's event count) first, then the delivery's.
func TestDeliveredLogLine(t *testing.T) {
	t.Parallel()
	tail := []string{"status", "outcome", "chat_id", "conversation", "attempts", "prompt_bytes", "reply_bytes", "took", "latency"}
	tests := []struct {
		name string
		msgs int
		head []string
	}{
		{name: "one message", msgs: 1, head: []string{"time", "level", "msg", "message_id", "route", "delivery"}},
		{name: "a turn of two", msgs: 2, head: []string{"time", "level", "msg", "message_id", "route", "delivery", "events"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := turnHarness(t, queue.TurnPolicy{MaxEvents: 20}, dispatch.RouteSettings{})
			var batch []queue.Message
			for range tc.msgs {
				batch = append(batch, newMsg("r", "acme/app", "a prompt"))
			}
			h.enqueue(batch...)
			h.start()
			h.settled()
			lines := logKeys(t, h, "delivered")
			if len(lines) != 1 {
				t.Fatalf("%d delivered lines, want 1:\n%s", len(lines), h.logs.Bytes())
			}
			if want := append(slices.Clone(tc.head), tail...); !slices.Equal(lines[0], want) {
				t.Errorf("delivered line's keys\n%v\nwant\n%v", lines[0], want)
			}
			var rec map[string]any
			for _, r := range h.logRecords() {
				if r["msg"] == "delivered" {
					rec = r
				}
			}
			if rec["message_id"] != batch[0].ID || rec["route"] != "r" || rec["delivery"] != batch[0].Delivery ||
				rec["conversation"] != "acme/app" || rec["outcome"] != "delivered" || rec["attempts"] != 1.0 ||
				rec["prompt_bytes"] == 0.0 || rec["chat_id"] == "" {
				t.Errorf("delivered line %v", rec)
			}
		})
	}
}
