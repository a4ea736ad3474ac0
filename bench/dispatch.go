package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/relayd/relayd/internal/daemon"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/xtime"
)

// prefillPrompt is about the size of the bench route's rendered prompt; the
// bracket at the end lets the order check find conversation and sequence.
func prefillPrompt(id string, conv, seq int) string {
	return fmt.Sprintf("Push %s to octo/repo-%04d (refs/heads/main) by Codertocat.\n"+
		"Compare: https://github.com/octo/repo-%04d/compare/6113728f27ae...000000000000\n[conv=%d seq=%d]", id, conv, conv, conv, seq)
}

var promptTag = regexp.MustCompile(`\[conv=(\d+) seq=(\d+)\]`)

// prefill stores n messages of the bench route spread round-robin across
// convs conversations, straight through the backend's Enqueue in batches
// of batch, with relayd not running. Message i is sequence i/convs of
// conversation i%convs.
func prefill(ctx context.Context, o relaydOpts, tag string, n, convs, batch int) error {
	cfg, err := o.config()
	if err != nil {
		return err
	}
	st, err := daemon.OpenBackend(ctx, cfg, benchLogger())
	if err != nil {
		return err
	}
	defer st.Close()
	now := time.Now()
	for i := 0; i < n; i += batch {
		msgs := make([]queue.Message, 0, min(batch, n-i))
		for j := i; j < min(n, i+batch); j++ {
			id := fmt.Sprintf("%s-%08d", tag, j)
			conv, seq := j%convs, j/convs
			msgs = append(msgs, queue.Message{
				ID: id, Route: benchRoute, ConversationKey: fmt.Sprintf("octo/repo-%04d", conv),
				Prompt: prefillPrompt(id, conv, seq), Source: "github", Delivery: id, Event: "push", EnqueuedAt: now,
			})
		}
		if _, err := st.Enqueue(ctx, queue.Batch{Messages: msgs}); err != nil {
			return fmt.Errorf("prefill: enqueue: %w", err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// orderCheck verifies from the fake's records that every conversation's
// messages arrived in enqueue order, and counts duplicates.
type orderCheck struct {
	delivered, duplicates, outOfOrder, overlaps int
}

func checkOrder(api *operatorAPI) orderCheck {
	var c orderCheck
	last := map[int]int{}
	seen := map[string]bool{}
	for _, r := range api.fake.Requests() {
		if r.Status < 200 || r.Status > 299 {
			continue
		}
		if seen[r.IdempotencyKey] {
			c.duplicates++
			continue
		}
		seen[r.IdempotencyKey] = true
		c.delivered++
		m := promptTag.FindStringSubmatch(r.Text)
		if m == nil {
			continue
		}
		conv, _ := strconv.Atoi(m[1])
		seq, _ := strconv.Atoi(m[2])
		if prev, ok := last[conv]; ok && seq <= prev {
			c.outOfOrder++
		}
		last[conv] = seq
	}
	c.overlaps = api.fake.Overlaps()
	return c
}

type drainResult struct {
	n       int
	elapsed time.Duration
	cpu     time.Duration // relayd's, from its start; 0 when it runs in this process
	fakeCPU time.Duration // this process's (the fake Operator's) while relayd drains
	check   orderCheck
}

func (d drainResult) rate() float64 { return float64(d.n) / d.elapsed.Seconds() }

func (d drainResult) cpuPerMsg() string {
	if d.cpu == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f", float64(d.cpu.Microseconds())/float64(d.n))
}

func (d drainResult) fakeCPUPerMsg() string {
	if d.cpu == 0 { // relayd ran in this process: the two are not apart
		return "–"
	}
	return fmt.Sprintf("%.0f", float64(d.fakeCPU.Microseconds())/float64(d.n))
}

// drain pre-fills n messages across convs conversations, then starts relayd
// on them against an instant fake Operator and times the delivery of all.
func drain(ctx context.Context, o relaydOpts, n, convs int, profile string) (drainResult, error) {
	dir, cleanup := tempDir("dispatch")
	defer cleanup()
	o.DB = filepath.Join(dir, "relayd.db") // unused by the nats backend
	api := startOperator(0)
	defer api.Close()
	o.OperatorURL = api.URL()
	batch := 1000
	if o.Backend == "nats" {
		batch = 200
	}
	if err := prefill(ctx, o, "dsp", n, convs, batch); err != nil {
		return drainResult{}, err
	}
	p, err := runRelayd(o)
	if err != nil {
		return drainResult{}, err
	}
	stopProfile := func() {}
	if profile != "" {
		stopProfile = startProfile(profile)
	}
	start := time.Now()
	self0, _ := readCPU(os.Getpid())
	deadline := start.Add(10 * time.Minute)
	for api.delivered.Load() < int64(n) && ctx.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	self1, _ := readCPU(os.Getpid())
	stopProfile()
	var cpu time.Duration
	if pid := p.pid(); pid > 0 {
		// On a shared machine the rate varies with the neighbours' load;
		// what a message costs relayd varies much less.
		if cpu, err = readCPU(pid); err != nil {
			logf("relayd CPU time: %v", err)
		}
	}
	if err := p.Stop(); err != nil {
		logf("relayd stop: %v", err)
	}
	if got := api.delivered.Load(); got < int64(n) {
		return drainResult{}, fmt.Errorf("only %d of %d messages delivered", got, n)
	}
	return drainResult{n: n, elapsed: elapsed, cpu: cpu, fakeCPU: self1 - self0, check: checkOrder(api)}, nil
}

// modeDispatch drains a pre-filled queue into an instant fake, then
// measures throughput against a slow fake versus Little's law's bound.
func modeDispatch(ctx context.Context, o options, rep *report) error {
	rep.printf("\n## dispatch\n\n")
	rep.printf("%d messages pre-filled straight into the bbolt file (relayd stopped), spread across %d conversations; "+
		"then relayd starts with `operator.concurrency: %d` and an unlimited rate limit and delivers them to an instant fake Operator. "+
		"Time runs from the daemon's start (as a %s; index rebuilt) to the last delivery. Order is checked from the fake's records. "+
		"CPU µs/msg: relayd's user and system time (its start included) and this process's (the fake Operator and the harness, during the drain), per message.\n\n",
		o.messages, o.convs, o.dconc, procWord())
	rep.printf("| round | messages | seconds | msgs/s | relayd CPU µs/msg | fake CPU µs/msg | out of order | duplicates | overlapping requests |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var total drainResult
	for round := range o.rounds {
		profile := ""
		if round == 0 && o.profile != "" {
			profile = o.profile + "-dispatch.pprof"
		}
		r, err := drain(ctx, relaydOpts{Concurrency: o.dconc, Rate: 1e6, Burst: 100000}, o.messages, o.convs, profile)
		if err != nil {
			return err
		}
		logf("round %d: %d msgs in %.2fs = %.0f msgs/s (order errors %d, dup %d, overlaps %d)", round+1, r.n, r.elapsed.Seconds(), r.rate(),
			r.check.outOfOrder, r.check.duplicates, r.check.overlaps)
		rep.printf("| %d | %d | %.2f | %.0f | %s | %s | %d | %d | %d |\n", round+1, r.n, r.elapsed.Seconds(), r.rate(), r.cpuPerMsg(), r.fakeCPUPerMsg(), r.check.outOfOrder, r.check.duplicates, r.check.overlaps)
		total.n += r.n
		total.elapsed += r.elapsed
		total.check.outOfOrder += r.check.outOfOrder
	}
	rate := total.rate()
	rep.printf("\n| dispatch to an instant fake | value | target | |\n|---|---:|---:|---|\n")
	rep.printf("| msgs/s across %d conversations | %.0f | ≥ 5000 | %s |\n", o.convs, rate, verdict(rate >= 5000))
	rep.printf("| per-conversation order | %d out of order | 0 | %s |\n", total.check.outOfOrder, verdict(total.check.outOfOrder == 0))
	if err := coalesceReport(ctx, o, rep); err != nil {
		return err
	}

	// Against a slow fake the bound is concurrency / latency (Little's law).
	const conc = 64
	bound := conc / o.slowLat.Seconds()
	warm := 2 * o.slowLat
	n := int(bound*(warm+o.slowDur+2*time.Second).Seconds()*1.5) + o.convs
	dir, cleanup := tempDir("slow")
	defer cleanup()
	api := startOperator(1000)
	defer api.Close()
	api.fake.SetLatency(o.slowLat, o.slowLat)
	ro := relaydOpts{DB: filepath.Join(dir, "relayd.db"), OperatorURL: api.URL(), Concurrency: conc, Rate: 1e6, Burst: 100000}
	if err := prefill(ctx, ro, "slow", n, o.convs, 1000); err != nil {
		return err
	}
	p, err := runRelayd(ro)
	if err != nil {
		return err
	}
	_ = xtime.Sleep(ctx, warm)
	c0 := api.delivered.Load()
	t0 := time.Now()
	_ = xtime.Sleep(ctx, o.slowDur)
	c1 := api.delivered.Load()
	el := time.Since(t0)
	if err := p.Stop(); err != nil {
		logf("relayd stop: %v", err)
	}
	got := float64(c1-c0) / el.Seconds()
	logf("slow fake: %.1f msgs/s of a %.0f bound", got, bound)
	rep.printf("\nAgainst a fake answering after %s, `operator.concurrency: %d`, %d messages queued across %d conversations, "+
		"measured over %s after %s of warm-up:\n\n", o.slowLat, conc, n, o.convs, o.slowDur, warm)
	rep.printf("| slow fake | msgs/s | bound (concurrency / latency) | ratio | target | |\n|---|---:|---:|---:|---:|---|\n")
	rep.printf("| %s latency | %.1f | %.0f | %.2f | ≥ 0.95 | %s |\n", o.slowLat, got, bound, got/bound, verdict(got/bound >= 0.95))
	return nil
}

func procWord() string {
	if procMode == "inproc" {
		return "goroutine of the bench process"
	}
	return "child process"
}
