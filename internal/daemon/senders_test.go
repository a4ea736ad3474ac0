package daemon_test

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/daemon"
	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/verify"
	"github.com/relayd/relayd/internal/xtest"
)

// One event per kind of sender, signed as that sender signs, through the
// real daemon with examples/senders.yaml, reaches the Operator.
func TestEverySenderEndToEnd(t *testing.T) {
	secrets := map[string]string{
		"OPERATOR_API_KEY": testKey, "GITHUB_WEBHOOK_SECRET": "gh-s", "GITLAB_TOKEN": "gl-s",
		"BUILDKITE_SECRET": "bk-s", "CIRCLECI_SECRET": "cc-s", "CI_SECRET": "ci-s", "SIGNED_SECRET": "st-s",
		"LANDING_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "S3_TOKEN": "s3-s", "PUBSUB_TOKEN": "ps-s",
		"EVENTS_TOKEN": "ev-s",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	f := fake.New(fake.Options{Keys: []string{testKey}})
	api := httptest.NewServer(f)
	defer api.Close()

	data, err := os.ReadFile("../../examples/senders.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgText := strings.NewReplacer(
		`listen: ":8080"`, `listen: "127.0.0.1:0"`,
		`admin_listen: "127.0.0.1:9090"`, `admin_listen: "127.0.0.1:0"`,
		"path: ./data/relayd.db", "path: "+filepath.Join(dir, "relayd.db"),
		"operator:\n", "operator:\n  base_url: "+api.URL+"\n  rate_limit: {per_second: 1000, burst: 1000}\n",
	).Replace(string(data))
	cfgPath := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	h := startDaemonEnv(t, cfgPath)

	pubsubData := base64.StdEncoding.EncodeToString([]byte(`{"rows": 12}`))
	cases := []struct {
		source  string
		headers map[string]string
		body    string
		prompt  string
	}{
		{"github", map[string]string{"X-GitHub-Event": "workflow_run", "X-GitHub-Delivery": "e-gh"},
			`{"repository":{"full_name":"o/r"},"workflow_run":{"conclusion":"failure","html_url":"https://x/1"}}`,
			"CI failed on o/r: https://x/1"},
		{"gitlab", map[string]string{"X-Gitlab-Event": "Pipeline Hook", "X-Gitlab-Event-UUID": "e-gl"},
			`{"object_attributes":{"id":7,"status":"failed","ref":"main"},"project":{"path_with_namespace":"g/p"}}`,
			"Pipeline 7 failed on g/p (<untrusted>main</untrusted>)."},
		{"buildkite", map[string]string{"X-Buildkite-Event": "build.finished"},
			`{"build":{"number":3,"state":"failed","web_url":"https://bk/3"},"pipeline":{"slug":"app"}}`,
			"Buildkite build 3 of app failed: https://bk/3"},
		{"circleci", map[string]string{"Circleci-Event-Type": "workflow-completed"},
			`{"workflow":{"name":"build","status":"failed","url":"https://cc/w"},"project":{"slug":"gh/o/r"}}`,
			"CircleCI workflow <untrusted>build</untrusted> failed on gh/o/r: https://cc/w"},
		{"jenkins", map[string]string{"X-Jenkins-Event": "build", "X-Jenkins-Delivery": "e-jk"},
			`{"job":"deploy","build":41,"result":"FAILURE"}`, "Jenkins deploy #41: FAILURE"},
		{"stripe-style", nil, `{"type":"invoice.paid","data":{"id":"in_1"}}`, `invoice.paid: <untrusted>{"id":"in_1"}</untrusted>`},
		{"landing", nil, `{"dataset":"sales","rows":1200}`, "New data in sales: 1200 rows."},
		{"s3", nil, `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"lake"},"object":{"key":"in/a.csv","size":5,"sequencer":"01"}}}]}`,
			"New file <untrusted>in/a.csv</untrusted> in bucket lake (5 bytes). Load it and report anomalies."},
		{"pubsub", nil, `{"message":{"data":"` + pubsubData + `","attributes":{"dataset":"orders"},"messageId":"ps-1"}}`,
			`Load finished for orders: <untrusted>{"rows":12}</untrusted>`},
		{"events", map[string]string{"Content-Type": "application/cloudevents+json"},
			`{"specversion":"1.0","type":"com.example.done","source":"/jobs","id":"ce-9","subject":"nightly","data":{"ok":true}}`,
			`com.example.done from /jobs (<untrusted>nightly</untrusted>): <untrusted>{"ok":true}</untrusted>`},
		{"internal", nil, "plain text alarm", "Internal event: <untrusted>plain text alarm</untrusted>"},
	}
	for _, tc := range cases {
		src, ok := cfg.SourceByName(tc.source)
		if !ok {
			t.Fatalf("no source %s", tc.source)
		}
		body := []byte(tc.body)
		hdr, err := verify.Sign(daemon.VerifySpec(src.Verify), body, time.Now(), "sw-"+tc.source)
		if err != nil {
			t.Fatalf("%s: sign: %v", tc.source, err)
		}
		req, _ := http.NewRequest(http.MethodPost, h.public+src.Path, bytes.NewReader(body))
		req.Header = hdr
		for k, v := range tc.headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Errorf("%s: %d %s, want 202", tc.source, resp.StatusCode, answer)
		}
	}
	waitFor(t, "every sender's message delivered", func() bool { return len(delivered(f)) >= len(cases) })
	got := map[string]bool{}
	for _, r := range delivered(f) {
		got[xtest.Prompt(r.Text)] = true
	}
	for _, tc := range cases {
		if !got[tc.prompt] {
			t.Errorf("%s: prompt %q never reached the API", tc.source, tc.prompt)
		}
	}
}
