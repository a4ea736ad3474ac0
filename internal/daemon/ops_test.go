package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/xtest"
)

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	return call(t, http.MethodGet, url, token)
}

func call(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminToken(t *testing.T) {
	api := httptest.NewServer(fake.New(fake.Options{Keys: []string{testKey}}))
	defer api.Close()
	dir := t.TempDir()
	cfg := writeConfig(t, dir, api.URL, "")
	data, _ := os.ReadFile(cfg)
	withToken := strings.Replace(string(data), "  shutdown_timeout: 5s\n", "  shutdown_timeout: 5s\n  admin_token: s3cret-admin\n", 1)
	if err := os.WriteFile(cfg, []byte(withToken), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startDaemon(t, cfg)
	for _, p := range []string{"/admin/dlq", "/admin/chats", "/admin/config"} {
		if code, _ := get(t, h.admin+p, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without token = %d, want 401", p, code)
		}
		if code, _ := get(t, h.admin+p, "wrong"); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token = %d, want 401", p, code)
		}
		if code, body := get(t, h.admin+p, "s3cret-admin"); code != http.StatusOK {
			t.Errorf("%s with the token = %d %s, want 200", p, code, body)
		}
	}
	if code, _ := call(t, http.MethodPost, h.admin+"/admin/reload", ""); code != http.StatusUnauthorized {
		t.Errorf("reload without token = %d, want 401", code)
	}
	// Metrics and health stay open unless admin_token_metrics is set.
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		if code, _ := get(t, h.admin+p, ""); code != http.StatusOK {
			t.Errorf("%s = %d, want 200 without a token", p, code)
		}
	}
	// The config dump hides every secret.
	_, body := get(t, h.admin+"/admin/config", "s3cret-admin")
	for _, secret := range []string{testKey, testSecret, "s3cret-admin"} {
		if strings.Contains(body, secret) {
			t.Errorf("/admin/config shows a secret: %s", body)
		}
	}
	// It reads as relay.yaml does.
	for _, want := range []string{`"base_url":`, `"api_key":"<secret>"`, `"admin_token":"<secret>"`, `"secrets":["<secret>"]`} {
		if !strings.Contains(body, want) {
			t.Errorf("/admin/config lacks %s: %s", want, body)
		}
	}
}

