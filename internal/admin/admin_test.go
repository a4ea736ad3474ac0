package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relayd/relayd/internal/admin"
	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/queue/boltq"
)

func setup(t *testing.T) (*httptest.Server, *boltq.Store) {
	t.Helper()
	st, err := boltq.Open(context.Background(), filepath.Join(t.TempDir(), "admin.db"), boltq.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := httptest.NewServer(admin.New(admin.Options{
		Gatherer: prometheus.NewRegistry(), DeadLetters: st, Chats: st,
		Token: func() string { return "tok" },
	}))
	t.Cleanup(srv.Close)
	return srv, st
}

func do(t *testing.T, method, url string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(data, &out)
	return resp.StatusCode, out
}

func TestChatsResetWithSlashInKey(t *testing.T) {
	srv, st := setup(t)
	ctx := context.Background()
	for _, key := range []string{"octo/one", "octo/two"} {
		if err := st.PutChat(ctx, "ci", key, queue.ChatState{ChatID: "chat_" + key, StartedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if code, out := do(t, http.MethodGet, srv.URL+"/admin/chats?route=ci"); code != 200 || out["count"].(float64) != 2 {
		t.Fatalf("list = %d %v", code, out)
	}
	if code, out := do(t, http.MethodDelete, srv.URL+"/admin/chats/ci/octo%2Fone"); code != 200 {
		t.Fatalf("reset = %d %v", code, out)
	}
	if st1, _ := st.GetChat(ctx, "ci", "octo/one"); st1.ChatID != "" {
		t.Errorf("octo/one still remembered: %+v", st1)
	}
	if st2, _ := st.GetChat(ctx, "ci", "octo/two"); st2.ChatID == "" {
		t.Error("resetting octo/one forgot octo/two")
	}
}

func TestDeadLetterAPI(t *testing.T) {
	srv, st := setup(t)
	ctx := context.Background()
	if _, err := st.Enqueue(ctx, queue.Batch{Messages: []queue.Message{{ID: "m1", Route: "ci", Delivery: "d1", Prompt: "p", EnqueuedAt: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
	l, err := st.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Dead(ctx, queue.Failure{Status: 400, Code: "bad_request", Reason: "bad_request", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	code, out := do(t, http.MethodGet, srv.URL+"/admin/dlq")
	if code != 200 || out["count"].(float64) != 1 {
		t.Fatalf("list = %d %v", code, out)
	}
	if code, _ := do(t, http.MethodGet, srv.URL+"/admin/dlq/d1"); code != 200 {
		t.Errorf("get by delivery id = %d", code)
	}
	if code, _ := do(t, http.MethodGet, srv.URL+"/admin/dlq/nope"); code != 404 {
		t.Errorf("get unknown = %d, want 404", code)
	}
	if code, out := do(t, http.MethodPost, srv.URL+"/admin/dlq/m1/replay"); code != 200 || out["replayed"].(float64) != 1 {
		t.Errorf("replay = %d %v", code, out)
	}
	if code, _ := do(t, http.MethodDelete, srv.URL+"/admin/dlq/m1"); code != 404 {
		t.Errorf("drop after replay = %d, want 404", code)
	}
	ctx2, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err = st.Next(ctx2)
	if err != nil || l.Message().ID != "m1" {
		t.Fatalf("replayed message not queued again: %v", err)
	}
	// Unauthenticated calls are refused.
	resp, err := http.Get(srv.URL + "/admin/dlq")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no token = %d", resp.StatusCode)
	}
}

// GET /admin/config serves the config with relay.yaml's key names, in the
// file's order, secrets as <secret>.
func TestConfigDump(t *testing.T) {
	cfg, err := config.Parse([]byte(`
server: {admin_token: admin-tok-secret}
operator: {api_key: op-key-secret, base_url: "https://operator.example"}
sources: [{name: gh, path: /gh, verify: {type: github, secrets: [gh-secret]}}]
routes: [{name: r, source: gh, template: t}]
`), "", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(admin.New(admin.Options{
		Gatherer: prometheus.NewRegistry(),
		Token:    func() string { return "tok" },
		Config:   func() any { return cfg },
	}))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/admin/config", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	body := string(data)
	if resp.StatusCode != http.StatusOK || !json.Valid(data) {
		t.Fatalf("GET /admin/config = %d %s", resp.StatusCode, body)
	}
	for _, want := range []string{`{"server":{"listen":":8080",`, `"admin_token":"<secret>"`, `"api_key":"<secret>"`,
		`"base_url":"https://operator.example"`, `"secrets":["<secret>"]`, `"idle_timeout":"2m0s"`} {
		if !strings.Contains(body, want) {
			t.Errorf("dump lacks %s:\n%s", want, body)
		}
	}
	for _, leak := range []string{"admin-tok-secret", "op-key-secret", "gh-secret", "BaseURL", "APIKey"} {
		if strings.Contains(body, leak) {
			t.Errorf("dump shows %s:\n%s", leak, body)
		}
	}
}
