// Package xtest holds helpers shared by relayd's tests.
package xtest

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
)

// DecodeJSON parses data the way ingest presents bodies to routes:
// integers that fit become int64, other numbers float64.
func DecodeJSON(t testing.TB, data []byte) any {
	t.Helper()
	v, err := DecodeJSONNumbers(data)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// DecodeJSONNumbers is encoding/json with UseNumber, then Numbers: the
// reference that ingest's own decoder is checked against.
func DecodeJSONNumbers(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return Numbers(v), nil
}

// Numbers replaces every json.Number in v, in place: int64 when the
// number is an integer that fits, float64 otherwise.
func Numbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = Numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = Numbers(e)
		}
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	}
	return v
}
