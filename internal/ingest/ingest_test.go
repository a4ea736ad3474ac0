package ingest_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/daemon"
	"github.com/relayd/relayd/internal/ingest"
	"github.com/relayd/relayd/internal/metrics"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/queue/boltq"
	"github.com/relayd/relayd/internal/samples"
	"github.com/relayd/relayd/internal/verify"
	"github.com/relayd/relayd/internal/xtest"
)

const (
	ghSecret     = "gh-ingest-secret"
	glToken      = "gl-ingest-token"
	swSecret     = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	bearerSecret = "pubsub-bearer-token"
)

const ingestConfig = `
server:
  max_body_bytes: 16384
  max_inflated_bytes: 32768
storage:
  path: unused
  max_pending: %MAX%
operator:
  api_key: ck_live_x
sources:
  - name: github
    path: /hooks/github
    verify: {type: github, secrets: ["old-secret", "` + ghSecret + `"]}
  - name: gitlab
    path: /hooks/gitlab
    verify: {type: gitlab, secrets: ["` + glToken + `"]}
  - name: landing
    path: /hooks/landing
    verify: {type: standard-webhooks, secrets: ["` + swSecret + `"]}
  - name: events
    path: /hooks/ce
    verify: {type: none}
  - name: s3
    path: /hooks/s3
    unwrap: s3
    verify: {type: none}
  - name: pubsub
    path: /hooks/pubsub
    unwrap: pubsub
    verify: {type: bearer, secrets: ["` + bearerSecret + `"]}
  - name: plain
    path: /hooks/plain
    body: text
    verify: {type: none}
  - name: office
    path: /hooks/office
    allow_cidrs: ["10.0.0.0/8"]
    verify: {type: none}
routes:
  - name: gh-all
    source: github
    template: '{{ .event }} {{ .body.repository.full_name }} hdr={{ .headers }}'
  - name: gh-pushes
    source: github
    filter: 'event == "push"'
    conversation: 'body.repository.full_name'
    template: 'push to {{ .body.ref }}'
  - name: gl
    source: gitlab
    template: '{{ .event }} {{ .delivery }} {{ .body.object_kind }}'
  - name: sw
    source: landing
    template: '{{ .delivery }} {{ .body.test }}'
  - name: ce
    source: events
    filter: 'ce.source == "/storage/acct"'
    template: '{{ .event }} {{ .delivery }} {{ .ce.subject }} {{ .body.size }}'
  - name: objects
    source: s3
    conversation: 'object.bucket'
    template: '{{ .event }} {{ .object.bucket }}/{{ .object.key }}'
  - name: ps
    source: pubsub
    template: '{{ .delivery }} {{ .attributes.kind }} {{ .body.table }}'
  - name: txt
    source: plain
    template: 'text: {{ .body }}'
  - name: off
    source: office
    template: 'ok'
`

type rig struct {
	srv   *httptest.Server
	store *boltq.Store
	reg   *prometheus.Registry
	m     *metrics.Metrics
	logs  *xtest.Buffer
	h     *ingest.Handler
}

func newRig(t *testing.T, maxPending string) *rig {
	t.Helper()
	return newRigFrom(t, strings.Replace(ingestConfig, "%MAX%", maxPending, 1))
}

func newRigFrom(t *testing.T, yaml string) *rig {
	t.Helper()
	return newRigIn(t, t.TempDir(), yaml)
}

