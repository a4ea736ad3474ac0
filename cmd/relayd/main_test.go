package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/xtest"
)

const (
	cliSecret = "cli-test-secret"
	cliKey    = "ck_live_cli_test"
)

const cliConfig = `
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
storage:
  path: %s
operator:
  base_url: %s
  api_key: ${OPERATOR_API_KEY}
  concurrency: 2
  rate_limit: {per_second: 1000, burst: 1000}
  retry: {initial: 20ms, max: 100ms, max_attempts: 1000}
sources:
  - name: github
    path: /hooks/github
    verify: {type: github, secrets: ["${GITHUB_WEBHOOK_SECRET}"]}
routes:
  - name: pushes
    source: github
    filter: 'event == "push"'
    conversation: 'body.repository.full_name'
    template: 'push {{ .delivery }} to {{ .body.repository.full_name }}'
`

func writeCLIConfig(t *testing.T, dir, apiURL string) string {
	t.Helper()
	p := filepath.Join(dir, "relay.yaml")
	cfg := fmt.Sprintf(cliConfig, filepath.Join(dir, "data", "relayd.db"), apiURL)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheck(t *testing.T) {
	t.Setenv("OPERATOR_API_KEY", cliKey)
	t.Setenv("GITHUB_WEBHOOK_SECRET", cliSecret)
	dir := t.TempDir()
	cfg := writeCLIConfig(t, dir, "https://operator.io")
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"check", "-c", cfg}, &out, &errOut); code != 0 {
		t.Fatalf("check exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"is valid", "github", "/hooks/github", "pushes"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), cliKey) || strings.Contains(out.String(), cliSecret) {
		t.Error("check output shows a secret")
	}

	good := string(must(os.ReadFile(cfg)))
	filter := `filter: 'event == "push"'`
	secrets := `secrets: ["${GITHUB_WEBHOOK_SECRET}"]`
	for _, tc := range []struct{ name, from, to, want string }{
		{"broken filter", filter, `filter: 'event =='`, `routes[0] "pushes".filter (line 20): unexpected token EOF`},
		{"unknown name", filter, `filter: 'evnt == "push"'`, `routes[0] "pushes".filter (line 20): unknown name evnt (1:1)`},
		// body is untyped: this compiled once, then dropped every event.
		{"filter not boolean", filter, `filter: body.repository.full_name`, `routes[0] "pushes".filter (line 20): not known to be true or false`},
		{"secret where a list goes", secrets, `secrets: "${GITHUB_WEBHOOK_SECRET}"`, `sources[0] "github".verify.secrets (line 16): expected a list, got a single value`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(cfg, []byte(strings.Replace(good, tc.from, tc.to, 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			out.Reset()
			errOut.Reset()
			if code := run(context.Background(), []string{"check", "-c", cfg}, &out, &errOut); code == 0 {
				t.Fatalf("check accepted it:\n%s", out.String())
			}
			if !strings.Contains(errOut.String(), tc.want) {
				t.Errorf("error lacks %s:\n%s", tc.want, errOut.String())
			}
			if strings.Contains(errOut.String()+out.String(), cliSecret) {
				t.Errorf("check shows the secret: %s", errOut.String())
			}
			// serve refuses it with the same words.
			out.Reset()
			errOut.Reset()
			if code := run(context.Background(), []string{"serve", "-c", cfg}, &out, &errOut); code == 0 {
				t.Fatal("serve accepted it")
			}
			if !strings.Contains(errOut.String(), tc.want) || strings.Contains(errOut.String()+out.String(), cliSecret) {
				t.Errorf("serve: error lacks %s or shows the secret:\n%s", tc.want, errOut.String())
			}
		})
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	t.Setenv("OPERATOR_API_KEY", cliKey)
	t.Setenv("GITHUB_WEBHOOK_SECRET", cliSecret)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"check", "-c", "../../relay.yaml"}, &out, &errOut); code != 0 {
		t.Fatalf("relay.yaml does not pass check: %s", errOut.String())
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestMain(m *testing.M) {
	code := m.Run()
	xtest.RemoveRelaydBinary()
	os.Exit(code)
}

type child struct {
	cmd    *exec.Cmd
	public string
	admin  string

	mu   sync.Mutex
	logs []string // its log lines, the last few hundred
}

func (c *child) logLine(l string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.logs) >= 400 {
		c.logs = c.logs[1:]
	}
	c.logs = append(c.logs, l)
}

// Logs returns the child's last log lines, for a failing test to show.
func (c *child) Logs() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.logs, "\n")
}

