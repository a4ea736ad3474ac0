package fake_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/operator/fake"
)

// TestTurnStreamShape: progress steps come between start and the reply,
// as tool results, and every answer ends with [DONE].
func TestTurnStreamShape(t *testing.T) {
	h := newHarness(t, fake.Options{Reply: func(string, string) string { return "all done" }, Turn: fake.Turn{Steps: 3}})
	r := h.chat("", "work", withoutHeader("x-response-format"))
	if r.err != nil || r.status != 200 {
		t.Fatalf("%d %v", r.status, r.err)
	}
	var types []string
	evs := sseEvents(t, r.body)
	for _, e := range evs[:len(evs)-1] {
		var v struct{ Type string }
		if err := json.Unmarshal([]byte(e), &v); err != nil {
			t.Fatalf("event %q: %v", e, err)
		}
		types = append(types, v.Type)
	}
	want := "start start-step tool-output-available tool-output-available tool-output-available text-start text-delta text-delta text-end finish-step finish"
	if got := strings.Join(types, " "); got != want || evs[len(evs)-1] != "[DONE]" {
		t.Fatalf("events %s / %s\nwant %s", got, evs[len(evs)-1], want)
	}
}

// TestTurnCut: a cut answer ends without [DONE] and with a read error, the
// message is taken all the same, and the record says so.
func TestTurnCut(t *testing.T) {
	tests := []struct {
		name   string
		format reqOpt
	}{
		{"stream", withoutHeader("x-response-format")},
		{"json", withHeader("x-response-format", "json")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, fake.Options{})
			h.f.FailNext(1, fake.Fault{Turn: &fake.Turn{CutAfter: 4}})
			r := h.chat("", "work", tt.format)
			if r.status != 200 || r.err == nil {
				t.Fatalf("status %d err %v: want a 200 answer cut off", r.status, r.err)
			}
			if strings.Contains(string(r.body), "[DONE]") {
				t.Fatalf("cut answer has [DONE]: %s", r.body)
			}
			waitFor(t, func() bool { return !h.f.Requests()[0].End.IsZero() })
			rec := h.f.Requests()[0]
			if rec.Status != 200 || rec.Code != "cut" || rec.AssignedChatID == "" || len(h.f.Chats()) != 1 {
				t.Fatalf("record %+v, chats %v", rec, h.f.Chats())
			}
		})
	}
}

// TestTurnWaitTakesTheMessage: a server silent before its status line has
// taken the message; a client that gives up leaves it taken, and the same
// Idempotency-Key then gets 409 naming the chat.
func TestTurnWaitTakesTheMessage(t *testing.T) {
	h := newHarness(t, fake.Options{})
	h.f.FailNext(1, fake.Fault{Turn: &fake.Turn{Wait: time.Hour}})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r := h.do(ctx, http.MethodPost, "/api/chat", chatBody("", "deploy"), withHeader("Idempotency-Key", "k1"))
	if r.err == nil {
		t.Fatalf("got an answer (%d) from a silent server", r.status)
	}
	waitFor(t, func() bool { return !h.f.Requests()[0].End.IsZero() })
	first := h.f.Requests()[0]
	if first.Status != 0 || first.AssignedChatID == "" {
		t.Fatalf("record %+v", first)
	}
	r = h.chat("", "deploy", withHeader("Idempotency-Key", "k1"))
	if r.status != http.StatusConflict || r.errBody(t).Data["chatId"] != first.AssignedChatID {
		t.Fatalf("retry: %d %s", r.status, r.body)
	}
}

func TestTurnControl(t *testing.T) {
	h := newHarness(t, fake.Options{Turn: fake.Turn{Steps: 1}})
	ctl := func(path, body string) result {
		t.Helper()
		return h.do(context.Background(), http.MethodPost, path, body, withoutHeader("Authorization"))
	}
	for _, bad := range []string{`{"every":"soon"}`, `{"steps":-1}`, `{"wait":"-1s"}`, `{"pace":"1s"}`} {
		if r := ctl("/_fake/turn", bad); r.status != 400 {
			t.Errorf("%s: %d, want 400", bad, r.status)
		}
	}
	if r := ctl("/_fake/turn", `{"cut_after":1}`); r.status != 204 {
		t.Fatalf("set turn: %d %s", r.status, r.body)
	}
	if r := h.chat("", "x", withoutHeader("x-response-format")); r.err == nil || len(sseEvents(t, r.body)) != 1 {
		t.Fatalf("after /_fake/turn: err %v body %s", r.err, r.body)
	}
	// A fault's turn overrides for one answer; reset returns to Options.Turn.
	if r := ctl("/_fake/faults", `{"next":1,"fault":{"turn":{"steps":2,"every":"1ms"}}}`); r.status != 204 {
		t.Fatalf("fault: %d %s", r.status, r.body)
	}
	if r := h.chat("", "x", withoutHeader("x-response-format")); r.err != nil || strings.Count(string(r.body), "tool-output-available") != 2 {
		t.Fatalf("fault turn: err %v body %s", r.err, r.body)
	}
	if r := ctl("/_fake/reset", ""); r.status != 204 {
		t.Fatalf("reset: %d", r.status)
	}
	if r := h.chat("", "x", withoutHeader("x-response-format")); r.err != nil || strings.Count(string(r.body), "tool-output-available") != 1 {
		t.Fatalf("after reset: err %v body %s", r.err, r.body)
	}
	b, err := json.Marshal(fake.Turn{Wait: 2 * time.Second, Steps: 3, Every: time.Second, CutAfter: 4})
	if err != nil || string(b) != `{"wait":"2s","steps":3,"every":"1s","cut_after":4}` {
		t.Fatalf("marshal: %s %v", b, err)
	}
}
