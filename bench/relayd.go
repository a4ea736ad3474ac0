package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	"time"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/daemon"
	"github.com/relayd/relayd/internal/logjson"
	"github.com/relayd/relayd/internal/operator/fake"
)

const (
	hookPath    = "/hooks/github"
	benchSecret = "bench-webhook-secret"
	benchAPIKey = "ck_live_bench_key"
	benchRoute  = "pushes"
)

// relaydConfig is the relay.yaml of every relayd target: one GitHub source
// and one route taking push events into a conversation per repository.
// @NAME@ placeholders are filled by relaydOpts.yaml.
const relaydConfig = `
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
  shutdown_timeout: 5s
log:
  level: @LOGLEVEL@
storage:
  backend: @BACKEND@
  path: @DB@
  max_pending: 0
@NATS@
operator:
  base_url: @OPERATOR@
  api_key: ` + benchAPIKey + `
  timeout: 30s
  concurrency: @CONCURRENCY@
  rate_limit: {per_second: @RATE@, burst: @BURST@}
  retry: {initial: 50ms, max: 2s, max_attempts: 1000}
@HISTORY@
sources:
  - name: github
    path: ` + hookPath + `
    verify: {type: github, secrets: ["` + benchSecret + `"]}
routes:
  - name: ` + benchRoute + `
    source: github
    filter: 'event == "push" && body.repository.full_name != ""'
    conversation: 'body.repository.full_name'
@COALESCE@
    template: |
      Push {{ .delivery }} to {{ .body.repository.full_name }} ({{ .body.ref }}) by {{ .body.pusher.name }}.
      Compare: {{ .body.compare | truncate 200 }}
`

// relaydOpts fill relaydConfig.
type relaydOpts struct {
	DB          string
	Backend     string // bbolt | nats
	NATSURL     string
	Stream      string
	OperatorURL string
	Concurrency int
	Rate        float64
	Burst       int
	LogLevel    string
	MaxEvents   int // > 0: the route coalesces up to this many events a turn
	History     int // > 0: history.max_events
}

