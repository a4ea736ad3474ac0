package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/xtest"
)

const kindsToken = "kinds-test-token"

// kindsConfig has one source per envelope relayd send generates, each
// with a route that takes everything.
const kindsConfig = `
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
storage:
  path: {{DB}}
operator:
  base_url: {{API}}
  api_key: ${OPERATOR_API_KEY}
  rate_limit: {per_second: 1000, burst: 1000}
  retry: {initial: 20ms, max: 100ms, max_attempts: 1000}
sources:
  - name: github
    path: /hooks/github
    verify: {type: github, secrets: ["${GITHUB_WEBHOOK_SECRET}"]}
  - name: s3
    path: /hooks/s3
    unwrap: s3
    verify: {type: bearer, secrets: ["` + kindsToken + `"]}
  - name: pubsub
    path: /hooks/pubsub
    unwrap: pubsub
    verify: {type: bearer, secrets: ["` + kindsToken + `"]}
  - name: events
    path: /hooks/events
    unwrap: cloudevents
    verify: {type: bearer, secrets: ["` + kindsToken + `"]}
  - name: gitea
    path: /hooks/gitea
    verify: {type: gitea, secrets: ["` + kindsToken + `"]}
routes:
  - {name: gh, source: github, template: '{{ .event }} {{ .delivery }}'}
  - {name: objects, source: s3, template: '{{ .event }} {{ .object.bucket }}/{{ .object.key }}'}
  - {name: gcs, source: pubsub, template: '{{ .event }} {{ .object.bucket }}/{{ .object.key }} {{ .body.name }}'}
  - {name: ce, source: events, template: '{{ .event }} {{ .body.message }}'}
  - {name: forge, source: gitea, template: 'gitea {{ .event }} {{ .delivery }}'}
`

func writeKindsConfig(t *testing.T, apiURL string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "relay.yaml")
	cfg := strings.NewReplacer("{{DB}}", filepath.Join(dir, "data", "relayd.db"), "{{API}}", apiURL).Replace(kindsConfig)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startServe runs `relayd serve` with extra arguments, JSON logs, and waits
// for its "relayd started" line.
func startServe(t *testing.T, cfg string, extra ...string) *child {
	t.Helper()
	bin, err := xtest.RelaydBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"serve", "-c", cfg, "--log-format", "json"}, extra...)...)
	cmd.Env = append(os.Environ(), "OPERATOR_API_KEY="+cliKey, "GITHUB_WEBHOOK_SECRET="+cliSecret)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd}
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var once sync.Once
		for sc.Scan() {
			c.logLine(sc.Text())
			var raw map[string]any
			if json.Unmarshal(sc.Bytes(), &raw) == nil && raw["msg"] == "relayd started" {
				l, _ := raw["listen"].(string)
				a, _ := raw["admin_listen"].(string)
				c.public, c.admin = "http://"+l, "http://"+a
				once.Do(func() { close(started) })
			}
		}
	}()
	select {
	case <-started:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("relayd did not start within 60s")
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil { // not yet waited for by the test
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return c
}

type ingestAnswer struct {
	Delivery  string   `json:"delivery"`
	Routes    []string `json:"routes"`
	Duplicate bool     `json:"duplicate"`
}

// answerOf reads the JSON answer from relayd send's or curl's output.
func answerOf(t *testing.T, out string) ingestAnswer {
	t.Helper()
	i := strings.Index(out, "{")
	if i < 0 {
		t.Fatalf("no JSON answer in %q", out)
	}
	var a ingestAnswer
	if err := json.Unmarshal([]byte(strings.TrimSpace(out[i:])), &a); err != nil {
		t.Fatalf("answer %q: %v", out[i:], err)
	}
	return a
}

func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), code
}

// serveKinds runs a daemon on kindsConfig against a fake Operator, and sets
// the environment the CLI's commands read that config with.
func serveKinds(t *testing.T) (*child, *fake.Server, string) {
	t.Helper()
	f := fake.New(fake.Options{Keys: []string{cliKey}})
	api := httptest.NewServer(f)
	t.Cleanup(api.Close)
	cfg := writeKindsConfig(t, api.URL)
	c := startServe(t, cfg)
	t.Setenv("OPERATOR_API_KEY", cliKey)
	t.Setenv("GITHUB_WEBHOOK_SECRET", cliSecret)
	return c, f, cfg
}