func TestReload(t *testing.T) {
	f := fake.New(fake.Options{Keys: []string{testKey}})
	api := httptest.NewServer(f)
	defer api.Close()
	dir := t.TempDir()
	cfg := writeConfig(t, dir, api.URL, "")
	h := startDaemon(t, cfg)
	m := h.d.Metrics()

	// A broken config is refused and the running one stays.
	good, _ := os.ReadFile(cfg)
	broken := strings.Replace(string(good), `conversation: 'body.repository.full_name'`, `conversation: 'body.repository.full_name +'`, 1)
	if err := os.WriteFile(cfg, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	code, body := call(t, http.MethodPost, h.admin+"/admin/reload", "")
	want := `routes[0] \"ci-failures\".conversation (line 23): unexpected token EOF`
	if code != http.StatusBadRequest || !strings.Contains(body, want) {
		t.Fatalf("bad reload = %d %s, want 400 with %s", code, body, want)
	}
	if v := testutil.ToFloat64(m.ReloadSuccessful); v != 0 {
		t.Errorf("reload_successful = %v after a failed reload, want 0", v)
	}
	if a := h.post("workflow_run", "rl-1", workflowRun(t, "octo/one", "failure")); a.Status != http.StatusAccepted {
		t.Fatalf("old config stopped working: %+v", a)
	}
	waitFor(t, "delivery under the old config", func() bool { return len(delivered(f)) == 1 })
	if !strings.HasPrefix(xtest.Prompt(delivered(f)[0].Text), "CI failed on octo/one") {
		t.Errorf("old template not used: %q", xtest.Prompt(delivered(f)[0].Text))
	}

	// A good config swaps routes and templates.
	swapped := strings.Replace(string(good), "CI failed on", "Reloaded: CI failed on", 1)
	if err := os.WriteFile(cfg, []byte(swapped), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.d.Reload(context.Background()); err != nil {
		t.Fatalf("good reload: %v", err)
	}
	if v := testutil.ToFloat64(m.ReloadSuccessful); v != 1 {
		t.Errorf("reload_successful = %v after a good reload, want 1", v)
	}
	if a := h.post("workflow_run", "rl-2", workflowRun(t, "octo/one", "failure")); a.Status != http.StatusAccepted {
		t.Fatalf("after reload: %+v", a)
	}
	waitFor(t, "delivery under the new config", func() bool { return len(delivered(f)) == 2 })
	if got := xtest.Prompt(delivered(f)[1].Text); !strings.HasPrefix(got, "Reloaded: CI failed on") {
		t.Errorf("new template not used: %q", got)
	}
}

// A 401 pauses dispatch without losing the message and without making the
// replica unready (senders such as GitHub do not retry): the pause shows in
// /healthz and relayd_dispatch_paused. When the key works again dispatch
// resumes by itself.
func TestUnauthorizedPausesAndResumes(t *testing.T) {
	f := fake.New(fake.Options{Keys: []string{"ck_live_some_other_key"}})
	api := httptest.NewServer(f)
	defer api.Close()
	h := startDaemon(t, writeConfig(t, t.TempDir(), api.URL, ""))

	if a := h.post("workflow_run", "auth-1", workflowRun(t, "octo/one", "failure")); a.Status != http.StatusAccepted {
		t.Fatalf("%+v", a)
	}
	type checks struct {
		Status string
		Checks []struct {
			Name  string
			OK    bool
			Error string
		}
	}
	waitFor(t, "dispatch paused", func() bool { return testutil.ToFloat64(h.d.Metrics().DispatchPaused) == 1 })
	code, body := get(t, h.admin+"/healthz", "")
	var health checks
	_ = json.Unmarshal([]byte(body), &health)
	paused := false
	for _, c := range health.Checks {
		paused = paused || (c.Name == "dispatch" && !c.OK && strings.Contains(c.Error, "paused"))
	}
	if code != http.StatusOK || health.Status != "degraded" || !paused {
		t.Errorf("healthz during a 401 pause = %d %s, want 200 with the pause in its detail", code, body)
	}
	if code, body := get(t, h.admin+"/readyz", ""); code != http.StatusOK {
		t.Errorf("readyz during a 401 pause = %d %s, want 200", code, body)
	}
	// Still taking webhooks while paused.
	if a := h.post("workflow_run", "auth-2", workflowRun(t, "octo/two", "failure")); a.Status != http.StatusAccepted {
		t.Errorf("webhook during a pause: %+v", a)
	}
	if _, dl := get(t, h.admin+"/admin/dlq", ""); !strings.Contains(dl, `"count":0`) {
		t.Errorf("a 401 dead-lettered the message: %s", dl)
	}

	f.SetKeys([]string{testKey})
	waitFor(t, "delivery after the key works again", func() bool { return len(delivered(f)) == 2 })
	waitFor(t, "healthy again", func() bool {
		_, body := get(t, h.admin+"/healthz", "")
		return strings.Contains(body, `"status":"ok"`)
	})
	if v := testutil.ToFloat64(h.d.Metrics().DispatchPaused); v != 0 {
		t.Errorf("relayd_dispatch_paused = %v after resuming, want 0", v)
	}
}

func TestMetricsExposed(t *testing.T) {
	f := fake.New(fake.Options{Keys: []string{testKey}})
	api := httptest.NewServer(f)
	defer api.Close()
	h := startDaemon(t, writeConfig(t, t.TempDir(), api.URL, ""))
	f.FailNext(1, fake.Fault{Status: 429, Code: "rate_limited", RetryAfter: "0"})
	if a := h.post("workflow_run", "m-1", workflowRun(t, "octo/one", "failure")); a.Status != http.StatusAccepted {
		t.Fatal(a)
	}
	h.post("workflow_run", "m-2", workflowRun(t, "octo/one", "success")) // filtered
	m := h.d.Metrics()
	// The fake answers before relayd records the outcome: wait for that.
	waitFor(t, "delivery recorded", func() bool {
		return testutil.ToFloat64(m.DispatchAttempts.WithLabelValues("ci-failures", "delivered")) == 1
	})
	for name, got := range map[string]float64{
		"enqueued{ci-failures}":           testutil.ToFloat64(m.MessagesEnqueued.WithLabelValues("ci-failures")),
		"filtered{ci-failures}":           testutil.ToFloat64(m.EventsFiltered.WithLabelValues("ci-failures")),
		"retries{ci-failures,rate_lim}":   testutil.ToFloat64(m.Retries.WithLabelValues("ci-failures", "rate_limited")),
		"attempts{ci-failures,delivered}": testutil.ToFloat64(m.DispatchAttempts.WithLabelValues("ci-failures", "delivered")),
		"requests{github,202}":            testutil.ToFloat64(m.HTTPRequests.WithLabelValues("github", "202")),
	} {
		if got != 1 {
			t.Errorf("%s = %v, want 1", name, got)
		}
	}
	// The chat is stored with the ack, after the delivery is counted.
	var text string
	waitFor(t, "conversation counted", func() bool {
		_, text = get(t, h.admin+"/metrics", "")
		return strings.Contains(text, `relayd_conversations{route="ci-failures"} 1`)
	})
	for _, want := range []string{
		`relayd_queue_messages{state="ready"}`, `relayd_queue_messages{state="dead"}`,
		`relayd_build_info{`,
		`relayd_delivery_latency_seconds_bucket{route="ci-failures"`, `relayd_dispatch_paused 0`,
		`relayd_config_last_reload_successful 1`, `relayd_verification_failures_total{reason="mismatch",source="github"} 0`,
		`go_goroutines`, `process_resident_memory_bytes`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// On shutdown new webhooks get 503 while the request in flight finishes;
// nothing is lost.
func TestGracefulShutdown(t *testing.T) {
	f := fake.New(fake.Options{Keys: []string{testKey}})
	f.SetLatency(1500*time.Millisecond, 1500*time.Millisecond)
	api := httptest.NewServer(f)
	defer api.Close()
	h := startDaemon(t, writeConfig(t, t.TempDir(), api.URL, ""))
	if a := h.post("workflow_run", "sd-1", workflowRun(t, "octo/sd", "failure")); a.Status != http.StatusAccepted {
		t.Fatal(a)
	}
	waitFor(t, "request in flight", func() bool { return len(f.Requests()) == 1 })
	stopped := make(chan struct{})
	go func() { h.stop(); close(stopped) }()
	waitFor(t, "ingest refusing during shutdown", func() bool {
		return h.post("workflow_run", "sd-late", workflowRun(t, "octo/sd", "failure")).Status == http.StatusServiceUnavailable
	})
	<-stopped
	if n := len(delivered(f)); n != 1 {
		t.Errorf("in-flight delivery did not finish during shutdown: %d delivered", n)
	}
}

// At storage.max_pending the replica turns unready, as ingest then answers 503.
func TestReadyzAtMaxPending(t *testing.T) {
	f := fake.New(fake.Options{Keys: []string{testKey}})
	f.SetDown(true)
	api := httptest.NewServer(f)
	defer api.Close()
	path := writeConfig(t, t.TempDir(), api.URL, "")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(data), "storage:\n", "storage:\n  max_pending: 1\n", 1)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startDaemon(t, path)
	if code, body := get(t, h.admin+"/readyz", ""); code != http.StatusOK {
		t.Fatalf("readyz with an empty queue = %d %s", code, body)
	}
	if a := h.post("workflow_run", "full-1", workflowRun(t, "octo/one", "failure")); a.Status != http.StatusAccepted {
		t.Fatalf("%+v", a)
	}
	code, body := get(t, h.admin+"/readyz", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "max_pending") {
		t.Errorf("readyz at max_pending = %d %s, want 503 naming max_pending", code, body)
	}
}
