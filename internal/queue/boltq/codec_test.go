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
		{ID: "tgt", Route: "ci", Prompt: "p", ReplyRepo: "acme/app", ReplyNumber: 42},
		{ID: "sha", Route: "ci", Prompt: "p", SupersedeKey: "k", ReplyRepo: "acme/app", ReplySHA: "3484a3f0b8a6a2b1c7d7b4a8e7e2c1d0f9a8b7c6"},
		{ID: "rpl", Route: "ci", ConversationKey: "rpl_1", Prompt: `{"id":"rpl_1"}`, Kind: queue.KindReply, Attempts: 2},
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
	f.Add(encodeMessage(nil, &queue.Message{ID: "m3", Route: "r1", Prompt: "p", Kind: queue.KindReply, ReplyRepo: "a/b", ReplyNumber: 7}))
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
