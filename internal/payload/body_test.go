package payload

import (
	"encoding/json"
	"net/http"
	"testing"
)

// TestParse: what each kind of request becomes, by the parser's mode and
// envelope and the request's Content-Type and ce- headers.
func TestParse(t *testing.T) {
	ceBinary := http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"i1"}, "Ce-Source": {"/s"}, "Ce-Type": {"t%C3%A9"}}
	for _, tc := range []struct {
		name   string
		p      *Parser
		hdr    http.Header
		body   string
		want   string // JSON of the items, with Extra
		errMsg string
	}{
		{"json with event header", New(JSON, Bare, "x-event"), http.Header{"X-Event": {"push"}}, `{"a":1}`,
			`[{"Event":"push","Delivery":"","Body":{"a":1},"Extra":null}]`, ""},
		{"form payload", New(JSON, Bare, ""), http.Header{"Content-Type": {"application/x-www-form-urlencoded; charset=utf-8"}}, "payload=%7B%22a%22%3A2%7D",
			`[{"Event":"","Delivery":"","Body":{"a":2},"Extra":null}]`, ""},
		{"form without payload", New(JSON, Bare, ""), http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, "a=1",
			"", "body is not valid JSON: form body has no payload field"},
		{"text", New(Text, Bare, ""), nil, `{"a":1}`,
			`[{"Event":"","Delivery":"","Body":"{\"a\":1}","Extra":null}]`, ""},
		{"auto, not JSON", New(Auto, Bare, ""), nil, `hi`,
			`[{"Event":"","Delivery":"","Body":"hi","Extra":null}]`, ""},
		{"json, not JSON", New(JSON, Bare, ""), nil, `hi`, "", "body is not valid JSON: …"},
		{"cloudevent binary, text data", New(JSON, Bare, "x-event"), withCT(ceBinary, "text/plain"), `hi`,
			`[{"Event":"té","Delivery":"i1","Body":"hi","Extra":{"ce":{"datacontenttype":"text/plain","id":"i1","source":"/s","specversion":"1.0","type":"té"}}}]`, ""},
		{"cloudevent binary, bad JSON data", New(JSON, Bare, ""), withCT(ceBinary, "application/json"), `hi`, "", "CloudEvent data: …"},
		{"cloudevent structured by content type", New(Text, Bare, ""), http.Header{"Content-Type": {"application/cloudevents+json"}},
			`{"specversion":"1.0","id":"i","source":"s","type":"t","data":{"x":1}}`,
			`[{"Event":"t","Delivery":"i","Body":{"x":1},"Extra":{"ce":{"id":"i","source":"s","specversion":"1.0","type":"t"}}}]`, ""},
		{"cloudevents batch", New(JSON, Bare, ""), http.Header{"Content-Type": {"application/cloudevents-batch+json"}},
			`[{"specversion":"1.0","id":"a","source":"s","type":"t"},{"specversion":"1.0","id":"b","source":"s","type":"u"}]`,
			`[{"Event":"t","Delivery":"a","Body":null,"Extra":{"ce":{"id":"a","source":"s","specversion":"1.0","type":"t"}}},{"Event":"u","Delivery":"b","Body":null,"Extra":{"ce":{"id":"b","source":"s","specversion":"1.0","type":"u"}}}]`, ""},
		{"pubsub envelope in text mode", New(Text, PubSub, ""), nil, `{"message":{"data":"eyJiIjoyfQ==","messageId":"m","attributes":{"eventType":"OBJECT_FINALIZE"}}}`,
			`[{"Event":"OBJECT_FINALIZE","Delivery":"m","Body":{"b":2},"Extra":{"attributes":{"eventType":"OBJECT_FINALIZE"}}}]`, ""},
		{"s3 envelope", New(JSON, S3, "x-event"), http.Header{"X-Event": {"ignored"}}, `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"a+b","size":1}}}]}`,
			`[{"Event":"ObjectCreated:Put","Delivery":"","Body":{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"a+b","size":1}}},"Extra":{"object":{"bucket":"b","event":"ObjectCreated:Put","key":"a b","size":1}}}]`, ""},
		{"envelope not JSON", New(Auto, S3, ""), nil, `hi`, "", "body is not valid JSON: …"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := tc.hdr
			if hdr == nil {
				hdr = http.Header{}
			}
			items, err := tc.p.Parse(hdr, tc.body)
			if tc.errMsg != "" {
				if err == nil || !matches(err.Error(), tc.errMsg) {
					t.Fatalf("error %v, want %q", err, tc.errMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(items)
			if string(got) != tc.want {
				t.Errorf("items\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func withCT(h http.Header, ct string) http.Header {
	h = h.Clone()
	h.Set("Content-Type", ct)
	return h
}

// matches compares a message with want, where a trailing … matches any rest.
func matches(msg, want string) bool {
	if n := len(want) - len("…"); n >= 0 && want[n:] == "…" {
		return len(msg) >= n && msg[:n] == want[:n]
	}
	return msg == want
}
