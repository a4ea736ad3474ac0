// Package payload turns a webhook's bytes and headers into its events' bodies.
//
// It knows body encodings (JSON, form-encoded JSON, text) and the envelopes
// events arrive in (CloudEvents, S3/SNS/EventBridge, Pub/Sub), not HTTP
// answers, verification or routing.
package payload

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// Mode is how a body that is not an envelope becomes the event's body.
type Mode uint8

const (
	JSON Mode = iota // must parse as JSON (or a form's payload field)
	Text             // never parsed: the body is the text
	Auto             // JSON when it parses, else the text
)

// Envelope names the wrapper a source's events arrive in.
type Envelope uint8

const (
	Bare        Envelope = iota // the body is the event
	S3                          // S3 notification, also inside SNS, or EventBridge
	PubSub                      // Pub/Sub push: message.data is base64
	CloudEvents                 // structured-mode CloudEvent
)

// Item is one event found in a request: most requests carry one, an S3
// notification or a CloudEvents batch may carry several. Its strings may
// share the memory of the text it was parsed from.
type Item struct {
	Event    string         // the event type; "" when none was sent
	Delivery string         // "" when the envelope has no id of its own
	Body     any            // parsed JSON, or the text
	Extra    map[string]any // "ce", "attributes" or "object", see event.ExtraKeys
}

// Parser turns one source's requests into items. Its mode and envelope are
// chosen once, when the source is compiled; it is safe for concurrent use.
type Parser struct {
	mode        Mode // for bare bodies; JSON whenever there is an envelope
	dataMode    Mode // for a binary-mode CloudEvent's data: the source's own mode
	envelope    Envelope
	eventHeader string // canonical; "" when the sender names no event type
}

// New returns the parser for a source whose bodies are in mode, wrapped in
// envelope, and whose sender names the event type in eventHeader ("" for none).
func New(mode Mode, envelope Envelope, eventHeader string) *Parser {
	p := &Parser{mode: mode, dataMode: mode, envelope: envelope, eventHeader: http.CanonicalHeaderKey(eventHeader)}
	if envelope != Bare {
		// An envelope is JSON whatever the source's mode says.
		p.mode = JSON
	}
	return p
}

// Parse turns a verified body, held as text, and its headers into events.
// The errors describe what is wrong with the body and are safe to answer
// with.
func (p *Parser) Parse(hdr http.Header, text string) ([]Item, error) {
	ct := hdr.Get("Content-Type")
	mt := mediaType(ct)

	// CloudEvents binary mode: attributes in ce- headers, data in the body.
	if hdr.Get("Ce-Specversion") != "" {
		attrs, err := cloudEventBinary(hdr, ct)
		if err != nil {
			return nil, err
		}
		body, err := parseBody(p.dataMode, mt, text)
		if err != nil && isJSONType(mt) {
			return nil, fmt.Errorf("CloudEvent data: %w", err)
		}
		if err != nil {
			body = text
		}
		return []Item{{Event: attrs["type"].(string), Delivery: attrs["id"].(string), Body: body,
			Extra: map[string]any{"ce": attrs}}}, nil
	}
	switch mt {
	case "application/cloudevents+json":
		v, err := parseJSONText(text)
		if err != nil {
			return nil, fmt.Errorf("CloudEvent: %w", err)
		}
		it, err := cloudEventStructured(v)
		if err != nil {
			return nil, err
		}
		return []Item{it}, nil
	case "application/cloudevents-batch+json":
		v, err := parseJSONText(text)
		if err != nil {
			return nil, fmt.Errorf("CloudEvents batch: %w", err)
		}
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("%w: CloudEvents batch is not an array", errBadEnvelope)
		}
		items := make([]Item, 0, len(list))
		for _, e := range list {
			it, err := cloudEventStructured(e)
			if err != nil {
				return nil, err
			}
			items = append(items, it)
		}
		return items, nil
	}

	body, err := parseBody(p.mode, mt, text)
	if err != nil {
		return nil, fmt.Errorf("body is not valid JSON: %w", err)
	}
	switch p.envelope {
	case S3:
		return unwrapS3(body)
	case PubSub:
		return unwrapPubSub(body)
	case CloudEvents:
		it, err := cloudEventStructured(body)
		if err != nil {
			return nil, err
		}
		return []Item{it}, nil
	}
	it := Item{Body: body}
	if p.eventHeader != "" {
		it.Event = headerValue(hdr, p.eventHeader)
	}
	return []Item{it}, nil
}

// headerValue is hdr.Get for a name already in canonical form.
func headerValue(hdr http.Header, canonical string) string {
	if v := hdr[canonical]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func isJSONType(mt string) bool {
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// mediaType returns the lower-case media type of a Content-Type header.
func mediaType(contentType string) string {
	if contentType == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	return mt
}

// formPayload extracts GitHub's form-encoded delivery: payload=<json>.
func formPayload(raw string) (string, bool) {
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return "", false
	}
	p, ok := vals["payload"]
	if !ok || len(p) == 0 {
		return "", false
	}
	return p[0], true
}

// parseBody turns the raw body, sent as media type mt, into the event's
// body according to mode: JSON (must parse), Text (never parsed) or Auto.
func parseBody(mode Mode, mt string, raw string) (any, error) {
	if mode == Text {
		return raw, nil
	}
	data := raw
	if mt == "application/x-www-form-urlencoded" {
		if p, ok := formPayload(raw); ok {
			data = p
		} else if mode == JSON {
			return nil, errors.New("form body has no payload field")
		}
	}
	v, err := parseJSONText(data)
	if err != nil {
		if mode == Auto {
			return raw, nil
		}
		return nil, err
	}
	return v, nil
}