// relayd send generates each sender's format, --delivery makes a retry
// that dedupe answers as a duplicate, and --print's curl command sends
// the same signed request.
func TestSendEveryKind(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	c, f, cfg := serveKinds(t)

	for _, tc := range []struct {
		name  string
		args  []string
		route string
		text  *regexp.Regexp // what the route rendered, so the envelope was read
	}{
		{"github", []string{"--source", "github", "--event", "push"}, "gh", regexp.MustCompile(`^push kind-github-1$`)},
		{"s3", []string{"--source", "s3"}, "objects", regexp.MustCompile(`^ObjectCreated:Put landing/incoming/report 2026\.csv$`)},
		{"s3 via sns", []string{"--source", "s3", "--sns", "--event", "ObjectCreated:Copy"}, "objects", regexp.MustCompile(`^ObjectCreated:Copy landing/`)},
		{"pubsub", []string{"--source", "pubsub", "--set", "name=reports/q3.csv"}, "gcs", regexp.MustCompile(`^OBJECT_FINALIZE landing/incoming/report\.csv reports/q3\.csv$`)},
		{"cloudevents", []string{"--source", "events", "--event", "com.example.built"}, "ce", regexp.MustCompile(`^com\.example\.built a test event from relayd send$`)},
		{"gitea", []string{"--source", "gitea", "--event", "push"}, "forge", regexp.MustCompile(`^gitea push kind-gitea-1$`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "kind-" + strings.ReplaceAll(tc.name, " ", "-") + "-1"
			args := append([]string{"send", "-c", cfg, "--url", c.public, "--delivery", id}, tc.args...)
			out, errOut, code := runCLI(t, args...)
			if code != 0 {
				t.Fatalf("send exit %d: %s %s", code, out, errOut)
			}
			if a := answerOf(t, out); len(a.Routes) != 1 || a.Routes[0] != tc.route || a.Duplicate {
				t.Fatalf("first send: %s", out)
			}
			out, errOut, code = runCLI(t, args...)
			if code != 0 {
				t.Fatalf("second send exit %d: %s %s", code, out, errOut)
			}
			if a := answerOf(t, out); !a.Duplicate {
				t.Errorf("the same --delivery again is not a duplicate: %s", out)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				for _, r := range f.Requests() {
					if tc.text.MatchString(xtest.Prompt(r.Text)) {
						return
					}
				}
				if time.Now().After(deadline) {
					var texts []string
					for _, r := range f.Requests() {
						texts = append(texts, xtest.Prompt(r.Text))
					}
					t.Fatalf("no message matches %s; got %q", tc.text, texts)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}

	t.Run("print", func(t *testing.T) {
		for _, source := range []string{"github", "s3", "pubsub", "events"} {
			out, errOut, code := runCLI(t, "send", "-c", cfg, "--url", c.public, "--source", source,
				"--delivery", "printed-'quoted'-"+source, "--set", `note=it's $HOME and "quotes"`, "--print")
			if code != 0 {
				t.Fatalf("send --print exit %d: %s", code, errOut)
			}
			if !strings.HasPrefix(out, "curl ") {
				t.Fatalf("--print output is not a curl command: %s", out)
			}
			for i, wantDup := range []bool{false, true} {
				res, err := exec.Command("sh", "-c", out).CombinedOutput()
				if err != nil {
					t.Fatalf("%s: running the printed command: %v\n%s", source, err, res)
				}
				if a := answerOf(t, string(res)); a.Duplicate != wantDup || (!wantDup && len(a.Routes) != 1) {
					t.Errorf("%s: printed command, run %d: %s", source, i+1, res)
				}
			}
		}
	})
}

// Operations: healthcheck, version, -o json, and a scrape that passes
// promtool's checks.
func TestOperationsCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	c, f, cfg := serveKinds(t)

	if out, errOut, code := runCLI(t, "healthcheck", "--admin", c.admin); code != 0 || !strings.Contains(out, "200") {
		t.Errorf("healthcheck against a running daemon: exit %d %s %s", code, out, errOut)
	}
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer dead.Close()
	if _, _, code := runCLI(t, "healthcheck", "--admin", dead.URL); code == 0 {
		t.Error("healthcheck passed on a 503")
	}
	dead.Close()
	if _, _, code := runCLI(t, "healthcheck", "--admin", dead.URL, "--timeout", "5s"); code == 0 {
		t.Error("healthcheck passed with nothing listening")
	}

	// A dead letter, so the listings have a row.
	f.FailNext(1, fake.Fault{Status: 400, Code: "bad_request", Transient: new(bool)})
	if out, errOut, code := runCLI(t, "send", "-c", cfg, "--url", c.public, "--source", "s3"); code != 0 {
		t.Fatalf("send: %s %s", out, errOut)
	}
	var dls []map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for len(dls) == 0 {
		out, errOut, code := runCLI(t, "dlq", "list", "--admin", c.admin, "-o", "json")
		if code != 0 {
			t.Fatalf("dlq list -o json: exit %d %s", code, errOut)
		}
		if err := json.Unmarshal([]byte(out), &dls); err != nil {
			t.Fatalf("dlq list -o json is not a JSON array: %v\n%s", err, out)
		}
		if time.Now().After(deadline) {
			t.Fatal("no dead letter listed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if dls[0]["route"] != "objects" {
		t.Errorf("dead letter: %v", dls[0])
	}
	out, errOut, code := runCLI(t, "chats", "list", "--admin", c.admin, "-o", "json")
	var chats []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &chats) != nil {
		t.Errorf("chats list -o json: exit %d %s %s", code, out, errOut)
	}
	if _, _, code := runCLI(t, "dlq", "list", "--admin", c.admin, "-o", "yaml"); code != 2 {
		t.Errorf("-o yaml: exit %d, want 2", code)
	}

	// A duplicate and an ingest, so every family has samples.
	for range 2 {
		runCLI(t, "send", "-c", cfg, "--url", c.public, "--source", "github", "--delivery", "metrics-dup")
	}
	resp, err := http.Get(c.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	scrape, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	problems, err := promlint.New(bytes.NewReader(scrape)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, want := range []string{
		`relayd_rate_limit_wait_seconds_total{scope="account"}`,
		`relayd_ingest_duration_seconds_count{source="github"}`,
		`relayd_duplicates_total{source="github"} 1`,
		`relayd_dispatch_paused 0`,
	} {
		if !bytes.Contains(scrape, []byte(want)) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if bytes.Contains(scrape, []byte(`reason="unauthorized"`)) {
		t.Error("relayd_dead_letters_total has reason=unauthorized, yet a 401 never dead-letters")
	}
	// Every relayd metric the alert rules and the dashboard use is scraped.
	for _, f := range []string{"../../deploy/prometheus/alerts.yaml", "../../deploy/grafana/relayd-dashboard.json"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range regexp.MustCompile(`relayd_[a-z_]+[a-z]`).FindAllString(string(data), -1) {
			family := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
			if !bytes.Contains(scrape, []byte("# TYPE "+family+" ")) {
				t.Errorf("%s uses %s, which relayd does not export", filepath.Base(f), name)
			}
		}
	}
	if promtool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(scrape)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	}
}

func TestVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin, err := xtest.RelaydBinary()
	if err != nil {
		t.Fatal(err)
	}
	a, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) || !strings.HasPrefix(string(a), "relayd ") {
		t.Errorf("version %q, --version %q", a, b)
	}
}

func TestBuildVersion(t *testing.T) {
	info := func(v string, settings ...debug.BuildSetting) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Path: "github.com/relayd/relayd", Version: v}, Settings: settings}
	}
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "0ba028b5"}
	dirty := debug.BuildSetting{Key: "vcs.modified", Value: "true"}
	for _, tc := range []struct {
		name             string
		version, rev     string
		info             *debug.BuildInfo
		ok               bool
		wantVer, wantRev string
	}{
		{"stamped", "v1.2.0", "abc", info("v9.9.9", rev), true, "v1.2.0", "abc"},
		{"go install", "dev", "unknown", info("v1.3.0"), true, "v1.3.0", "unknown"},
		{"go build in a checkout", "dev", "unknown", info("(devel)", rev), true, "dev", "0ba028b5"},
		{"modified checkout", "dev", "unknown", info("(devel)", rev, dirty), true, "dev", "0ba028b5-dirty"},
		{"no build info", "dev", "unknown", nil, false, "dev", "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, r := buildVersion(tc.version, tc.rev, tc.info, tc.ok)
			if v != tc.wantVer || r != tc.wantRev {
				t.Errorf("got %s (%s), want %s (%s)", v, r, tc.wantVer, tc.wantRev)
			}
		})
	}
}

