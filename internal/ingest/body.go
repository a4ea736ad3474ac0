package ingest

import (
	"errors"
	"mime"
	"net/url"
)

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

// parseBody turns the raw body into the event's body according to the
// source's mode: json (must parse), text (never parsed) or auto.
func parseBody(mode, contentType string, raw string) (any, error) {
	if mode == "text" {
		return raw, nil
	}
	data := raw
	if mediaType(contentType) == "application/x-www-form-urlencoded" {
		if p, ok := formPayload(raw); ok {
			data = p
		} else if mode == "json" {
			return nil, errors.New("form body has no payload field")
		}
	}
	v, err := parseJSONText(data)
	if err != nil {
		if mode == "auto" {
			return raw, nil
		}
		return nil, err
	}
	return v, nil
}
