package daemon_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/daemon"
	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/xtest"
)

// A config that fails to reload because of a secret written in the wrong
// shape, or a value from the environment that does not fit its field,
// shows neither in the reload answer nor in the log.
func TestReloadErrorsHideSecretsAndEnv(t *testing.T) {
	const (
		leakedSecret = "ghsecret-reload-7c1f"
		leakedEnv    = "envvalue-soon-93ab"
		filterEnv    = "evnt_from_env == 1"
	)
	f := fake.New(fake.Options{Keys: []string{testKey}})
	api := httptest.NewServer(f)
	defer api.Close()
	dir := t.TempDir()
	cfgPath := writeConfig(t, dir, api.URL, "")
	good, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	vars := func(k string) (string, bool) {
		switch k {
		case "IDLE":
			return leakedEnv, true
		case "FILTER":
			return filterEnv, true
		case "LEAKED":
			return leakedSecret, true
		}
		return lookup(k)
	}
	load := func() (*config.Config, error) {
		data, err := os.ReadFile(cfgPath)
		if err != nil {
			return nil, err
		}
		return config.Parse(data, filepath.Dir(cfgPath), vars)
	}
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	logs := &xtest.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := daemon.New(ctx, cfg, daemon.Options{Load: load, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	admin := "http://" + d.AdminAddr()

	secretsLine := `    verify: {type: github, secrets: ["${GITHUB_WEBHOOK_SECRET}"]}`
	filterLine := `    filter: 'event == "workflow_run" && body.action == "completed" && body.workflow_run.conclusion == "failure"'`
	for _, tc := range []struct{ name, from, to, where string }{
		{"secret written as a string", secretsLine, `    verify: {type: github, secrets: "` + leakedSecret + `"}`, `sources[0] "github".verify.secrets (line 18): expected a list`},
		{"secret from env as a string", secretsLine, `    verify: {type: github, secrets: "${LEAKED}"}`, `sources[0] "github".verify.secrets (line 18): expected a list`},
		{"secret from env with a space", secretsLine, `    verify: {type: github, secrets: ["${LEAKED} "]}`, `sources[0] "github".verify.secrets[0] (line 18): has leading or trailing whitespace`},
		{"env into a duration", "  shutdown_timeout: 5s", "  shutdown_timeout: 5s\n  idle_timeout: ${IDLE}", `server.idle_timeout (line 6): invalid duration`},
		{"env into a filter", filterLine, `    filter: '${FILTER}'`, `routes[0] "ci-failures".filter (line 22): invalid (the message is not shown`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(good), tc.from) {
				t.Fatalf("base config lacks %q", tc.from)
			}
			bad := strings.Replace(string(good), tc.from, tc.to, 1)
			if err := os.WriteFile(cfgPath, []byte(bad), 0o600); err != nil {
				t.Fatal(err)
			}
			code, body := call(t, http.MethodPost, admin+"/admin/reload", "")
			if code != http.StatusBadRequest {
				t.Fatalf("reload = %d %s, want 400", code, body)
			}
			if !strings.Contains(strings.ReplaceAll(body, `\"`, `"`), tc.where) {
				t.Errorf("reload answer %s lacks %s", body, tc.where)
			}
			for _, leak := range []string{leakedSecret, leakedEnv, filterEnv, "evnt_from_env", testSecret, testKey} {
				if strings.Contains(body, leak) {
					t.Errorf("reload answer shows %q: %s", leak, body)
				}
				if l := logs.String(); strings.Contains(l, leak) {
					t.Errorf("log shows %q:\n%s", leak, l)
				}
			}
			if !strings.Contains(logs.String(), "config reload failed") {
				t.Error("the failed reload was not logged")
			}
		})
	}
	// Loading the same file (serve's path) gives the same errors.
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(string(good), secretsLine, `    verify: {type: github, secrets: "`+leakedSecret+`"}`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := load(); err == nil || strings.Contains(err.Error(), leakedSecret) {
		t.Errorf("load: %v", err)
	}
}
