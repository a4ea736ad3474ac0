package operator

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"unicode/utf8"
)

// sseResult is what relayd needs from a streamed answer.
type sseResult struct {
	ChatID string
	Text   string
}

// parseSSE reads a text/event-stream answer (the API's default when
// x-response-format is missing) and collects the chat id and the reply.
//
// A long turn may stream for minutes, so the stream is read to its end
// (Chat's max_turn bounds how long) while what is kept stays bounded: a
// line or an event's data longer than MaxResponseBytes is an error, and
// deltas past MaxResponseBytes of text are dropped.
//
// It follows the SSE framing rules (data lines joined per event, blank line
// ends an event, ":" comments, CR/LF/CRLF line ends) and is tolerant about
// the payloads:
//
//   - data: [DONE] ends the stream;
//   - JSON events give the chat id from "chatId", "chat_id",
//     "messageMetadata.chatId" or "data.chatId" (first one wins);
//   - {"type":"text-delta","delta":…} (or "textDelta") pieces are
//     concatenated; a full "text" field is used when no deltas came;
//   - an event named "chatId" or "chat" with a plain value gives the id;
//   - anything else is skipped.
//
// The only error is a read error (a stream cut in the middle); a stream
// that simply ends without [DONE] is accepted.
func parseSSE(r io.Reader) (sseResult, error) {
	var (
		st      sseState
		data    bytes.Buffer
		hasData bool
		event   string
		first   = true
	)
	sc := bufio.NewScanner(r)
	// A line longer than the pooled buffer makes the scanner allocate
	// its own; the pooled one goes back as it came.
	buf := lineBufs.Get().(*[]byte)
	defer lineBufs.Put(buf)
	sc.Buffer((*buf)[:0], MaxResponseBytes+1)
	sc.Split(splitLines)

	dispatch := func() (done bool) {
		defer func() { data.Reset(); hasData = false; event = "" }()
		if !hasData {
			return false
		}
		payload := bytes.TrimSuffix(data.Bytes(), []byte("\n"))
		if string(bytes.TrimSpace(payload)) == "[DONE]" {
			return true
		}
		st.event(payload, event)
		return false
	}

	for sc.Scan() {
		line := sc.Bytes()
		if first {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf")) // BOM
			first = false
		}
		if len(line) == 0 {
			if dispatch() {
				return st.finish(), nil
			}
			continue
		}
		if line[0] == ':' {
			continue // comment / keep-alive
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		switch string(field) {
		case "data":
			if data.Len()+len(value) >= MaxResponseBytes {
				return st.finish(), errEventTooLarge
			}
			data.Write(value)
			data.WriteByte('\n')
			hasData = true
		case "event":
			event = string(value)
		}
	}
	err := sc.Err()
	if err == nil {
		dispatch() // a last event without its blank line
	}
	return st.finish(), err
}

// lineBuf is the line buffer a stream starts with; lineBufs keeps them for
// the next answer.
const lineBuf = 4096

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, lineBuf); return &b }}

// sseState is what the events read so far gave.
type sseState struct {
	res      sseResult
	deltas   bytes.Buffer
	full     string
	haveFull bool
}

func (st *sseState) finish() sseResult {
	return finish(st.res, &st.deltas, st.full, st.haveFull)
}

// event takes one event's data. Events as streams write them (a flat
// object of strings) are read without encoding/json; anything else, and
// anything odd in one, goes to slowEvent, which decodes it in full.
func (st *sseState) event(payload []byte, name string) {
	if ev, ok := readFlat(payload); ok {
		if st.res.ChatID == "" {
			st.res.ChatID = ev.chatID()
		}
		st.text(ev.typ, ev.delta, ev.textDelta, ev.text)
		return
	}
	st.slowEvent(payload, name)
}

