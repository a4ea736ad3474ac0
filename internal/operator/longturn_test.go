package operator_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/operator"
	"github.com/relayd/relayd/internal/operator/fake"
)

const longReply = "Deployed three variants and scored them. Variant b wins."

func TestResponseFormatHeaders(t *testing.T) {
	tests := []struct {
		response   string
		wantFormat string
	}{
		{"", ""}, // stream: the API's default, no header
		{operator.ResponseStream, ""},
		{operator.ResponseJSON, "json"},
	}
	for _, tt := range tests {
		t.Run("response="+tt.response, func(t *testing.T) {
			e := newEnv(t, fake.Options{Reply: func(string, string) string { return longReply }}, operator.Options{Response: tt.response})
			resp, err := e.chat(operator.ChatRequest{Text: "hi"})
			if err != nil || resp.Text != longReply || resp.ChatID == "" || resp.Partial {
				t.Fatalf("%+v %v", resp, err)
			}
			h := e.fake.Requests()[0].Header
			if got, ok := h[http.CanonicalHeaderKey("x-response-format")]; tt.wantFormat == "" && ok || tt.wantFormat != "" && (len(got) != 1 || got[0] != tt.wantFormat) {
				t.Fatalf("x-response-format %q, want %q", got, tt.wantFormat)
			}
		})
	}
}

// TestLongTurns runs each shape of a long turn through the real client and
// the fake over HTTP. Durations are short but far apart (a status line is
// given a second to arrive on a loaded machine): the assertions are about
// outcomes, never about speed.
func TestLongTurns(t *testing.T) {
	tests := []struct {
		name     string
		opts     operator.Options
		turn     fake.Turn
		outcome  operator.Outcome
		reason   string
		cause    error  // wrapped by the error, when not nil
		text     string // the text received
		chatSeen bool   // the response names the chat
	}{
		{
			name:    "stream never silent for 3x the timeout succeeds",
			opts:    operator.Options{Timeout: 300 * time.Millisecond},
			turn:    fake.Turn{Steps: 15, Every: 60 * time.Millisecond}, // 900ms in all
			outcome: operator.Delivered, text: longReply, chatSeen: true,
		},
		{
			name:    "silent before the status line is a retryable timeout",
			opts:    operator.Options{Timeout: 100 * time.Millisecond},
			turn:    fake.Turn{Wait: time.Hour},
			outcome: operator.Retry, reason: "timeout", cause: operator.ErrSilence,
		},
		{
			name:    "silent after the status line is partial",
			opts:    operator.Options{Timeout: 100 * time.Millisecond},
			turn:    fake.Turn{Steps: 2, Every: time.Hour},
			outcome: operator.Partial, cause: operator.ErrSilence, chatSeen: true,
		},
		{
			name:    "stream cut in the middle of the text is partial",
			turn:    fake.Turn{CutAfter: 5}, // start, start-step, text-start, two deltas
			outcome: operator.Partial, text: "Deployed three ", chatSeen: true,
		},
		{
			name:    "stream cut before the text is partial",
			turn:    fake.Turn{Steps: 3, CutAfter: 3},
			outcome: operator.Partial, chatSeen: true,
		},
		{
			name:    "a steady stream past max_turn is partial",
			opts:    operator.Options{Timeout: time.Hour, MaxTurn: 200 * time.Millisecond},
			turn:    fake.Turn{Steps: 1000, Every: 20 * time.Millisecond},
			outcome: operator.Partial, cause: operator.ErrTurnTooLong, chatSeen: true,
		},
		{
			name:    "max_turn before the status line is a retryable timeout",
			opts:    operator.Options{Timeout: time.Hour, MaxTurn: 100 * time.Millisecond},
			turn:    fake.Turn{Wait: time.Hour},
			outcome: operator.Retry, reason: "timeout", cause: operator.ErrTurnTooLong,
		},
		{
			name:    "json: a turn longer than the timeout shows nothing and times out",
			opts:    operator.Options{Response: operator.ResponseJSON, Timeout: 100 * time.Millisecond},
			turn:    fake.Turn{Steps: 10, Every: 100 * time.Millisecond},
			outcome: operator.Retry, reason: "timeout", cause: operator.ErrSilence,
		},
		{
			name:    "json: an answer cut halfway is partial",
			opts:    operator.Options{Response: operator.ResponseJSON},
			turn:    fake.Turn{CutAfter: 1},
			outcome: operator.Partial,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, fake.Options{Reply: func(string, string) string { return longReply }}, tt.opts)
			e.fake.FailNext(1, fake.Fault{Turn: &tt.turn})
			resp, err := e.chat(operator.ChatRequest{Text: "deploy the variants", IdempotencyKey: "msg_1"})
			v := operator.Classify(err, false)
			if v.Outcome != tt.outcome || v.Reason != tt.reason {
				t.Fatalf("Classify = %v/%q (%v), want %v/%q", v.Outcome, v.Reason, err, tt.outcome, tt.reason)
			}
			if tt.cause != nil && !errors.Is(err, tt.cause) {
				t.Fatalf("err %v does not wrap %v", err, tt.cause)
			}
			if errors.Is(err, context.Canceled) {
				t.Fatalf("the client's own limit reported as the caller's cancellation: %v", err)
			}
			if resp.Partial != (tt.outcome == operator.Partial) {
				t.Fatalf("Partial = %v, outcome %v", resp.Partial, v.Outcome)
			}
			if tt.outcome == operator.Partial && v.Status != 200 {
				t.Fatalf("partial verdict status %d", v.Status)
			}
			if resp.Text != tt.text {
				t.Fatalf("text %q, want %q", resp.Text, tt.text)
			}
			// The fake took the message in every case: the agent has it.
			var taken string
			for id := range e.fake.Chats() {
				taken = id
			}
			if taken == "" {
				t.Fatal("the fake did not take the message")
			}
			if got := resp.ChatID; tt.chatSeen && got != taken || !tt.chatSeen && got != "" {
				t.Fatalf("chat id %q, taken as %q (seen: %v)", got, taken, tt.chatSeen)
			}
		})
	}
}

