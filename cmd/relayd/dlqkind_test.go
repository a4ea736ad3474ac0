package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/queue"
)

// dlq list tells a dead reply from a dead event in its KIND column.
func TestDeadLettersKindColumn(t *testing.T) {
	now := time.Now()
	var b bytes.Buffer
	printDeadLetters(&b, []queue.DeadLetter{
		{Message: queue.Message{ID: "m1", Route: "ci", Delivery: "d1"}, Failure: queue.Failure{Status: 400, Reason: "bad_request"}, DeadAt: now},
		{Message: queue.Message{ID: "rpl_1", Route: "ci", Delivery: "d2", Kind: queue.KindReply}, Failure: queue.Failure{Status: 404, Reason: "not_found"}, DeadAt: now},
	}, now)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || strings.Fields(lines[0])[1] != "KIND" {
		t.Fatalf("dlq list:\n%s", b.String())
	}
	for i, want := range []string{"event", "reply"} {
		if f := strings.Fields(lines[i+1]); f[1] != want {
			t.Errorf("row %d kind %q, want %q:\n%s", i, f[1], want, b.String())
		}
	}
}