// slowEvent decodes an event with encoding/json.
func (st *sseState) slowEvent(payload []byte, name string) {
	if st.res.ChatID != "" {
		// The chat id is known: only the text is read.
		var ev sseTextEvent
		if json.Unmarshal(payload, &ev) == nil {
			ev.apply(&st.deltas, &st.full, &st.haveFull)
			return
		}
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(payload, &obj) != nil || obj == nil {
		if (name == "chatId" || name == "chat") && st.res.ChatID == "" {
			st.res.ChatID = string(bytes.TrimSpace(payload))
		}
		return
	}
	if st.res.ChatID == "" {
		st.res.ChatID = chatIDOf(obj)
	}
	st.text(optStr(obj["type"]), optStr(obj["delta"]), optStr(obj["textDelta"]), optStr(obj["text"]))
}

// text takes an event's type and text members (nil: missing): deltas are
// concatenated, a full "text" is kept for when no deltas come.
func (st *sseState) text(typ, delta, textDelta, text []byte) {
	switch {
	case string(typ) == "text-delta":
		if delta != nil {
			addDeltaBytes(&st.deltas, delta)
		} else if textDelta != nil {
			addDeltaBytes(&st.deltas, textDelta)
		}
	case string(typ) == "text" || len(typ) == 0:
		if text != nil {
			st.full, st.haveFull = string(text), true
		} else if delta != nil && len(typ) == 0 {
			addDeltaBytes(&st.deltas, delta)
		}
	}
}

// flatEvent is an event whose members are all strings: the ones relayd
// reads, nil when missing (the last one wins when a key repeats, as with
// encoding/json). Unescaped, they are slices of the payload.
type flatEvent struct {
	typ, delta, textDelta, text []byte
	chatIDs                     [3][]byte // by chatIDKeys
}

func (ev *flatEvent) chatID() string {
	for _, id := range ev.chatIDs {
		if len(id) > 0 {
			return string(id)
		}
	}
	return ""
}

// readFlat reads payload as a JSON object whose values are all strings
// and whose keys have no escapes. ok is false for anything else: another
// value (an object, a number, null), invalid JSON, or a key that
// encoding/json would match to a member relayd reads only by ignoring
// case; the caller then decodes it in full, with the same result.
func readFlat(p []byte) (ev flatEvent, ok bool) {
	i := skipWS(p, 0)
	if i == len(p) || p[i] != '{' {
		return ev, false
	}
	i = skipWS(p, i+1)
	if i < len(p) && p[i] == '}' {
		return ev, skipWS(p, i+1) == len(p)
	}
	for {
		key, next, esc, ok := scanString(p, i)
		if !ok || esc {
			return ev, false
		}
		i = skipWS(p, next)
		if i == len(p) || p[i] != ':' {
			return ev, false
		}
		raw, next, esc, ok := scanString(p, skipWS(p, i+1))
		if !ok {
			return ev, false
		}
		var dst *[]byte
		switch string(key) {
		case "type":
			dst = &ev.typ
		case "delta":
			dst = &ev.delta
		case "textDelta":
			dst = &ev.textDelta
		case "text":
			dst = &ev.text
		case "chatId":
			dst = &ev.chatIDs[0]
		case "chat_id":
			dst = &ev.chatIDs[1]
		case "chatID":
			dst = &ev.chatIDs[2]
		default:
			for _, k := range foldedKeys {
				if bytes.EqualFold(key, k) {
					return ev, false
				}
			}
		}
		if esc || (dst != nil && !utf8.Valid(raw)) {
			// Escapes (and invalid UTF-8, which it replaces) are left to
			// encoding/json, which also checks them in a value not kept.
			var v string
			if json.Unmarshal(p[next-len(raw)-2:next], &v) != nil {
				return ev, false
			}
			if dst != nil {
				*dst = append([]byte{}, v...) // never nil: nil is missing
			}
		} else if dst != nil {
			*dst = raw // never nil: a slice of p
		}
		i = skipWS(p, next)
		if i == len(p) {
			return ev, false
		}
		switch p[i] {
		case ',':
			i = skipWS(p, i+1)
		case '}':
			return ev, skipWS(p, i+1) == len(p)
		default:
			return ev, false
		}
	}
}

// foldedKeys are the keys encoding/json matches to sseTextEvent's fields
// whatever their case.
var foldedKeys = [][]byte{[]byte("type"), []byte("delta"), []byte("textDelta"), []byte("text")}

func skipWS(p []byte, i int) int {
	for i < len(p) && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r') {
		i++
	}
	return i
}