func (c *child) push(t *testing.T, delivery, repo string) int {
	t.Helper()
	body := []byte(fmt.Sprintf(`{"ref":"refs/heads/main","repository":{"full_name":%q}}`, repo))
	m := hmac.New(sha256.New, []byte(cliSecret))
	m.Write(body)
	req, _ := http.NewRequest(http.MethodPost, c.public+"/hooks/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post %s: %v", delivery, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// Every event answered 202 before a SIGKILL is delivered by the next
// process on the same bbolt file.
func TestSIGKILLLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	f := fake.New(fake.Options{Keys: []string{cliKey}})
	f.SetDown(true)
	api := httptest.NewServer(f)
	defer api.Close()
	cfg := writeCLIConfig(t, t.TempDir(), api.URL)

	c := startServe(t, cfg)
	accepted := map[string]bool{}
	for i := range 20 {
		d := fmt.Sprintf("kill-%d", i)
		if code := c.push(t, d, fmt.Sprintf("octo/r%d", i%4)); code == http.StatusAccepted {
			accepted[d] = true
		} else {
			t.Fatalf("event %d answered %d", i, code)
		}
	}
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.cmd.Wait()

	f.SetDown(false)
	c2 := startServe(t, cfg)
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := map[string]bool{}
		for _, r := range f.Requests() {
			if r.Status >= 200 && r.Status < 300 {
				got[strings.Fields(xtest.Prompt(r.Text))[1]] = true
			}
		}
		missing := 0
		for d := range accepted {
			if !got[d] {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d accepted events never reached the API", missing, len(accepted))
		}
		time.Sleep(20 * time.Millisecond)
	}
	c2.cmd.Process.Signal(syscall.SIGTERM)
	if err := c2.cmd.Wait(); err != nil {
		t.Errorf("relayd exited badly after SIGTERM: %v", err)
	}
}

// send, dlq and chats against a running daemon.
func TestSendAndAdminCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	f := fake.New(fake.Options{Keys: []string{cliKey}})
	api := httptest.NewServer(f)
	defer api.Close()
	cfg := writeCLIConfig(t, t.TempDir(), api.URL)
	c := startServe(t, cfg)
	t.Setenv("OPERATOR_API_KEY", cliKey)
	t.Setenv("GITHUB_WEBHOOK_SECRET", cliSecret)

	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"send", "--source", "github", "--event", "push", "-c", cfg, "--url", c.public}, &out, &errOut); code != 0 {
		t.Fatalf("send exit %d: %s %s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "202") {
		t.Errorf("send output: %s", out.String())
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(f.Requests()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(f.Requests()) == 0 {
		t.Fatal("sent event never reached the API")
	}

	// The next message of the conversation is refused for good.
	f.FailNext(1, fake.Fault{Status: 400, Code: "bad_request", Transient: new(bool)})
	out.Reset()
	if code := run(context.Background(), []string{"send", "--source", "github", "--event", "push", "-c", cfg, "--url", c.public}, &out, &errOut); code != 0 {
		t.Fatalf("send exit %d: %s", code, errOut.String())
	}
	var listed string
	for time.Now().Before(deadline) {
		out.Reset()
		if code := run(context.Background(), []string{"dlq", "list", "--admin", c.admin}, &out, &errOut); code != 0 {
			t.Fatalf("dlq list exit %d: %s", code, errOut.String())
		}
		if strings.Contains(out.String(), "pushes") {
			listed = out.String()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(listed, "400") || !strings.Contains(listed, "bad_request") {
		t.Fatalf("dlq list does not show the dead letter with its status and code:\n%s", listed)
	}
	id := strings.Fields(strings.Split(listed, "\n")[1])[0]
	out.Reset()
	if code := run(context.Background(), []string{"dlq", "replay", id, "--admin", c.admin}, &out, &errOut); code != 0 {
		t.Fatalf("dlq replay exit %d: %s", code, errOut.String())
	}
	for time.Now().Before(deadline) {
		ok := 0
		for _, r := range f.Requests() {
			if r.Status == 200 {
				ok++
			}
		}
		if ok == 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	out.Reset()
	if code := run(context.Background(), []string{"chats", "list", "--admin", c.admin}, &out, &errOut); code != 0 {
		t.Fatalf("chats list exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "pushes") || !strings.Contains(out.String(), "chat_") {
		t.Errorf("chats list:\n%s", out.String())
	}
}

// Every kind of sender in one config passes relayd check.
func TestSendersExampleIsValid(t *testing.T) {
	for _, v := range []string{"OPERATOR_API_KEY", "GITHUB_WEBHOOK_SECRET", "GITLAB_TOKEN", "BUILDKITE_SECRET",
		"CIRCLECI_SECRET", "CI_SECRET", "SIGNED_SECRET", "S3_TOKEN", "PUBSUB_TOKEN", "EVENTS_TOKEN"} {
		t.Setenv(v, "ck_live_"+strings.ToLower(v))
	}
	t.Setenv("LANDING_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"check", "-c", "../../examples/senders.yaml"}, &out, &errOut); code != 0 {
		t.Fatalf("examples/senders.yaml does not pass check: %s", errOut.String())
	}
	for _, typ := range []string{"github", "gitlab", "buildkite", "circleci", "hmac", "stripe", "standard-webhooks", "bearer", "none"} {
		if !strings.Contains(out.String(), typ) {
			t.Errorf("check output lacks verify type %s", typ)
		}
	}
}