// TestSilentTurnRetriedWithSameKey: a turn that got no answer is sent again
// with the same Idempotency-Key, and a 409 then names the chat the first
// attempt went to.
func TestSilentTurnRetriedWithSameKey(t *testing.T) {
	e := newEnv(t, fake.Options{}, operator.Options{Timeout: 100 * time.Millisecond})
	e.fake.FailNext(1, fake.Fault{Turn: &fake.Turn{Wait: time.Hour}})
	req := operator.ChatRequest{Text: "deploy", IdempotencyKey: "msg_7"}
	_, err := e.chat(req)
	if v := operator.Classify(err, false); v.Outcome != operator.Retry {
		t.Fatalf("first attempt %v: %+v", err, v)
	}
	resp, err := e.chat(req)
	v := operator.Classify(err, false)
	if v.Outcome != operator.Duplicate || resp.Status != http.StatusConflict {
		t.Fatalf("second attempt %+v %v: %+v", resp, err, v)
	}
	reqs := e.fake.Requests()
	if len(reqs) != 2 || reqs[0].IdempotencyKey != "msg_7" || reqs[1].IdempotencyKey != "msg_7" {
		t.Fatalf("requests %+v", reqs)
	}
	if resp.ChatID == "" || resp.ChatID != reqs[0].AssignedChatID {
		t.Fatalf("409 chat id %q, first attempt landed in %q", resp.ChatID, reqs[0].AssignedChatID)
	}
}

// TestCallerCancelAfterAnswerBegan: even the caller's own cancellation
// (shutdown) cannot make a begun turn retryable.
func TestCallerCancelAfterAnswerBegan(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Cancel the moment the status line has arrived.
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil {
			cancel()
		}
		return resp, err
	})}
	e := newEnv(t, fake.Options{}, operator.Options{HTTPClient: hc})
	e.fake.FailNext(1, fake.Fault{Turn: &fake.Turn{Steps: 1, Every: time.Hour}})
	resp, err := e.c.Chat(ctx, operator.ChatRequest{Text: "hi"})
	if v := operator.Classify(err, false); v.Outcome != operator.Partial || !resp.Partial {
		t.Fatalf("%+v %v: %+v", resp, err, v)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("%v: the caller's cancellation lost", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestStreamLongerThanCap: a long turn may stream more than
// MaxResponseBytes in all (progress, keep-alives); the reply after it is
// still read. One event larger than the cap is a cut answer, not a reply.
func TestStreamLongerThanCap(t *testing.T) {
	progress := `data: {"type":"tool-output-available","toolCallId":"c","output":"` + strings.Repeat("x", 1000) + `"}` + "\n\n"
	tests := []struct {
		name    string
		body    string
		outcome operator.Outcome
		text    string
	}{
		{"many events", `data: {"type":"start","chatId":"chat_big"}` + "\n\n" +
			strings.Repeat(progress, operator.MaxResponseBytes/len(progress)+100) +
			`data: {"type":"text-delta","delta":"done"}` + "\n\ndata: [DONE]\n\n", operator.Delivered, "done"},
		{"one huge event", `data: {"type":"start","chatId":"chat_big"}` + "\n\n" +
			`data: {"type":"text-delta","delta":"` + strings.Repeat("y", operator.MaxResponseBytes) + `"}` + "\n\n", operator.Partial, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			c := operator.New(operator.Options{BaseURL: srv.URL, APIKey: key})
			resp, err := c.Chat(context.Background(), operator.ChatRequest{Text: "hi"})
			if v := operator.Classify(err, false); v.Outcome != tt.outcome || resp.Text != tt.text || resp.ChatID != "chat_big" {
				t.Fatalf("%v (%v), text %q chat %q", v.Outcome, err, resp.Text, resp.ChatID)
			}
		})
	}
}
