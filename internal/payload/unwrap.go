package payload

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

var errBadEnvelope = errors.New("malformed envelope")

// cePrefix starts the headers that carry a binary-mode CloudEvent's attributes.
const cePrefix = "ce-"

// cloudEventBinary reads a binary-mode CloudEvent's attributes from headers.
// Values are percent-decoded once, as the HTTP binding says; invalid UTF-8
// is rejected. ct is the request's Content-Type, the event's datacontenttype.
func cloudEventBinary(h http.Header, ct string) (map[string]any, error) {
	attrs := make(map[string]any)
	for name, vals := range h {
		lower := strings.ToLower(name)
		if !strings.HasPrefix(lower, cePrefix) || len(vals) == 0 {
			continue
		}
		v, err := url.PathUnescape(vals[0])
		if err != nil {
			return nil, fmt.Errorf("header %s: %w", name, err)
		}
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("header %s: invalid UTF-8", name)
		}
		attrs[strings.TrimPrefix(lower, cePrefix)] = v
	}
	for _, req := range []string{"specversion", "id", "source", "type"} {
		if s, _ := attrs[req].(string); s == "" {
			return nil, fmt.Errorf("missing ce-%s header", req)
		}
	}
	if ct != "" {
		attrs["datacontenttype"] = ct
	}
	return attrs, nil
}

// cloudEventStructured splits a structured-mode event into attributes and data.
func cloudEventStructured(v any) (Item, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return Item{}, fmt.Errorf("%w: CloudEvent is not a JSON object", errBadEnvelope)
	}
	attrs := make(map[string]any, len(m))
	var data any
	for k, val := range m {
		switch k {
		case "data":
			data = val
		case "data_base64":
			s, _ := val.(string)
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return Item{}, fmt.Errorf("%w: data_base64: %v", errBadEnvelope, err)
			}
			data = decodeMaybeJSON(b)
		default:
			attrs[k] = val
		}
	}
	for _, req := range []string{"specversion", "id", "source", "type"} {
		if s, _ := attrs[req].(string); s == "" {
			return Item{}, fmt.Errorf("%w: CloudEvent has no %q attribute", errBadEnvelope, req)
		}
	}
	return Item{
		Event:    attrs["type"].(string),
		Delivery: attrs["id"].(string),
		Body:     data,
		Extra:    map[string]any{"ce": attrs},
	}, nil
}

// decodeMaybeJSON parses b as JSON when it is JSON, else returns the text.
func decodeMaybeJSON(b []byte) any {
	if v, err := parseJSON(b); err == nil {
		return v
	}
	return string(b)
}

// unwrapS3 handles an S3 event notification, also inside an SNS envelope,
// and an EventBridge "Object Created"-style event: one item per record.
func unwrapS3(v any) ([]Item, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: not a JSON object", errBadEnvelope)
	}
	// SNS wraps the notification as a JSON string in Message.
	if t, _ := m["Type"].(string); t != "" {
		switch t {
		case "Notification":
			s, _ := m["Message"].(string)
			inner, err := parseJSON([]byte(s))
			if err != nil {
				return nil, fmt.Errorf("%w: SNS Message is not JSON: %v", errBadEnvelope, err)
			}
			items, err := unwrapS3(inner)
			if id, _ := m["MessageId"].(string); id != "" {
				for i := range items {
					if items[i].Delivery == "" {
						items[i].Delivery = id + "/" + strconv.Itoa(i)
					}
				}
			}
			return items, err
		case "SubscriptionConfirmation", "UnsubscribeConfirmation":
			// Confirming needs a request to the SubscribeURL, which an
			// operator should do knowingly; pass it to routes as an event.
			return []Item{{Event: "sns:" + t, Body: m}}, nil
		}
	}
	if detail, ok := m["detail"].(map[string]any); ok { // EventBridge
		bucket, _ := detail["bucket"].(map[string]any)
		object, _ := detail["object"].(map[string]any)
		event, _ := m["detail-type"].(string)
		id, _ := m["id"].(string)
		return []Item{{
			Event:    event,
			Delivery: id,
			Body:     m,
			Extra:    map[string]any{"object": objectInfo(bucket["name"], object["key"], object["size"], event)},
		}}, nil
	}
	records, ok := m["Records"].([]any)
	if !ok {
		return nil, fmt.Errorf("%w: no Records array", errBadEnvelope)
	}
	items := make([]Item, 0, len(records))
	for i, r := range records {
		rec, ok := r.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: Records[%d] is not an object", errBadEnvelope, i)
		}
		s3, _ := rec["s3"].(map[string]any)
		bucket, _ := s3["bucket"].(map[string]any)
		object, _ := s3["object"].(map[string]any)
		key, _ := object["key"].(string)
		// S3 form-encodes keys in notifications (spaces arrive as '+').
		if k, err := url.QueryUnescape(key); err == nil {
			key = k
		}
		event, _ := rec["eventName"].(string)
		var delivery string
		if seq, _ := object["sequencer"].(string); seq != "" {
			delivery = fmt.Sprint(bucket["name"], "/", key, "@", seq)
		}
		items = append(items, Item{
			Event:    event,
			Delivery: delivery,
			Body:     rec,
			Extra:    map[string]any{"object": objectInfo(bucket["name"], key, object["size"], event)},
		})
	}
	return items, nil
}

func objectInfo(bucket, key, size any, event string) map[string]any {
	return map[string]any{"bucket": bucket, "key": key, "size": size, "event": event}
}

// unwrapPubSub handles a Pub/Sub push envelope: message.data is base64.
func unwrapPubSub(v any) ([]Item, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: not a JSON object", errBadEnvelope)
	}
	msg, ok := m["message"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: no message object", errBadEnvelope)
	}
	var body any
	if s, _ := msg["data"].(string); s != "" {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%w: message.data: %v", errBadEnvelope, err)
		}
		body = decodeMaybeJSON(b)
	}
	attrs, _ := msg["attributes"].(map[string]any)
	if attrs == nil {
		attrs = map[string]any{}
	}
	id, _ := msg["messageId"].(string)
	if id == "" {
		id, _ = msg["message_id"].(string)
	}
	event, _ := attrs["eventType"].(string) // GCS notifications set it
	extra := map[string]any{"attributes": attrs}
	if b, ok := attrs["bucketId"]; ok {
		extra["object"] = objectInfo(b, attrs["objectId"], nil, event)
	}
	return []Item{{Event: event, Delivery: id, Body: body, Extra: extra}}, nil
}
