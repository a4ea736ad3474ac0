package operator

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
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
		res      sseResult
		deltas   bytes.Buffer
		full     string
		haveFull bool
		data     bytes.Buffer
		hasData  bool
		event    string
		first    = true
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxResponseBytes+1)
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
		if res.ChatID != "" {
			// The chat id is known: the rest of the stream is mostly text
			// deltas, read without decoding the whole event.
			if d, ok := textDelta(payload); ok {
				addDelta(&deltas, d)
				return false
			}
			var ev sseTextEvent
			if json.Unmarshal(payload, &ev) == nil {
				ev.apply(&deltas, &full, &haveFull)
				return false
			}
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(payload, &obj) != nil || obj == nil {
			if (event == "chatId" || event == "chat") && res.ChatID == "" {
				res.ChatID = string(bytes.TrimSpace(payload))
			}
			return false
		}
		if res.ChatID == "" {
			res.ChatID = chatIDOf(obj)
		}
		typ := str(obj["type"])
		switch {
		case typ == "text-delta":
			if d, ok := strOK(obj["delta"]); ok {
				addDelta(&deltas, d)
			} else {
				addDelta(&deltas, str(obj["textDelta"]))
			}
		case typ == "text" || typ == "":
			if t, ok := strOK(obj["text"]); ok {
				full, haveFull = t, true
			} else if d, ok := strOK(obj["delta"]); ok && typ == "" {
				addDelta(&deltas, d)
			}
		}
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
				return finish(res, &deltas, full, haveFull), nil
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
				return finish(res, &deltas, full, haveFull), errEventTooLarge
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
	return finish(res, &deltas, full, haveFull), err
}

var (
	textDeltaHead = []byte(`{"type":"text-delta",`)
	deltaMember   = []byte(`,"delta":"`)
)

// textDelta reads the delta of an event written as streams write one,
// {"type":"text-delta",…,"delta":"…"} without spaces and with the delta
// last, decoding only the delta string. ok is false for any other shape,
// which the caller then decodes in full.
func textDelta(payload []byte) (string, bool) {
	if !bytes.HasPrefix(payload, textDeltaHead) || !bytes.HasSuffix(payload, []byte(`"}`)) {
		return "", false
	}
	open := bytes.LastIndex(payload, deltaMember)
	if open < 0 {
		return "", false
	}
	open += len(deltaMember) - 1 // the string's opening quote
	closing := -1
	for k := open + 1; k < len(payload); k++ {
		if payload[k] == '\\' {
			k++
			continue
		}
		if payload[k] == '"' {
			closing = k
			break
		}
	}
	// The delta's string must end right before the object's last brace:
	// then it is a member of the outermost object, not of one inside it.
	if closing != len(payload)-2 || !json.Valid(payload) {
		return "", false
	}
	var d string
	if json.Unmarshal(payload[open:closing+1], &d) != nil {
		return "", false
	}
	return d, true
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

func finish(res sseResult, deltas *bytes.Buffer, full string, haveFull bool) sseResult {
	if deltas.Len() > 0 || !haveFull {
		res.Text = deltas.String()
	} else {
		res.Text = full
	}
	return res
}

func str(raw json.RawMessage) string { s, _ := strOK(raw); return s }

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