// newRigIn serves the ingest of yaml, a config whose files are in dir, over
// a real bbolt queue in dir.
func newRigIn(t *testing.T, dir, yaml string) *rig {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), dir, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	table, err := daemon.CompileIngest(cfg)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	store, err := boltq.Open(context.Background(), filepath.Join(dir, "q.db"), boltq.Options{MaxPending: cfg.Storage.MaxPending})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{store: store, reg: prometheus.NewRegistry(), logs: &xtest.Buffer{}}
	r.m = metrics.New(r.reg)
	h := ingest.New(table, ingest.Options{Store: store, Recorder: store, Metrics: r.m, Logger: slog.New(slog.NewJSONHandler(r.logs, nil))})
	r.h = h
	r.srv = httptest.NewServer(h.Echo())
	t.Cleanup(func() {
		r.srv.Close()
		store.Close()
	})
	return r
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (r *rig) do(t *testing.T, method, path string, hdr http.Header, body io.Reader) reply {
	t.Helper()
	req, err := http.NewRequest(method, r.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	rep := reply{status: resp.StatusCode, header: resp.Header, raw: string(data)}
	_ = json.Unmarshal(data, &rep.body)
	return rep
}

func signed(t *testing.T, typ string, secrets []string, body []byte, id string) http.Header {
	t.Helper()
	h, err := verify.Sign(verify.Spec{Type: typ, Secrets: secrets}, body, time.Now(), id)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// drain leases every queued message and acks it, returning them in order.
func (r *rig) drain(t *testing.T) []queue.Message {
	t.Helper()
	var out []queue.Message
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		l, err := r.store.Next(ctx)
		cancel()
		if err != nil {
			return out
		}
		out = append(out, l.Message())
		if err := l.Ack(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestGitHubDeliveries(t *testing.T) {
	r := newRig(t, "0")
	push, _ := samples.GitHub("push", "")
	h := signed(t, "github", []string{ghSecret}, push, "")
	h.Set("X-GitHub-Event", "push")
	h.Set("X-GitHub-Delivery", "gh-1")
	h.Set("Content-Type", "application/json")
	rep := r.do(t, "POST", "/hooks/github", h, bytes.NewReader(push))
	if rep.status != 202 {
		t.Fatalf("got %d %s", rep.status, rep.raw)
	}
	if got := rep.body["routes"]; len(got.([]any)) != 2 {
		t.Errorf("routes = %v, want both github routes", got)
	}
	msgs := r.drain(t)
	if len(msgs) != 2 {
		t.Fatalf("stored %d messages, want 2", len(msgs))
	}
	byRoute := map[string]queue.Message{}
	for _, m := range msgs {
		byRoute[m.Route] = m
	}
	if m := byRoute["gh-pushes"]; m.ConversationKey != "Codertocat/Hello-World" || m.Prompt != "push to refs/tags/simple-tag" || m.Delivery != "gh-1" {
		t.Errorf("gh-pushes message = %+v", m)
	}
	all := byRoute["gh-all"].Prompt
	if !strings.HasPrefix(all, "push Codertocat/Hello-World") {
		t.Errorf("gh-all prompt = %q", all)
	}
	if strings.Contains(strings.ToLower(all), "x-hub-signature") {
		t.Errorf("a signature header reached a template: %q", all)
	}

	// The same delivery again is a duplicate: 200, nothing stored.
	rep = r.do(t, "POST", "/hooks/github", h, bytes.NewReader(push))
	if rep.status != 200 || rep.body["duplicate"] != true {
		t.Fatalf("redelivery: %d %s", rep.status, rep.raw)
	}
	if n := len(r.drain(t)); n != 0 {
		t.Errorf("duplicate stored %d messages", n)
	}

	// Form-encoded delivery: the signature covers the form bytes.
	form := []byte("payload=" + url.QueryEscape(string(push)))
	h = signed(t, "github", []string{ghSecret}, form, "")
	h.Set("X-GitHub-Event", "push")
	h.Set("X-GitHub-Delivery", "gh-form")
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	if rep := r.do(t, "POST", "/hooks/github", h, bytes.NewReader(form)); rep.status != 202 {
		t.Fatalf("form delivery: %d %s", rep.status, rep.raw)
	}
	if msgs := r.drain(t); len(msgs) != 2 || !strings.Contains(msgs[0].Prompt+msgs[1].Prompt, "refs/tags/simple-tag") {
		t.Errorf("form delivery messages: %+v", msgs)
	}

	// A rotated (second) secret verifies too.
	h = signed(t, "github", []string{"old-secret"}, push, "")
	h.Set("X-GitHub-Event", "push")
	h.Set("X-GitHub-Delivery", "gh-old")
	if rep := r.do(t, "POST", "/hooks/github", h, bytes.NewReader(push)); rep.status != 202 {
		t.Errorf("old secret: %d %s", rep.status, rep.raw)
	}
}

func TestAnswers(t *testing.T) {
	r := newRig(t, "0")
	ghHeaders := func(body []byte) http.Header {
		h := signed(t, "github", []string{ghSecret}, body, "")
		h.Set("X-GitHub-Event", "push")
		h.Set("X-GitHub-Delivery", "x")
		return h
	}
	big := bytes.Repeat([]byte("a"), 20000)
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zw.Write(bytes.Repeat([]byte(" "), 1<<20))
	zw.Close()
	deep := []byte(strings.Repeat("[", 100) + strings.Repeat("]", 100))

	for _, tc := range []struct {
		name   string
		method string
		path   string
		hdr    http.Header
		body   io.Reader
		status int
		code   string
	}{
		{"unknown path", "POST", "/nope", nil, nil, 404, "not_found"},
		{"wrong method", "GET", "/hooks/github", nil, nil, 405, "method_not_allowed"},
		{"too large", "POST", "/hooks/plain", nil, bytes.NewReader(big), 413, "body_too_large"},
		{"too large, chunked", "POST", "/hooks/plain", nil, io.MultiReader(bytes.NewReader(big)), 413, "body_too_large"},
		{"zip bomb", "POST", "/hooks/plain", http.Header{"Content-Encoding": {"gzip"}}, bytes.NewReader(bomb.Bytes()), 413, "body_too_large"},
		{"not JSON", "POST", "/hooks/github", ghHeaders([]byte("hello")), strings.NewReader("hello"), 400, "invalid_body"},
		{"too deep", "POST", "/hooks/github", ghHeaders(deep), bytes.NewReader(deep), 400, "invalid_body"},
		{"unsigned", "POST", "/hooks/github", nil, strings.NewReader("{}"), 401, "signature_missing"},
		{"bad token", "POST", "/hooks/gitlab", http.Header{"X-Gitlab-Token": {"nope"}}, strings.NewReader("{}"), 401, "signature_mismatch"},
		{"outside allow_cidrs", "POST", "/hooks/office", nil, strings.NewReader("{}"), 403, "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := r.do(t, tc.method, tc.path, tc.hdr, tc.body)
			if rep.status != tc.status {
				t.Fatalf("status %d, want %d (%s)", rep.status, tc.status, rep.raw)
			}
			e, _ := rep.body["error"].(map[string]any)
			if e["code"] != tc.code {
				t.Errorf("error code %v, want %s", e["code"], tc.code)
			}
		})
	}
	if n := len(r.drain(t)); n != 0 {
		t.Errorf("rejected requests stored %d messages", n)
	}
	if got := testutil.ToFloat64(r.m.VerificationFailures.WithLabelValues("github", "missing")); got != 1 {
		t.Errorf("verification failures{github,missing} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(r.m.HTTPRequests.WithLabelValues("unknown", "404")); got != 1 {
		t.Errorf("requests{unknown,404} = %v, want 1", got)
	}
	for _, secret := range []string{ghSecret, glToken, bearerSecret} {
		if strings.Contains(r.logs.String(), secret) {
			t.Errorf("logs contain secret %q", secret)
		}
	}
}

func TestGzipAndText(t *testing.T) {
	r := newRig(t, "0")
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write([]byte("deploy finished"))
	zw.Close()
	if rep := r.do(t, "POST", "/hooks/plain", http.Header{"Content-Encoding": {"gzip"}}, &z); rep.status != 202 {
		t.Fatalf("gzip text: %d %s", rep.status, rep.raw)
	}
	if msgs := r.drain(t); len(msgs) != 1 || msgs[0].Prompt != "text: deploy finished" {
		t.Errorf("messages: %+v", msgs)
	}
}

func TestQueueFullIs503(t *testing.T) {
	r := newRig(t, "1")
	for i, want := range []int{202, 503} {
		rep := r.do(t, "POST", "/hooks/plain", nil, strings.NewReader("event "+string(rune('a'+i))))
		if rep.status != want {
			t.Fatalf("request %d: %d, want %d (%s)", i, rep.status, want, rep.raw)
		}
		if want == 503 && rep.header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
	}
}

func TestGitLabAndStandardWebhooks(t *testing.T) {
	r := newRig(t, "0")
	body := []byte(`{"object_kind":"pipeline"}`)
	h := http.Header{"X-Gitlab-Token": {glToken}, "X-Gitlab-Event": {"Pipeline Hook"}, "X-Gitlab-Event-Uuid": {"gl-uuid-1"}}
	if rep := r.do(t, "POST", "/hooks/gitlab", h, bytes.NewReader(body)); rep.status != 202 || rep.body["delivery"] != "gl-uuid-1" {
		t.Fatalf("gitlab: %d %s", rep.status, rep.raw)
	}
	sw := []byte(`{"test": 2432232314}`)
	h = signed(t, "standard-webhooks", []string{swSecret}, sw, "msg_1")
	if rep := r.do(t, "POST", "/hooks/landing", h, bytes.NewReader(sw)); rep.status != 202 || rep.body["delivery"] != "msg_1" {
		t.Fatalf("standard webhooks: %d %s", rep.status, rep.raw)
	}
	prompts := map[string]string{}
	for _, m := range r.drain(t) {
		prompts[m.Route] = m.Prompt
	}
	if prompts["gl"] != "Pipeline Hook gl-uuid-1 pipeline" {
		t.Errorf("gitlab prompt %q", prompts["gl"])
	}
	if prompts["sw"] != "msg_1 2432232314" {
		t.Errorf("standard webhooks prompt %q (large integers must print exactly)", prompts["sw"])
	}
}

func TestCloudEvents(t *testing.T) {
	r := newRig(t, "0")
	binary := http.Header{
		"Ce-Specversion": {"1.0"}, "Ce-Type": {"com.example.object.created"}, "Ce-Source": {"%2Fstorage%2Facct"},
		"Ce-Id": {"ce-1"}, "Ce-Subject": {"reports/2026.csv"}, "Content-Type": {"application/json"},
	}
	if rep := r.do(t, "POST", "/hooks/ce", binary, strings.NewReader(`{"size": 42}`)); rep.status != 202 || rep.body["delivery"] != "ce-1" {
		t.Fatalf("binary mode: %d %s", rep.status, rep.raw)
	}
	structured := `{"specversion":"1.0","type":"com.example.object.created","source":"/storage/acct","id":"ce-2","subject":"b.csv","data":{"size":7}}`
	if rep := r.do(t, "POST", "/hooks/ce", http.Header{"Content-Type": {"application/cloudevents+json"}}, strings.NewReader(structured)); rep.status != 202 {
		t.Fatalf("structured mode: %d %s", rep.status, rep.raw)
	}
	other := `{"specversion":"1.0","type":"t","source":"/elsewhere","id":"ce-3","data":{}}`
	if rep := r.do(t, "POST", "/hooks/ce", http.Header{"Content-Type": {"application/cloudevents+json"}}, strings.NewReader(other)); rep.status != 200 {
		t.Fatalf("filtered CloudEvent: %d %s", rep.status, rep.raw)
	}
	bad := http.Header{"Ce-Specversion": {"1.0"}, "Ce-Type": {"%FF"}, "Ce-Source": {"s"}, "Ce-Id": {"x"}}
	if rep := r.do(t, "POST", "/hooks/ce", bad, strings.NewReader(`{}`)); rep.status != 400 {
		t.Errorf("invalid UTF-8 attribute: %d, want 400", rep.status)
	}
	var got []string
	for _, m := range r.drain(t) {
		got = append(got, m.Prompt)
	}
	want := []string{"com.example.object.created ce-1 reports/2026.csv 42", "com.example.object.created ce-2 b.csv 7"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("prompts %q, want %q", got, want)
	}
	rep := r.do(t, "OPTIONS", "/hooks/ce", http.Header{"Webhook-Request-Origin": {"eventgrid.azure.net"}}, nil)
	if rep.status != 200 || rep.header.Get("Webhook-Allowed-Origin") != "eventgrid.azure.net" {
		t.Errorf("validation handshake: %d %v", rep.status, rep.header)
	}
}

func TestObjectStoreEnvelopes(t *testing.T) {
	r := newRig(t, "0")
	s3 := `{"Records":[
	  {"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"landing"},"object":{"key":"raw/day+1.csv","size":10,"sequencer":"0A1"}}},
	  {"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"landing"},"object":{"key":"raw/day2.csv","size":11,"sequencer":"0A2"}}}]}`
	if rep := r.do(t, "POST", "/hooks/s3", nil, strings.NewReader(s3)); rep.status != 202 {
		t.Fatalf("s3: %d %s", rep.status, rep.raw)
	}
	data := base64.StdEncoding.EncodeToString([]byte(`{"table":"orders"}`))
	ps := `{"message":{"data":"` + data + `","attributes":{"kind":"load"},"messageId":"ps-77"},"subscription":"projects/p/subscriptions/s"}`
	if rep := r.do(t, "POST", "/hooks/pubsub", http.Header{"Authorization": {"Bearer " + bearerSecret}}, strings.NewReader(ps)); rep.status != 202 || rep.body["delivery"] != "ps-77" {
		t.Fatalf("pubsub: %d %s", rep.status, rep.raw)
	}
	var got []string
	for _, m := range r.drain(t) {
		got = append(got, m.Route+": "+m.Prompt+" @"+m.ConversationKey)
	}
	want := []string{
		"objects: ObjectCreated:Put landing/raw/day 1.csv @landing",
		"objects: ObjectCreated:Put landing/raw/day2.csv @landing",
		"ps: ps-77 load orders @",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}
