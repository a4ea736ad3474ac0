package reliability

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/xtest"
)

const (
	secret = "reliability-webhook-secret"
	apiKey = "ck_live_reliability"
)

func TestMain(m *testing.M) {
	code := m.Run()
	xtest.RemoveRelaydBinary()
	os.Exit(code)
}

// settings fill the test config.
type settings struct {
	db          string
	apiURL      string
	concurrency int
	attempts    int           // retry.max_attempts
	retryMax    time.Duration // retry.max
	maxPending  int
	minFree     int64 // storage.min_free_bytes; 0: the default
}

const configTemplate = `
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
  shutdown_timeout: 5s
storage:
  path: @DB@
  max_pending: @MAXPENDING@
  min_free_bytes: @MINFREE@
operator:
  base_url: @API@
  api_key: ` + apiKey + `
  timeout: 10s
  concurrency: @CONCURRENCY@
  rate_limit: {per_second: 1000, burst: 1000}
  retry: {initial: 20ms, max: @RETRYMAX@, max_attempts: @ATTEMPTS@}
sources:
  - name: github
    path: /hooks/github
    verify: {type: github, secrets: ["` + secret + `"]}
routes:
  - name: pushes
    source: github
    filter: 'event == "push"'
    conversation: 'body.repository.full_name'
    template: 'delivery={{ .delivery }} repo={{ .body.repository.full_name }} {{ .body.blob }}'
`

