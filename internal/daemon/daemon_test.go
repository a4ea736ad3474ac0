package daemon_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/daemon"
	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/samples"
	"github.com/relayd/relayd/internal/xtest"
)

const (
	testSecret = "e2e-webhook-secret"
	testKey    = "ck_live_e2e_test_key"
)

// baseConfig is a relay.yaml for tests: free ports, fast retries, one
// GitHub source and the contract's CI-failure route.
const baseConfig = `
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
  shutdown_timeout: 5s
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

type harness struct {
	t      *testing.T
	d      *daemon.Daemon
	public string
	admin  string
	cancel context.CancelFunc
	done   chan error
}

func writeConfig(t *testing.T, dir, operatorURL, extra string) string {
	t.Helper()
	cfg := strings.NewReplacer("{{DB}}", filepath.Join(dir, "data", "relayd.db"), "{{OPERATOR}}", operatorURL).Replace(baseConfig) + extra
	path := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func lookup(k string) (string, bool) {
	switch k {
	case "OPERATOR_API_KEY":
		return testKey, true
	case "GITHUB_WEBHOOK_SECRET":
		return testSecret, true
	}
	return "", false
}

func startDaemon(t *testing.T, cfgPath string) *harness {
	t.Helper()
	return startDaemonWith(t, cfgPath, func() (*config.Config, error) {
		data, err := os.ReadFile(cfgPath)
		if err != nil {
			return nil, err
		}
		return config.Parse(data, filepath.Dir(cfgPath), lookup)
	})
}

// startDaemonEnv starts a daemon whose config reads the process environment.
func startDaemonEnv(t *testing.T, cfgPath string) *harness {
	t.Helper()
	return startDaemonWith(t, cfgPath, func() (*config.Config, error) { return config.Load(cfgPath) })
}

func startDaemonWith(t *testing.T, cfgPath string, load func() (*config.Config, error)) *harness {
	t.Helper()
	cfg, err := load()
	if err != nil {
		t.Fatalf("load config: %v", err)
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
	h := &harness{t: t, d: d, public: "http://" + d.PublicAddr(), admin: "http://" + d.AdminAddr(), cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- d.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

// stop shuts the daemon down gracefully (idempotent).
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("daemon.Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		h.t.Error("daemon did not stop within 30s")
	}
}

func sign(body []byte) string {
	m := hmac.New(sha256.New, []byte(testSecret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// workflowRun returns the real workflow_run payload with the given
// repository and conclusion.
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

type ingestAnswer struct {
	Status    int
	Delivery  string   `json:"delivery"`
	Routes    []string `json:"routes"`
	Duplicate bool     `json:"duplicate"`
	Error     struct {
		Code, Message string
	} `json:"error"`
}

func (h *harness) post(event, delivery string, body []byte) ingestAnswer {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.public+"/hooks/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", sign(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	var a ingestAnswer
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &a); err != nil {
		h.t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, data)
	}
	a.Status = resp.StatusCode
	return a
}

// waitFor polls cond for up to a generous deadline; CI machines are slow.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func delivered(f *fake.Server) []fake.Request {
	var out []fake.Request
	for _, r := range f.Requests() {
		if r.Status >= 200 && r.Status < 300 {
			out = append(out, r)
		}
	}
	return out
}

func TestEndToEndConversations(t *testing.T) {
	f := fake.New(fake.Options{Keys: []string{testKey}})
	api := httptest.NewServer(f)
	defer api.Close()
	h := startDaemon(t, writeConfig(t, t.TempDir(), api.URL, ""))

	a := h.post("workflow_run", "d-1", workflowRun(t, "octo/one", "failure"))
	if a.Status != http.StatusAccepted || a.Delivery != "d-1" || len(a.Routes) != 1 || a.Routes[0] != "ci-failures" {
		t.Fatalf("first event: got %+v, want 202 for d-1 on ci-failures", a)
	}
	waitFor(t, "first delivery", func() bool { return len(delivered(f)) == 1 })
	first := delivered(f)[0]
	if first.ChatID != "" {
		t.Errorf("first message sent id %q, want a new conversation", first.ChatID)
	}
	for name, want := range map[string]string{
		"Authorization":     "Bearer " + testKey,
		"X-Response-Format": "", // operator.response: stream, the API's default
		"Operator-Version":  "2025-06-19",
		"Content-Type":      "application/json",
	} {
		if got := first.Header.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	if first.IdempotencyKey == "" {
		t.Error("no Idempotency-Key sent")
	}
	wantPrompt := "CI failed on octo/one (master).\nRun: https://github.com/octo-org/octo-repo/actions/runs/289782451\n"
	if xtest.Prompt(first.Text) != wantPrompt {
		t.Errorf("prompt = %q, want %q", xtest.Prompt(first.Text), wantPrompt)
	}

	// Same repository: the same conversation continues.
	if a := h.post("workflow_run", "d-2", workflowRun(t, "octo/one", "failure")); a.Status != http.StatusAccepted {
		t.Fatalf("second event: %+v", a)
	}
	waitFor(t, "second delivery", func() bool { return len(delivered(f)) == 2 })
	if got := delivered(f)[1].ChatID; got != first.AssignedChatID {
		t.Errorf("second message continued chat %q, want %q", got, first.AssignedChatID)
	}

	// Another repository: a new conversation.
	if a := h.post("workflow_run", "d-3", workflowRun(t, "octo/two", "failure")); a.Status != http.StatusAccepted {
		t.Fatalf("third event: %+v", a)
	}
	waitFor(t, "third delivery", func() bool { return len(delivered(f)) == 3 })
	third := delivered(f)[2]
	if third.ChatID != "" || third.AssignedChatID == first.AssignedChatID {
		t.Errorf("other repository: sent id %q, got chat %q; want a new chat", third.ChatID, third.AssignedChatID)
	}

	// Filtered out: 200 with no routes, nothing sent.
	if a := h.post("workflow_run", "d-4", workflowRun(t, "octo/one", "success")); a.Status != http.StatusOK || len(a.Routes) != 0 {
		t.Fatalf("filtered event: got %+v, want 200 with no routes", a)
	}
	// GitHub ping: 200.
	ping, _ := samples.GitHub("ping", "")
	if a := h.post("ping", "d-5", ping); a.Status != http.StatusOK {
		t.Fatalf("ping: got %+v, want 200", a)
	}
	// A redelivery of d-1 is a duplicate and is not sent again.
	if a := h.post("workflow_run", "d-1", workflowRun(t, "octo/one", "failure")); a.Status != http.StatusOK || !a.Duplicate {
		t.Fatalf("redelivery: got %+v, want 200 duplicate", a)
	}
	h.stop()
	if n := len(f.Requests()); n != 3 {
		t.Errorf("fake saw %d requests, want 3", n)
	}
}

func TestRejectsForgeries(t *testing.T) {
	f := fake.New(fake.Options{Keys: []string{testKey}})
	api := httptest.NewServer(f)
	defer api.Close()
	h := startDaemon(t, writeConfig(t, t.TempDir(), api.URL, ""))
	body := workflowRun(t, "octo/one", "failure")
	flipped := bytes.Clone(body)
	flipped[10] ^= 1

	for _, tc := range []struct {
		name, sig string
		body      []byte
		code      string
	}{
		{"flipped byte", sign(body), flipped, "signature_mismatch"},
		{"wrong secret", "sha256=" + strings.Repeat("ab", 32), body, "signature_mismatch"},
		{"missing header", "", body, "signature_missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, h.public+"/hooks/github", bytes.NewReader(tc.body))
			req.Header.Set("X-GitHub-Event", "workflow_run")
			req.Header.Set("X-GitHub-Delivery", "forged")
			if tc.sig != "" {
				req.Header.Set("X-Hub-Signature-256", tc.sig)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(data), tc.code) {
				t.Errorf("got %d %s, want 401 %s", resp.StatusCode, data, tc.code)
			}
			if strings.Contains(string(data), testSecret) {
				t.Error("answer echoes the secret")
			}
		})
	}
	if n := len(f.Requests()); n != 0 {
		t.Errorf("forged events reached the API: %d requests", n)
	}
}

func TestPublicListenerServesOnlySources(t *testing.T) {
	api := httptest.NewServer(fake.New(fake.Options{Keys: []string{testKey}}))
	defer api.Close()
	h := startDaemon(t, writeConfig(t, t.TempDir(), api.URL, ""))
	for _, p := range []string{"/metrics", "/healthz", "/readyz", "/admin/dlq", "/admin/reload", "/debug/pprof/", "/"} {
		resp, err := http.Get(h.public + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("public GET %s = %d, want 404", p, resp.StatusCode)
		}
	}
	resp, err := http.Get(h.public + "/hooks/github")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET on a source path = %d, want 405", resp.StatusCode)
	}
	// The admin listener has them.
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		resp, err := http.Get(h.admin + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("admin GET %s = %d, want 200", p, resp.StatusCode)
		}
	}
}

// Messages queued while the API is down survive a restart and are all
// delivered by the next process on the same file.
func TestRestartDeliversQueued(t *testing.T) {
	f := fake.New(fake.Options{Keys: []string{testKey}})
	f.SetDown(true)
	api := httptest.NewServer(f)
	defer api.Close()
	dir := t.TempDir()
	cfg := writeConfig(t, dir, api.URL, "")

	h := startDaemon(t, cfg)
	const n = 12
	for i := range n {
		repo := fmt.Sprintf("octo/repo-%d", i%3)
		if a := h.post("workflow_run", fmt.Sprintf("r-%d", i), workflowRun(t, repo, "failure")); a.Status != http.StatusAccepted {
			t.Fatalf("event %d: %+v", i, a)
		}
	}
	h.stop()

	f.SetDown(false)
	h2 := startDaemon(t, cfg)
	waitFor(t, "all queued messages delivered after restart", func() bool { return len(delivered(f)) >= n })
	h2.stop()
	seen := map[string]bool{}
	for _, r := range delivered(f) {
		seen[r.IdempotencyKey] = true
	}
	if len(seen) != n {
		t.Errorf("delivered %d distinct messages, want %d", len(seen), n)
	}
}

// Events of one conversation reach the API in the order they were
// accepted, one at a time, while other conversations run alongside.
func TestConversationOrder(t *testing.T) {
	f := fake.New(fake.Options{Keys: []string{testKey}})
	f.SetLatency(0, 15*time.Millisecond)
	api := httptest.NewServer(f)
	defer api.Close()
	h := startDaemon(t, writeConfig(t, t.TempDir(), api.URL, ""))

	const convs, per = 4, 8
	var wg sync.WaitGroup
	for c := range convs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				body := workflowRun(t, fmt.Sprintf("order/c%d", c), "failure")
				var doc map[string]any
				_ = json.Unmarshal(body, &doc)
				doc["workflow_run"].(map[string]any)["head_branch"] = fmt.Sprintf("seq-%02d", i)
				body, _ = json.Marshal(doc)
				if a := h.post("workflow_run", fmt.Sprintf("o-%d-%d", c, i), body); a.Status != http.StatusAccepted {
					t.Errorf("event %d/%d: %+v", c, i, a)
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, "all ordered messages", func() bool { return len(delivered(f)) == convs*per })
	h.stop()

	if n := f.Overlaps(); n != 0 {
		t.Errorf("fake saw %d overlapping requests in one chat", n)
	}
	byRepo := map[string][]string{}
	for _, r := range delivered(f) {
		repo := strings.TrimPrefix(strings.SplitN(xtest.Prompt(r.Text), " (", 2)[0], "CI failed on ")
		seq := strings.SplitN(strings.SplitN(xtest.Prompt(r.Text), "(", 2)[1], ")", 2)[0]
		byRepo[repo] = append(byRepo[repo], seq)
	}
	for repo, seqs := range byRepo {
		for i, s := range seqs {
			if want := fmt.Sprintf("seq-%02d", i); s != want {
				t.Errorf("%s: message %d was %s, want %s (order %v)", repo, i, s, want, seqs)
				break
			}
		}
	}
}
