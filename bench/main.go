// Command bench measures relayd against its performance targets: durable
// ingest against two in-process ceilings (bare Echo, and Echo with HMAC
// verification and JSON decoding), dispatch throughput, idle
// ingest-to-API latency, a large queue, the bbolt and NATS backends, and
// memory under connections that trickle their bodies.
// It needs nothing but Go: every server, relayd and the fake Operator run on
// loopback. See bench/README.md for the method and the latest figures.
//
//	go run ./bench -mode ingest -c 64,8 -d 5s -rounds 2
//	go run ./bench -mode all -o bench/results.md
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/relayd/relayd/internal/gcfloor"
	"github.com/relayd/relayd/internal/samples"
)

type options struct {
	mode     string
	conns    []int
	duration time.Duration
	warmup   time.Duration
	rounds   int
	out      string
	profile  string

	// dispatch
	messages int
	convs    int
	dconc    int
	slowDur  time.Duration
	slowLat  time.Duration

	// latency
	events int

	// bigqueue
	bigN    int
	histMax int

	// trickle
	trickleN, trickleGzip, trickleLoad int

	// proc is where ingest targets run: "inproc" or "child".
	proc string
}

func main() {
	var o options
	var conns string
	flag.StringVar(&o.mode, "mode", "ingest", "ingest | dispatch | latency | bigqueue | history | backend | trickle | all (comma-separated list allowed)")
	flag.StringVar(&conns, "c", "64,8", "connections (concurrent senders) for ingest runs, comma-separated")
	flag.DurationVar(&o.duration, "d", 5*time.Second, "measured duration of one run")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warm-up before each run")
	flag.IntVar(&o.rounds, "rounds", 2, "rounds of ceiling/relayd alternation (A B A B …)")
	flag.StringVar(&o.out, "o", "", "also write the markdown report to this file")
	flag.StringVar(&o.profile, "cpuprofile", "", "with -proc inproc: write a CPU profile of the first relayd ingest run at each concurrency to PREFIX-c<conns>.pprof")
	flag.IntVar(&o.messages, "n", 20000, "dispatch: messages pre-filled")
	flag.IntVar(&o.convs, "convs", 1000, "dispatch and bigqueue: conversations the messages are spread across")
	flag.IntVar(&o.dconc, "dispatch-concurrency", 64, "dispatch: operator.concurrency")
	flag.DurationVar(&o.slowDur, "slow-d", 10*time.Second, "dispatch: measured window against the slow fake Operator")
	flag.DurationVar(&o.slowLat, "slow-latency", time.Second, "dispatch: the slow fake Operator's latency")
	flag.IntVar(&o.events, "events", 300, "latency: sequential events sent")
	flag.IntVar(&o.bigN, "big-n", 1_000_000, "bigqueue: messages queued")
	flag.IntVar(&o.histMax, "history-max", 20000, "bigqueue and history: history.max_events; 3× as many events are sent")
	flag.IntVar(&o.trickleN, "trickle-n", 600, "trickle: connections announcing 1 MiB and sending a byte a second")
	flag.IntVar(&o.trickleGzip, "trickle-gzip", 100, "trickle: connections sending gzip that inflates to 3 MiB, then a byte a second")
	flag.IntVar(&o.trickleLoad, "trickle-load", 4, "trickle: workers sending signed webhooks meanwhile")
	flag.StringVar(&o.proc, "proc", "child", "ingest: run the receivers as child processes (child) or inside the bench process (inproc)")
	var env string
	flag.StringVar(&relaydBin, "relayd-bin", "", "run this relayd binary instead of building ./cmd/relayd (to compare two builds)")
	flag.StringVar(&env, "relayd-env", "", "extra environment for relayd child processes, comma-separated (GOGC=200,GOMEMLIMIT=48MiB)")
	serveCeiling := flag.String("serve-ceiling", "", "internal: serve one ceiling (bare, verify or durable) and print its URL")
	flag.Parse()
	if *serveCeiling != "" {
		runCeiling(*serveCeiling)
		return
	}
	for _, f := range strings.Split(conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fatalf("-c: %q is not a positive number", f)
		}
		o.conns = append(o.conns, n)
	}
	if o.rounds < 1 {
		fatalf("-rounds must be at least 1")
	}
	switch o.proc {
	case "child", "inproc":
		procMode = o.proc
	default:
		fatalf("-proc: use child or inproc")
	}
	if env != "" {
		relaydEnv = strings.Split(env, ",")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	// The load generator and the fake Operator share the machine with
	// relayd and are not what is measured: their heap (the fake keeps
	// every request it answered) may grow to benchFloor before the
	// collector works harder. Under -proc inproc relayd runs in this
	// process, with the floor it has in production.
	floor := uint64(benchFloor)
	if procMode == "inproc" {
		floor = gcfloor.DefaultFloor
	}
	defer gcfloor.Start(floor)()
	defer func() {
		if binDir != "" {
			os.RemoveAll(binDir)
		}
	}()

	rep := &report{}
	rep.header(o)
	modes := strings.Split(o.mode, ",")
	if o.mode == "all" {
		modes = []string{"ingest", "dispatch", "latency", "bigqueue", "backend", "trickle"}
	}
	for _, m := range modes {
		var err error
		fmt.Fprintf(os.Stderr, "== %s\n", m)
		switch strings.TrimSpace(m) {
		case "ingest":
			err = modeIngest(ctx, o, rep)
		case "dispatch":
			err = modeDispatch(ctx, o, rep)
		case "latency":
			err = modeLatency(ctx, o, rep)
		case "bigqueue":
			err = modeBigQueue(ctx, o, rep)
			if err == nil {
				err = modeHistory(ctx, o, rep)
			}
		case "history":
			err = modeHistory(ctx, o, rep)
		case "backend":
			err = modeBackend(ctx, o, rep)
		case "trickle":
			err = modeTrickle(ctx, o, rep)
		default:
			fatalf("unknown mode %q", m)
		}
		if err != nil {
			rep.printf("\n**%s failed:** %v\n", m, err)
			fmt.Fprintf(os.Stderr, "%s: %v\n", m, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	out := rep.String()
	fmt.Print(out)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(out), 0o644); err != nil {
			fatalf("write %s: %v", o.out, err)
		}
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(2)
}

// logf reports progress on stderr; the report goes to stdout.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "  "+format+"\n", args...)
}

// pushPayload is the real GitHub push sample, signed with the bench secret.
func pushPayload() payload {
	body, err := samples.GitHub("push", "")
	if err != nil {
		fatalf("push sample: %v", err)
	}
	return signedPayload(body, benchSecret, "push")
}

// repoCount is how many repositories the load generator's pushes come
// from: the bench route keeps one conversation per repository.
const repoCount = 1000

// pushPayloads are the push sample for repoCount repositories (the
// sample's own repository name with a number appended), each signed.
func pushPayloads() []payload {
	base := pushPayload()
	const name = `"full_name": "Codertocat/Hello-World"`
	if !bytes.Contains(base.body, []byte(name)) {
		fatalf("push sample: no %s", name)
	}
	out := make([]payload, repoCount)
	for i := range out {
		body := bytes.Replace(base.body, []byte(name), fmt.Appendf(nil, `"full_name": "Codertocat/Hello-World-%04d"`, i), 1)
		out[i] = signedPayload(body, benchSecret, "push")
	}
	return out
}

// report accumulates the markdown report.
type report struct{ b strings.Builder }

func (r *report) printf(format string, args ...any) { fmt.Fprintf(&r.b, format, args...) }
func (r *report) String() string                    { return r.b.String() }

func (r *report) header(o options) {
	r.printf("# relayd bench\n\n")
	r.printf("- date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	r.printf("- machine: %d CPUs (%s), %s, %s/%s\n", runtime.NumCPU(), cpuModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if la := loadAvg(); la != "" {
		r.printf("- load average at start: %s\n", la)
	}
	r.printf("- runs: %s measured after %s warm-up, %d round(s)\n", o.duration, o.warmup, o.rounds)
	sample := pushPayload()
	r.printf("- payload: the GitHub `push` sample (%d bytes) with its repository renamed to one of %d, "+
		"signed (X-Hub-Signature-256), a fresh X-GitHub-Delivery per request\n", len(sample.body), repoCount)
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) }

func mib(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) }

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

// tempDir makes a scratch directory removed by the returned function.
func tempDir(prefix string) (string, func()) {
	dir, err := os.MkdirTemp("", "relayd-bench-"+prefix+"-")
	if err != nil {
		fatalf("temp dir: %v", err)
	}
	return dir, func() { os.RemoveAll(dir) }
}
