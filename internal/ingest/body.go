package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"strconv"
)

// maxJSONDepth bounds nesting so a hostile body cannot make the decoder
// (or later walks over the value) recurse without end.
const maxJSONDepth = 64

var errTooDeep = fmt.Errorf("JSON nested deeper than %d levels", maxJSONDepth)

// checkDepth scans JSON text once, counting brackets outside strings.
func checkDepth(data []byte) error {
	depth, inString, escaped := 0, false, false
	for _, c := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > maxJSONDepth {
				return errTooDeep
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

// parseJSON decodes one JSON value. Integers become int64 so that ids print
// exactly in prompts and compare as numbers in filters; other numbers float64.
func parseJSON(data []byte) (any, error) {
	if err := checkDepth(data); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the JSON value")
	}
	return convertNumbers(v), nil
}

func convertNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = convertNumbers(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = convertNumbers(e)
		}
		return x
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	default:
		return v
	}
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
func formPayload(raw []byte) ([]byte, bool) {
	vals, err := url.ParseQuery(string(raw))
	if err != nil {
		return nil, false
	}
	p, ok := vals["payload"]
	if !ok || len(p) == 0 {
		return nil, false
	}
	return []byte(p[0]), true
}

// parseBody turns the raw body into the event's body according to the
// source's mode: json (must parse), text (never parsed) or auto.
func parseBody(mode, contentType string, raw []byte) (any, error) {
	if mode == "text" {
		return string(raw), nil
	}
	data := raw
	if mediaType(contentType) == "application/x-www-form-urlencoded" {
		if p, ok := formPayload(raw); ok {
			data = p
		} else if mode == "json" {
			return nil, errors.New("form body has no payload field")
		}
	}
	v, err := parseJSON(data)
	if err != nil {
		if mode == "auto" {
			return string(raw), nil
		}
		return nil, err
	}
	return v, nil
}
