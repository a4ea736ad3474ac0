package ingest_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/daemon"
	"github.com/relayd/relayd/internal/ingest"
	"github.com/relayd/relayd/internal/queue/boltq"
)

// fuzzConfig has a source for every body parser and envelope. Routes
// match nothing, so every input runs verify, parse, unwrap and the
// filters, and no fsync slows the fuzzer down.
const fuzzConfig = `
server: {max_body_bytes: 65536}
storage: {path: unused}
operator: {api_key: ck_live_x}
sources:
  - {name: json, path: /json, verify: {type: none}}
  - {name: auto, path: /auto, body: auto, verify: {type: none}}
  - {name: s3, path: /s3, unwrap: s3, verify: {type: none}}
  - {name: pubsub, path: /pubsub, unwrap: pubsub, verify: {type: none}}
  - {name: ce, path: /ce, unwrap: cloudevents, verify: {type: none}}
routes:
  - {name: j, source: json, filter: 'body?.a == "never" && event == "x"', template: "{{ .body }}"}
  - {name: a, source: auto, filter: 'false', template: "{{ .raw }}"}
  - {name: s, source: s3, filter: 'object?.key == "never"', template: "{{ .object }}"}
  - {name: p, source: pubsub, filter: 'attributes?.k == "never"', template: "{{ .attributes }}"}
  - {name: c, source: ce, filter: 'ce?.type == "never"', template: "{{ .ce }}"}
`

var fuzzPaths = []string{"/json", "/auto", "/s3", "/pubsub", "/ce"}

// FuzzIngest feeds arbitrary bodies and envelope headers through the real
// handler: form decoding, JSON, CloudEvents headers and both modes, S3 and
// Pub/Sub unwrapping. Any answer outside the documented set, or a panic,
// is a failure.
func FuzzIngest(f *testing.F) {
	cfg, err := config.Parse([]byte(fuzzConfig), f.TempDir(), func(string) (string, bool) { return "", false })
	if err != nil {
		f.Fatal(err)
	}
	table, err := daemon.CompileIngest(cfg)
	if err != nil {
		f.Fatal(err)
	}
	store, err := boltq.Open(context.Background(), filepath.Join(f.TempDir(), "fuzz.db"), boltq.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })
	e := ingest.New(table, ingest.Options{Store: store}).Echo()

	seeds := []struct {
		path      uint8
		ct, ceHdr string
		body      string
	}{
		{0, "application/json", "", `{"a":1,"b":[1,2.5,"x",null,true],"c":{"d":"\u00e9"}}`},
		{0, "application/x-www-form-urlencoded", "", "payload=%7B%22a%22%3A12345678901%7D"},
		{0, "application/json", "", `[[[[[[[[[[[[]]]]]]]]]]]]`},
		{1, "text/plain", "", "plain words"},
		{2, "application/json", "", `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"a+b%2F.csv","size":1,"sequencer":"1"}}}]}`},
		{2, "application/json", "", `{"Type":"Notification","MessageId":"m","Message":"{\"Records\":[]}"}`},
		{2, "application/json", "", `{"detail-type":"Object Created","detail":{"bucket":{"name":"b"},"object":{"key":"k"}}}`},
		{3, "application/json", "", `{"message":{"data":"eyJhIjoxfQ==","attributes":{"k":"v"},"messageId":"1"}}`},
		{4, "application/json", "", `{"specversion":"1.0","type":"t","source":"s","id":"i","data_base64":"aGk="}`},
		{0, "application/cloudevents+json", "", `{"specversion":"1.0","type":"t","source":"s","id":"i","data":{}}`},
		{0, "application/cloudevents-batch+json", "", `[{"specversion":"1.0","type":"t","source":"s","id":"i"}]`},
		{0, "application/json", "t%C3%A9", `{}`},
		{0, "application/json", "%FF", `{}`},
	}
	for _, s := range seeds {
		f.Add(s.path, s.ct, s.ceHdr, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, path uint8, contentType, ceType string, body []byte) {
		req := httptest.NewRequest(http.MethodPost, fuzzPaths[int(path)%len(fuzzPaths)], bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		if ceType != "" {
			req.Header.Set("Ce-Specversion", "1.0")
			req.Header.Set("Ce-Type", ceType)
			req.Header.Set("Ce-Source", "/fuzz")
			req.Header.Set("Ce-Id", "fuzz")
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("answer %d %s for %q", rec.Code, rec.Body.String(), body)
		}
	})
}
