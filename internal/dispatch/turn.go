package dispatch

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/relayd/relayd/internal/queue"
)

// TurnRenderer renders a turn of several events (a route's
// batch_template) for a conversation.
type TurnRenderer func(conversation string, msgs []queue.Message) (string, error)

// TurnLimit is the loop guard: at most Turns turns per Per per
// conversation; past it the conversation waits for the window.
type TurnLimit struct {
	Turns int
	Per   time.Duration
}

// TurnText is the text of a turn: a single event's prompt alone; several
// rendered by r, or when r is nil (or fails, reported in err) as
// "N events:" and the prompts separated by a line "---".
func TurnText(r TurnRenderer, conversation string, msgs []queue.Message) (text string, err error) {
	switch len(msgs) {
	case 0:
		return "", nil
	case 1:
		return msgs[0].Prompt, nil
	}
	if r != nil {
		if text, err = r(conversation, msgs); err == nil {
			return text, nil
		}
	}
	return plainTurn(msgs), err
}

func plainTurn(msgs []queue.Message) string {
	n := len(msgs) * 5
	for _, m := range msgs {
		n += len(m.Prompt)
	}
	var b strings.Builder
	b.Grow(n + 16)
	b.WriteString(strconv.Itoa(len(msgs)))
	b.WriteString(" events:\n")
	for i, m := range msgs {
		if i > 0 {
			b.WriteString("\n---\n")
		}
		b.WriteString(m.Prompt)
	}
	return b.String()
}

// TurnFits is the budget check a queue applies while it forms a turn:
// the turn's text is at most maxBytes (<= 0: no budget).
func TurnFits(r TurnRenderer, maxBytes int) func([]queue.Message) bool {
	return func(msgs []queue.Message) bool {
		if maxBytes <= 0 || len(msgs) <= 1 {
			return true
		}
		var conv string
		if len(msgs) > 0 {
			conv = msgs[0].ConversationKey
		}
		text, _ := TurnText(r, conv, msgs)
		return len(text) <= maxBytes
	}
}

// TurnKey is the Idempotency-Key of a turn: the message id for one
// message; for several, a digest of their ids, so a turn formed again
// with other messages is not taken for the one sent before.
func TurnKey(msgs []queue.Message) string {
	if len(msgs) == 1 {
		return msgs[0].ID
	}
	h := sha256.New()
	for _, m := range msgs {
		h.Write([]byte(m.ID))
		h.Write([]byte{0})
	}
	return "turn-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// limitedUntil reports when the turn limit lets the conversation have its
// next turn, or the zero time when it may have one now.
func limitedUntil(tl *TurnLimit, st queue.ChatState, now time.Time) time.Time {
	if tl == nil {
		return time.Time{}
	}
	return st.NextTurnAt(tl.Turns, tl.Per, now)
}

// withTurn records a turn at now, keeping only the window's.
func withTurn(tl *TurnLimit, st queue.ChatState, now time.Time) queue.ChatState {
	recent := st.TurnsSince(now.Add(-tl.Per))
	if len(recent) >= tl.Turns {
		recent = recent[len(recent)-tl.Turns+1:]
	}
	st.Turns = append(append(make([]time.Time, 0, len(recent)+1), recent...), now.UTC())
	return st
}