// check --dev passes without an Operator key; check --online needs the key
// to authenticate and shows the plan.
func TestCheckDevAndOnline(t *testing.T) {
	t.Setenv("GITHUB_WEBHOOK_SECRET", cliSecret)
	t.Setenv("OPERATOR_API_KEY", "")
	os.Unsetenv("OPERATOR_API_KEY")
	f := fake.New(fake.Options{Keys: []string{cliKey}})
	api := httptest.NewServer(f)
	defer api.Close()
	cfg := writeCLIConfig(t, t.TempDir(), api.URL)

	if _, errOut, code := runCLI(t, "check", "-c", cfg); code == 0 {
		t.Error("check passed with no Operator key")
	} else if !strings.Contains(errOut, "api_key") {
		t.Errorf("check without a key does not name operator.api_key: %s", errOut)
	}
	if out, errOut, code := runCLI(t, "check", "--dev", "-c", cfg); code != 0 || !strings.Contains(out, "is valid") {
		t.Errorf("check --dev: exit %d %s %s", code, out, errOut)
	}
	if out, errOut, code := runCLI(t, "check", "--dev", "-c", "../../relay.yaml"); code != 0 {
		t.Errorf("the quickstart's relay.yaml fails check --dev: %s %s", out, errOut)
	}
	if out, errOut, code := runCLI(t, "check", "--dev", "--online", "-c", cfg); code != 0 || !strings.Contains(out, "authenticated") {
		t.Errorf("check --dev --online: exit %d %s %s", code, out, errOut)
	}

	t.Setenv("OPERATOR_API_KEY", cliKey)
	out, errOut, code := runCLI(t, "check", "--online", "-c", cfg)
	if code != 0 || !strings.Contains(out, "plan pro") || !strings.Contains(out, "token limit 15000000") {
		t.Errorf("check --online with a good key: exit %d %s %s", code, out, errOut)
	}
	t.Setenv("OPERATOR_API_KEY", "ck_live_wrong")
	if _, _, code := runCLI(t, "check", "--online", "-c", cfg); code == 0 {
		t.Error("check --online passed with a key the API refuses")
	}

	// An API that answers but does not authenticate the key.
	unauth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"authenticated":false}`)
	}))
	defer unauth.Close()
	cfg2 := writeCLIConfig(t, t.TempDir(), unauth.URL)
	if out, errOut, code := runCLI(t, "check", "--online", "-c", cfg2); code == 0 {
		t.Errorf("check --online passed with authenticated=false: %s", out)
	} else if !strings.Contains(errOut, "authenticat") {
		t.Errorf("error does not say why: %s", errOut)
	}
}

// JSON logs carry durations as seconds; --dev defaults to text logs.
func TestLogs(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger(&buf, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("delivered", "took", 2180*time.Microsecond, slog.Group("g", "wait", 1500*time.Millisecond))
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if line["took"] != 0.00218 || line["g"].(map[string]any)["wait"] != 1.5 {
		t.Errorf("durations not in seconds: %s", buf.String())
	}

	t.Setenv("GITHUB_WEBHOOK_SECRET", cliSecret)
	t.Setenv("OPERATOR_API_KEY", cliKey)
	cfgPath := writeCLIConfig(t, t.TempDir(), "https://operator.io")
	for _, tc := range []struct {
		dev  bool
		want string
	}{{true, "text"}, {false, "json"}} {
		cfg, err := config.LoadWith(cfgPath, config.Options{Dev: tc.dev})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Log.Format != tc.want {
			t.Errorf("dev=%t: log format %q, want %q", tc.dev, cfg.Log.Format, tc.want)
		}
	}
}