// scanString finds the JSON string starting at p[i]: its raw bytes
// between the quotes, the index after it, and whether it has escapes. ok
// is false when p[i] starts no string or it is not closed, or holds a
// control character.
func scanString(p []byte, i int) (raw []byte, next int, esc, ok bool) {
	if i >= len(p) || p[i] != '"' {
		return nil, 0, false, false
	}
	for j := i + 1; j < len(p); j++ {
		switch c := p[j]; {
		case c == '"':
			return p[i+1 : j], j + 1, esc, true
		case c == '\\':
			esc = true
			j++
		case c < 0x20:
			return nil, 0, false, false
		}
	}
	return nil, 0, false, false
}

// sseTextEvent is the part of a stream event that carries text.
type sseTextEvent struct {
	Type      string  `json:"type"`
	Delta     *string `json:"delta"`
	TextDelta *string `json:"textDelta"`
	Text      *string `json:"text"`
}

// apply does what the map path does with the event's text.
func (ev *sseTextEvent) apply(deltas *bytes.Buffer, full *string, haveFull *bool) {
	switch {
	case ev.Type == "text-delta":
		if ev.Delta != nil {
			addDelta(deltas, *ev.Delta)
		} else if ev.TextDelta != nil {
			addDelta(deltas, *ev.TextDelta)
		}
	case ev.Type == "text" || ev.Type == "":
		if ev.Text != nil {
			*full, *haveFull = *ev.Text, true
		} else if ev.Delta != nil && ev.Type == "" {
			addDelta(deltas, *ev.Delta)
		}
	}
}

var errEventTooLarge = fmt.Errorf("stream event larger than %d bytes", MaxResponseBytes)

// addDelta appends whole deltas while the text stays within
// MaxResponseBytes, so a cap never splits a character.
func addDelta(b *bytes.Buffer, d string) {
	if b.Len()+len(d) <= MaxResponseBytes {
		b.WriteString(d)
	}
}

func addDeltaBytes(b *bytes.Buffer, d []byte) {
	if b.Len()+len(d) <= MaxResponseBytes {
		b.Write(d)
	}
}

func finish(res sseResult, deltas *bytes.Buffer, full string, haveFull bool) sseResult {
	if deltas.Len() > 0 || !haveFull {
		res.Text = deltas.String()
	} else {
		res.Text = full
	}
	return res
}

func str(raw json.RawMessage) string { s, _ := strOK(raw); return s }

// optStr is raw as a string, nil when it is missing or not a string.
func optStr(raw json.RawMessage) []byte {
	if s, ok := strOK(raw); ok {
		return append([]byte{}, s...)
	}
	return nil
}

func strOK(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// splitLines splits on LF, CRLF or a lone CR, as the SSE grammar allows.
func splitLines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if atEOF && len(data) == 0 {
		return 0, nil, nil
	}
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		if data[i] == '\n' {
			return i + 1, data[:i], nil
		}
		if i+1 < len(data) {
			if data[i+1] == '\n' {
				return i + 2, data[:i], nil
			}
			return i + 1, data[:i], nil
		}
		if atEOF {
			return i + 1, data[:i], nil
		}
		return 0, nil, nil // a CR at the end: wait to see whether LF follows
	}
	if atEOF {
		return len(data), data, nil
	}
	return 0, nil, nil
}