func (o relaydOpts) withDefaults() relaydOpts {
	if o.Backend == "" {
		o.Backend = "bbolt"
	}
	if o.Concurrency == 0 {
		o.Concurrency = 8
	}
	if o.Rate == 0 {
		// The contract's default account limit: dispatch trickles while
		// ingest is measured, as in production during a webhook storm.
		o.Rate, o.Burst = 2, 5
	}
	if o.Burst == 0 {
		o.Burst = 1
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	if o.Stream == "" {
		o.Stream = "RELAYD"
	}
	return o
}

func (o relaydOpts) yaml() []byte {
	o = o.withDefaults()
	coalesce := ""
	if o.MaxEvents > 0 {
		coalesce = fmt.Sprintf("    coalesce: {max_events: %d}\n", o.MaxEvents)
	}
	hist := ""
	if o.History > 0 {
		hist = fmt.Sprintf("history: {max_events: %d}\n", o.History)
	}
	nats := ""
	if o.NATSURL != "" {
		nats = fmt.Sprintf("  nats: {url: %q, stream: %q}", o.NATSURL, o.Stream)
	}
	return []byte(strings.NewReplacer(
		"@LOGLEVEL@", o.LogLevel, "@BACKEND@", o.Backend, "@DB@", o.DB, "@NATS@", nats,
		"@OPERATOR@", o.OperatorURL, "@CONCURRENCY@", strconv.Itoa(o.Concurrency),
		"@RATE@", strconv.FormatFloat(o.Rate, 'f', -1, 64), "@BURST@", strconv.Itoa(o.Burst),
		"@COALESCE@\n", coalesce, "@HISTORY@\n", hist,
	).Replace(relaydConfig))
}

func (o relaydOpts) config() (*config.Config, error) {
	return config.Parse(o.yaml(), filepath.Dir(o.DB), func(string) (string, bool) { return "", false })
}

// operatorAPI is the fake Operator on loopback, wrapped to count delivered
// messages and to timestamp their arrival.
type operatorAPI struct {
	fake      *fake.Server
	srv       *httptest.Server
	delivered atomic.Int64
	// onArrive, when set, sees each /api/chat body as it arrives.
	onArrive atomic.Pointer[func(body []byte, at time.Time)]
}

func startOperator(maxRecords int) *operatorAPI {
	a := &operatorAPI{fake: fake.New(fake.Options{Keys: []string{benchAPIKey}, MaxRequests: maxRecords})}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	return a
}

func (a *operatorAPI) URL() string { return a.srv.URL }
func (a *operatorAPI) Close()      { a.srv.Close() }

func (a *operatorAPI) serve(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	if r.URL.Path != "/api/chat" {
		a.fake.ServeHTTP(w, r)
		return
	}
	if f := a.onArrive.Load(); f != nil {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		(*f)(body, at)
	}
	sw := &statusWriter{ResponseWriter: w}
	a.fake.ServeHTTP(sw, r)
	if sw.code >= 200 && sw.code <= 299 {
		a.delivered.Add(1)
	}
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// procMode is where relayd runs: "child" (a process of its own, as
// deployed) or "inproc" (in the bench process, for profiling).
var procMode = "child"

// relaydEnv is added to the environment of relayd child processes.
var relaydEnv []string

// relaydProc is a running relayd, in this process or a child.
type relaydProc interface {
	ingestURL() string
	adminURL() string
	pid() int // 0 when in this process
	Stop() error
}

var (
	_ relaydProc = (*inproc)(nil)
	_ relaydProc = (*child)(nil)
)

// runRelayd starts relayd with o, as procMode says. A child's relay.yaml is
// written beside o.DB.
func runRelayd(o relaydOpts) (relaydProc, error) {
	if procMode == "inproc" {
		return startInproc(o)
	}
	bin, err := relaydBinary()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(o.DB), 0o750); err != nil {
		return nil, err
	}
	cfg := filepath.Join(filepath.Dir(o.DB), "relay.yaml")
	if err := os.WriteFile(cfg, o.yaml(), 0o600); err != nil {
		return nil, err
	}
	return startChild(bin, cfg)
}

func (p *inproc) ingestURL() string { return p.URL }
func (p *inproc) adminURL() string  { return p.Admin }
func (p *inproc) pid() int          { return 0 }
func (c *child) ingestURL() string  { return c.URL }
func (c *child) adminURL() string   { return c.Admin }
func (c *child) pid() int           { return c.cmd.Process.Pid }

// inproc is relayd running in this process.
type inproc struct {
	d      *daemon.Daemon
	URL    string // the GitHub source's URL
	Admin  string
	cancel context.CancelFunc
	done   chan error
}

// benchLogger formats every log line as relayd does in production (JSON,
// info) and throws it away, so the cost of logging is measured.
func benchLogger() *slog.Logger {
	return slog.New(logjson.New(io.Discard, slog.LevelInfo))
}

func startInproc(o relaydOpts) (*inproc, error) {
	cfg, err := o.config()
	if err != nil {
		return nil, fmt.Errorf("bench config: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.New(ctx, cfg, daemon.Options{Logger: benchLogger(), Version: "bench"})
	if err != nil {
		cancel()
		return nil, err
	}
	if err := d.Listen(); err != nil {
		cancel()
		d.Store().Close()
		return nil, err
	}
	p := &inproc{d: d, URL: "http://" + d.PublicAddr() + hookPath, Admin: "http://" + d.AdminAddr(), cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- d.Run(ctx) }()
	return p, nil
}

// Stop shuts relayd down gracefully and waits for it.
func (p *inproc) Stop() error {
	p.cancel()
	select {
	case err := <-p.done:
		return err
	case <-time.After(60 * time.Second):
		return errors.New("relayd did not stop within 60s")
	}
}

// ---- relayd as a child process ----

// buildRelayd compiles cmd/relayd into dir and returns the binary's path.
func buildRelayd(dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "relayd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/relayd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/relayd: %v\n%s", err, out)
	}
	return bin, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run the bench from inside the relayd module")
	}
	return filepath.Dir(mod), nil
}

