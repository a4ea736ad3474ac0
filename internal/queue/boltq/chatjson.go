package boltq

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/relayd/relayd/internal/jsonstr"
	"github.com/relayd/relayd/internal/queue"
)

// appendChat appends json.Marshal(chat) to b, byte for byte, written by
// hand: a conversation's record is encoded on every ack. Times whose
// encoding json.Marshal might refuse (years outside 0–9999, offsets that
// are not whole minutes or past a day) go to json.Marshal, which says why.
func appendChat(b []byte, chat *queue.Chat) ([]byte, error) {
	if !plainTimes(chat) {
		js, err := json.Marshal(chat)
		return append(b, js...), err
	}
	b = append(b, `{"route":`...)
	b = jsonstr.AppendMarshal(b, chat.Route)
	b = append(b, `,"conversation_key":`...)
	b = jsonstr.AppendMarshal(b, chat.ConversationKey)
	b = append(b, `,"chat_id":`...)
	b = jsonstr.AppendMarshal(b, chat.ChatID)
	b = append(b, `,"started_at":`...)
	b = appendTime(b, chat.StartedAt)
	b = append(b, `,"messages":`...)
	b = strconv.AppendInt(b, int64(chat.Messages), 10)
	b = append(b, `,"updated_at":`...)
	b = appendTime(b, chat.UpdatedAt)
	if len(chat.Turns) > 0 {
		b = append(b, `,"turns":[`...)
		for i, t := range chat.Turns {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendTime(b, t)
		}
		b = append(b, ']')
	}
	if chat.Waiting != nil {
		b = append(b, `,"waiting":`...)
		b = strconv.AppendInt(b, int64(*chat.Waiting), 10)
	}
	if chat.LimitedUntil != nil {
		b = append(b, `,"limited_until":`...)
		b = appendTime(b, *chat.LimitedUntil)
	}
	return append(b, '}'), nil
}

// plainTimes reports whether every time in chat is plain.
func plainTimes(chat *queue.Chat) bool {
	if !plainTime(chat.StartedAt) || !plainTime(chat.UpdatedAt) || (chat.LimitedUntil != nil && !plainTime(*chat.LimitedUntil)) {
		return false
	}
	for _, t := range chat.Turns {
		if !plainTime(t) {
			return false
		}
	}
	return true
}

// plainTime is a time time.Time.MarshalJSON writes without complaint.
func plainTime(t time.Time) bool {
	if y := t.Year(); y < 0 || y > 9999 {
		return false
	}
	_, offset := t.Zone()
	return offset%60 == 0 && offset > -24*3600 && offset < 24*3600
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}
