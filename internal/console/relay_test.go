package console_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/daemon"
	"github.com/relayd/relayd/internal/history"
	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/samples"
)

const (
	testSecret = "console-webhook-secret"
	testKey    = "ck_live_console_test_key"
	adminToken = "console-admin-token"
)

const relayConfig = `
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
  shutdown_timeout: 5s
{{SERVER}}
storage:
  path: {{DB}}
operator:
  base_url: {{OPERATOR}}
  api_key: ${OPERATOR_API_KEY}
  version: "2025-06-19"
  concurrency: 4
  rate_limit: {per_second: 1000, burst: 1000}
  retry: {initial: 20ms, max: 200ms, max_attempts: 50}
sources:
  - name: github
    path: /hooks/github
    verify: {type: github, secrets: ["${GITHUB_WEBHOOK_SECRET}"]}
routes:
  - name: ci-failures
    source: github
    filter: 'event == "workflow_run" && body.action == "completed" && body.workflow_run.conclusion == "failure"'
    conversation: 'body.repository.full_name'
    template: |
      CI failed on {{ .body.repository.full_name }} ({{ .body.workflow_run.head_branch }}).
      Run: {{ .body.workflow_run.html_url }}
`

// The payloads every page must show as text.
const (
	xssScript = `<script>window.pwned=1;document.title="pwned"</script>`
	xssImg    = `"><img src=x onerror=alert(1)>`
	xssLink   = `javascript:alert(1)`
	xssReply  = `Looked at it: <img src=x onerror="window.pwned=2;alert(2)"> rerun after the fix.`
)

// relay is a running daemon with the fake Operator behind it.
type relay struct {
	t      *testing.T
	d      *daemon.Daemon
	fake   *fake.Server
	public string
	admin  string
}

func startRelay(t *testing.T, server string) *relay {
	t.Helper()
	f := fake.New(fake.Options{Keys: []string{testKey}, Reply: func(_, text string) string {
		if strings.Contains(text, "<script>") {
			return xssReply
		}
		return "The test suite failed in TestLogin: the fixture expired. Renew it and rerun."
	}})
	api := httptest.NewServer(f)
	t.Cleanup(api.Close)
	dir := t.TempDir()
	cfgText := strings.NewReplacer("{{DB}}", filepath.Join(dir, "relayd.db"), "{{OPERATOR}}", api.URL,
		"{{SERVER}}", server).Replace(relayConfig)
	lookup := func(k string) (string, bool) {
		switch k {
		case "OPERATOR_API_KEY":
			return testKey, true
		case "GITHUB_WEBHOOK_SECRET":
			return testSecret, true
		}
		return "", false
	}
	load := func() (*config.Config, error) { return config.Parse([]byte(cfgText), dir, lookup) }
	cfg, err := load()
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.New(ctx, cfg, daemon.Options{Load: load, Version: "test"})
	if err != nil {
		cancel()
		t.Fatalf("daemon.New: %v", err)
	}
	if err := d.Listen(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("daemon.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("daemon did not stop within 30s")
		}
	})
	return &relay{t: t, d: d, fake: f, public: "http://" + d.PublicAddr(), admin: "http://" + d.AdminAddr()}
}

func workflowRun(t *testing.T, repo, conclusion string) []byte {
	t.Helper()
	raw, err := samples.GitHub("workflow_run", "completed")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	doc["repository"].(map[string]any)["full_name"] = repo
	doc["workflow_run"].(map[string]any)["conclusion"] = conclusion
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// hostile is a failed run whose every shown field is a payload.
func hostile(t *testing.T) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(workflowRun(t, "octo/"+xssScript+xssImg, "failure"), &doc); err != nil {
		t.Fatal(err)
	}
	doc["workflow_run"].(map[string]any)["html_url"] = xssLink
	doc["workflow_run"].(map[string]any)["head_branch"] = xssImg
	out, _ := json.Marshal(doc)
	return out
}

func (r *relay) post(event, delivery string, body []byte, extra http.Header) int {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.public+"/hooks/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", delivery)
	m := hmac.New(sha256.New, []byte(testSecret))
	m.Write(body)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
	for k, v := range extra {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatalf("post: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// event reads a record through the admin API.
func (r *relay) event(id, token string) (history.Record, bool) {
	req, _ := http.NewRequest(http.MethodGet, r.admin+"/admin/events/"+url.PathEscape(id), nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatalf("admin: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return history.Record{}, false
	}
	var rec history.Record
	if err := json.NewDecoder(resp.Body).Decode(&rec); err != nil {
		r.t.Fatal(err)
	}
	return rec, true
}

// waitDelivered waits until the history says the delivery's route got
// the agent's reply.
func (r *relay) waitDelivered(delivery, token string) history.Record {
	r.t.Helper()
	var last history.Record
	waitFor(r.t, delivery+" delivered with a reply", func() bool {
		rec, ok := r.event(delivery, token)
		last = rec
		return ok && len(rec.Routes) == 1 && rec.Routes[0].Outcome == history.Delivered && rec.Routes[0].Reply != ""
	})
	return last
}

func delivered(f *fake.Server) int {
	n := 0
	for _, r := range f.Requests() {
		if r.Status >= 200 && r.Status < 300 {
			n++
		}
	}
	return n
}

// waitFor polls cond for up to a generous deadline; CI machines are slow.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// seed sends a mix of requests: delivered, filtered, a ping, a rejected
// forgery, a duplicate and a hostile one; it returns the hostile delivery.
func (r *relay) seed(token string) string {
	r.t.Helper()
	want := 0
	for i, repo := range []string{"octo/api", "octo/web", "octo/api"} {
		if st := r.post("workflow_run", "d-"+string(rune('1'+i)), workflowRun(r.t, repo, "failure"), nil); st != http.StatusAccepted {
			r.t.Fatalf("post: %d", st)
		}
		want++
	}
	r.post("workflow_run", "d-ok", workflowRun(r.t, "octo/api", "success"), nil)
	ping, _ := samples.GitHub("ping", "")
	r.post("ping", "d-ping", ping, nil)
	r.post("workflow_run", "d-1", workflowRun(r.t, "octo/api", "failure"), nil) // duplicate
	forged, _ := http.NewRequest(http.MethodPost, r.public+"/hooks/github", strings.NewReader(`{}`))
	forged.Header.Set("X-Hub-Signature-256", "sha256=00")
	if resp, err := http.DefaultClient.Do(forged); err == nil {
		resp.Body.Close()
	}
	evil := xssScript + xssImg
	if st := r.post("workflow_run", evil, hostile(r.t), http.Header{"X-Evil": {xssScript + xssImg + xssLink}}); st != http.StatusAccepted {
		r.t.Fatalf("hostile post: %d", st)
	}
	want++
	r.post(xssImg+xssScript, "d-evil-event", []byte(`{"x":"`+strings.ReplaceAll(xssScript, `"`, `\"`)+`"}`), nil)
	waitFor(r.t, "deliveries", func() bool { return delivered(r.fake) >= want })
	for _, d := range []string{"d-1", "d-2", "d-3", evil} {
		r.waitDelivered(d, token)
	}
	// A request that queued nothing is recorded with the store's next
	// commit, not before its answer.
	for _, d := range []string{"d-ok", "d-ping", "d-evil-event"} {
		waitFor(r.t, d+" in the history", func() bool { _, ok := r.event(d, token); return ok })
	}
	return evil
}