// child is relayd running as a separate process.
type child struct {
	cmd   *exec.Cmd
	URL   string
	Admin string
	exit  chan error
}

// startChild runs `relayd serve -c cfgPath` and waits for it to listen.
// Its log is read and thrown away, as a container runtime would collect it.
func startChild(bin, cfgPath string) (*child, error) {
	cmd := exec.Command(bin, "serve", "-c", cfgPath)
	cmd.Env = append(os.Environ(), relaydEnv...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, exit: make(chan error, 1)}
	started := make(chan struct{})
	var once sync.Once
	var tail bytes.Buffer
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			if c.URL == "" {
				tail.Write(line)
				tail.WriteByte('\n')
				var rec map[string]any
				if json.Unmarshal(line, &rec) == nil && rec["msg"] == "relayd started" {
					listen, _ := rec["listen"].(string)
					admin, _ := rec["admin_listen"].(string)
					c.URL, c.Admin = "http://"+listen+hookPath, "http://"+admin
					once.Do(func() { close(started) })
				}
			}
		}
		c.exit <- cmd.Wait()
	}()
	select {
	case <-started:
		return c, nil
	case err := <-c.exit:
		return nil, fmt.Errorf("relayd exited before listening: %v\n%s", err, tail.String())
	case <-time.After(120 * time.Second):
		_ = cmd.Process.Kill()
		return nil, errors.New("relayd did not start within 120s")
	}
}

// Stop sends SIGTERM and waits.
func (c *child) Stop() error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.exit:
		return err
	case <-time.After(60 * time.Second):
		_ = c.cmd.Process.Kill()
		return errors.New("relayd did not stop within 60s of SIGTERM")
	}
}

// readCPU is the CPU time (user and system) a process has used, from
// /proc/<pid>/stat, in the kernel's clock ticks of 10 ms.
func readCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces: fields are counted after its ')'.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// memInfo is a process's memory as /proc/<pid>/status reports it.
type memInfo struct {
	RSS, HWM, Anon, File int64 // bytes
}

func readMem(pid int) (memInfo, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memInfo{}, err
	}
	var m memInfo
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		var dst *int64
		switch f[0] {
		case "VmRSS:":
			dst = &m.RSS
		case "VmHWM:":
			dst = &m.HWM
		case "RssAnon:":
			dst = &m.Anon
		case "RssFile:":
			dst = &m.File
		}
		if dst != nil {
			var kb int64
			fmt.Sscan(f[1], &kb)
			*dst = kb << 10
		}
	}
	return m, nil
}

// queueDepth reads relayd_queue_messages from an admin listener: messages
// ready, delayed and in flight.
func queueDepth(admin string) (int64, error) {
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var total int64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "relayd_queue_messages{") || strings.Contains(line, `state="dead"`) {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			total += int64(v)
			found = true
		}
	}
	if !found {
		return 0, errors.New("no relayd_queue_messages in /metrics")
	}
	return total, sc.Err()
}

// cpuTime is the user+system CPU time a process has used so far.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields count from after its ')'.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad /proc stat")
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, nil
}

// memPeak samples a process's memory every 100 ms until stopped and keeps
// the largest resident, anonymous and file-backed figures seen.
type memPeak struct {
	stop chan struct{}
	done chan struct{}
	max  memInfo
}

func watchMem(pid int) *memPeak {
	m := &memPeak{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if mi, err := readMem(pid); err == nil {
				m.max.RSS = max(m.max.RSS, mi.RSS)
				m.max.HWM = max(m.max.HWM, mi.HWM)
				m.max.Anon = max(m.max.Anon, mi.Anon)
				m.max.File = max(m.max.File, mi.File)
			}
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

// Stop ends the sampling and returns the peaks.
func (m *memPeak) Stop() memInfo {
	close(m.stop)
	<-m.done
	return m.max
}
