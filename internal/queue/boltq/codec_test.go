package boltq

import (
	"bytes"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/queue"
)

func TestMessageRoundTrip(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	for _, m := range []queue.Message{
		{},
		{ID: "m1", Route: "r", Prompt: "p"},
		{
			ID: "0198c5e2", Route: "ci-failures", ConversationKey: "relayd/relayd", Prompt: "CI failed\n☃",
			Source: "github", Delivery: "d1", Event: "workflow_run", EnqueuedAt: at, Attempts: 7,
			NextAttemptAt: at.Add(time.Minute), LastStatus: 503, LastError: "unavailable: try later",
		},
		{ID: "neg", LastStatus: -1},
		{ID: "sup", Route: "pr-checks", ConversationKey: "acme/app", Prompt: "build: success", SupersedeKey: "7/build"},
	} {
		v := encodeMessage(nil, &m)
		got, err := decodeMessage(v)
		if err != nil {
			t.Fatalf("decode %+v: %v", m, err)
		}
		if got != m {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, m)
		}
		if n, e, err := msgTimes(v); err != nil || n != unixNano(m.NextAttemptAt) || e != unixNano(m.EnqueuedAt) {
			t.Fatalf("header: %d %d %v", n, e, err)
		}
	}
}

// FuzzDecodeMessage: decoding arbitrary bytes never panics, and whatever
// decodes re-encodes to the same bytes.
func FuzzDecodeMessage(f *testing.F) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Add(encodeMessage(nil, &queue.Message{ID: "m1", Route: "r1", ConversationKey: "k", Prompt: "hello", EnqueuedAt: at, Attempts: 2, LastStatus: 429, LastError: "rate"}))
	f.Add(encodeMessage(nil, &queue.Message{}))
	f.Add(encodeMessage(nil, &queue.Message{ID: "m2", Route: "r1", Prompt: "p", SupersedeKey: "7/build"}))
	f.Add([]byte{msgV1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, v []byte) {
		m, err := decodeMessage(v)
		if err != nil {
			return
		}
		if again := encodeMessage(nil, &m); !bytes.Equal(again, v) {
			// Non-canonical varints decode too; the decoded message must
			// still survive a second round trip unchanged.
			m2, err := decodeMessage(again)
			if err != nil || m2 != m {
				t.Fatalf("re-encoding changed the message: %+v → %+v (%v)", m, m2, err)
			}
		}
	})
}