func writeConfig(t *testing.T, s settings) string {
	t.Helper()
	if s.concurrency == 0 {
		s.concurrency = 8
	}
	if s.attempts == 0 {
		s.attempts = 1000
	}
	if s.retryMax == 0 {
		s.retryMax = 200 * time.Millisecond
	}
	if s.minFree == 0 {
		s.minFree = 64 << 20
	}
	cfg := strings.NewReplacer("@MINFREE@", strconv.FormatInt(s.minFree, 10), "@DB@", s.db, "@API@", s.apiURL, "@CONCURRENCY@", strconv.Itoa(s.concurrency),
		"@ATTEMPTS@", strconv.Itoa(s.attempts), "@RETRYMAX@", s.retryMax.String(),
		"@MAXPENDING@", strconv.Itoa(s.maxPending)).Replace(configTemplate)
	path := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// daemon is one relayd child process.
type daemon struct {
	t      *testing.T
	cmd    *exec.Cmd
	public string // http://host:port
	admin  string
	exited chan struct{}
	mu     sync.Mutex
	tail   []string // the last log lines, for failure messages
}

// start runs `relayd serve -c cfg` and waits until it listens.
func start(t *testing.T, cfg string) *daemon {
	t.Helper()
	bin, err := xtest.RelaydBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "-c", cfg)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, cmd: cmd, exited: make(chan struct{})}
	started := make(chan struct{})
	var once sync.Once
	go func() {
		defer close(d.exited)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			d.mu.Lock()
			if d.tail = append(d.tail, line); len(d.tail) > 50 {
				d.tail = d.tail[1:]
			}
			d.mu.Unlock()
			var rec struct {
				Msg         string `json:"msg"`
				Listen      string `json:"listen"`
				AdminListen string `json:"admin_listen"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "relayd started" {
				d.public, d.admin = "http://"+rec.Listen, "http://"+rec.AdminListen
				once.Do(func() { close(started) })
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case <-started:
	case <-d.exited:
		t.Fatalf("relayd exited before listening:\n%s", d.logTail())
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("relayd did not start within 90s:\n%s", d.logTail())
	}
	t.Cleanup(func() { d.kill() })
	return d
}

func (d *daemon) logTail() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.tail, "\n")
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// kill sends SIGKILL and waits for the process to be gone.
func (d *daemon) kill() {
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop() {
	d.t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		if st := d.cmd.ProcessState; st != nil && !st.Success() {
			d.t.Errorf("relayd exited with %v after SIGTERM:\n%s", st, d.logTail())
		}
	case <-time.After(60 * time.Second):
		d.t.Errorf("relayd did not stop within 60s of SIGTERM")
		d.kill()
	}
}

// metric sums the samples of one metric family (matching all label
// filters given as `name="value"`) from the admin listener.
func (d *daemon) metric(name string, labels ...string) (float64, error) {
	resp, err := http.Get(d.admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
lines:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue lines
			}
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
		found = true
	}
	if !found {
		return 0, fmt.Errorf("no %s in /metrics", name)
	}
	return sum, sc.Err()
}

// pending is the number of messages queued and not dead.
func (d *daemon) pending() (int, error) {
	var n float64
	for _, st := range []string{"ready", "delayed", "inflight"} {
		v, err := d.metric("relayd_queue_messages", `state="`+st+`"`)
		if err != nil {
			return 0, err
		}
		n += v
	}
	return int(n), nil
}

// deadLetters lists the dead letters through the admin API.
func (d *daemon) deadLetters() ([]queue.DeadLetter, error) {
	resp, err := http.Get(d.admin + "/admin/dlq")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		DeadLetters []queue.DeadLetter `json:"dead_letters"`
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /admin/dlq: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	return out.DeadLetters, nil
}

// memory reads the child's resident set from /proc.
func rss(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// operatorAPI is the fake Operator served from the test process.
type operatorAPI struct {
	*fake.Server
	URL string
}

func newOperator(t *testing.T) *operatorAPI {
	f := fake.New(fake.Options{Keys: []string{apiKey}})
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return &operatorAPI{Server: f, URL: srv.URL}
}

// deliveries maps each delivery id found in a taken request's prompt to
// how many times a request carrying it was taken (2xx) or recognised as
// already taken (409, same Idempotency-Key).
func (a *operatorAPI) deliveries() map[string]int {
	out := map[string]int{}
	for _, r := range a.Requests() {
		if (r.Status >= 200 && r.Status <= 299) || r.Status == http.StatusConflict {
			if id, ok := deliveryOf(xtest.Prompt(r.Text)); ok {
				out[id]++
			}
		}
	}
	return out
}

func deliveryOf(prompt string) (string, bool) {
	rest, ok := strings.CutPrefix(prompt, "delivery=")
	if !ok {
		return "", false
	}
	id, _, _ := strings.Cut(rest, " ")
	return id, true
}

// sender posts signed push events and remembers which were accepted.
type sender struct {
	client *http.Client
	url    atomic.Pointer[string] // the current daemon's ingest URL
	blob   string

	mu       sync.Mutex
	accepted map[string]bool
	codes    map[int]int
	errors   int
	inflight atomic.Int64
}

func newSender(blobBytes int) *sender {
	return &sender{
		client:   &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}},
		blob:     strings.Repeat("x", blobBytes),
		accepted: map[string]bool{},
		codes:    map[int]int{},
	}
}

func (s *sender) target(d *daemon) {
	u := d.public + "/hooks/github"
	s.url.Store(&u)
	s.client.CloseIdleConnections()
}

// send posts one event; it returns the status (0 when there was no answer).
func (s *sender) send(ctx context.Context, delivery, repo string) int {
	body := fmt.Appendf(nil, `{"ref":"refs/heads/main","repository":{"full_name":%q},"blob":%q}`, repo, s.blob)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, *s.url.Load(), bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
	s.inflight.Add(1)
	resp, err := s.client.Do(req)
	s.inflight.Add(-1)
	if err != nil {
		if ctx.Err() == nil { // not cut by the end of the run
			s.mu.Lock()
			s.errors++
			s.mu.Unlock()
		}
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	s.mu.Lock()
	s.codes[resp.StatusCode]++
	if resp.StatusCode == http.StatusAccepted {
		s.accepted[delivery] = true
	}
	s.mu.Unlock()
	return resp.StatusCode
}

// run sends from workers goroutines until ctx ends, each waiting pause
// between events; ids are prefix-worker-n and repositories rotate among
// repos.
func (s *sender) run(ctx context.Context, workers, repos int, prefix string, pause time.Duration) (wait func()) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				code := s.send(ctx, fmt.Sprintf("%s-%d-%d", prefix, w, n), fmt.Sprintf("octo/repo-%d", (w+n)%repos))
				if code == 0 || code >= 500 {
					pause := 20 * time.Millisecond // the daemon is restarting or refusing
					select {
					case <-ctx.Done():
					case <-time.After(pause):
					}
					continue
				}
				if pause > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(pause):
					}
				}
			}
		})
	}
	return wg.Wait
}

func (s *sender) acceptedIDs() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]bool, len(s.accepted))
	for k := range s.accepted {
		out[k] = true
	}
	return out
}

func (s *sender) summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("answers %v, %d without answer, %d accepted", s.codes, s.errors, len(s.accepted))
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", within, what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// missing lists accepted ids the API never took.
func missing(accepted map[string]bool, got map[string]int) []string {
	var out []string
	for id := range accepted {
		if got[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}
