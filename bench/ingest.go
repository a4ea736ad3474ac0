package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"time"
)

// target names, in the order a round runs them.
const (
	tBare    = "bare Echo (HTTP ceiling)"
	tVerify  = "Echo + HMAC + encoding/json (verification ceiling)"
	tDurable = "the same + group-committed fdatasync'd log (durable ceiling)"
	tRelayd  = "relayd durable ingest (bbolt)"
)

// modeIngest alternates the three ceilings and relayd, round after round,
// at each concurrency, and reports relayd's ratios to the ceilings.
func modeIngest(ctx context.Context, o options, rep *report) error {
	p := pushPayloads()
	rep.printf("\n## ingest\n\n")
	where := "Each receiver runs in a child process of its own (the ceilings in a copy of the bench binary, relayd as built by `go build ./cmd/relayd`), as deployed"
	if o.proc == "inproc" {
		where = "Every receiver runs inside the bench process, sharing its Go scheduler with the load generator"
	}
	rep.printf("Each round runs the HTTP ceiling, the verification ceiling, the durable ceiling and relayd one after the other "+
		"(A B C D A B C D …) on loopback. %s. The load generator shares the two cores. "+
		"The durable ceiling is the verification ceiling plus a %d-byte record per request in a log fdatasync'd before the answer "+
		"(group commit, into a file written with zeros beforehand): the least a receiver does to answer only once an event is on disk. "+
		"relayd gets a fresh bbolt file per run, "+
		"logs JSON at info (formatted, then discarded), and sends to an instant fake Operator at the contract's "+
		"default account rate limit (2/s), so dispatch trickles while ingest is measured. "+
		"Receiver CPU is the child's user+system time over the measured window, divided by the requests answered.\n\n", where, durableRecord)
	type target struct {
		name  string
		start func() (*server, error)
	}
	for _, conns := range o.conns {
		runs := map[string][]result{}
		targets := []target{
			{tBare, startBare},
			{tVerify, func() (*server, error) { return startVerify(benchSecret) }},
			{tDurable, func() (*server, error) { return startDurable(benchSecret) }},
			{tRelayd, func() (*server, error) { return startRelaydTarget(relaydOpts{}) }},
		}
		if o.proc == "child" {
			targets[0].start = func() (*server, error) { return startCeilingChild("bare") }
			targets[1].start = func() (*server, error) { return startCeilingChild("verify") }
			targets[2].start = func() (*server, error) { return startCeilingChild("durable") }
		}
		for round := range o.rounds {
			for _, t := range targets {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				srv, err := t.start()
				if err != nil {
					return fmt.Errorf("%s: %w", t.name, err)
				}
				stopProfile := func() {}
				if t.name == tRelayd && round == 0 && o.profile != "" {
					stopProfile = startProfile(fmt.Sprintf("%s-c%d.pprof", o.profile, conns))
				}
				r, err := runLoad(ctx, loadSpec{URL: srv.URL, Conns: conns, Duration: o.duration, Warmup: o.warmup,
					Payloads: p, Prefix: fmt.Sprintf("c%d-r%d-%d-", conns, round, time.Now().UnixNano()), PID: srv.pid})
				stopProfile()
				srv.stop()
				if err != nil {
					return fmt.Errorf("%s: %w", t.name, err)
				}
				logf("c=%d round %d %-52s %8.0f req/s  p99 %6s ms  cpu/req %4.0f µs  non-2xx %d", conns, round+1, t.name, r.RPS(),
					ms(pct(r.Lat, 99)), float64(r.cpuPerRequest())/1e3, r.Non2xx+r.Errors)
				runs[t.name] = append(runs[t.name], r)
			}
		}
		rep.printf("### %d connections\n\n", conns)
		rep.printf("| receiver | req/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx | receiver CPU µs/req |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
		all := map[string]result{}
		for _, t := range targets {
			m := merge(runs[t.name])
			all[t.name] = m
			cpu := "n/a"
			if m.CPU > 0 {
				cpu = fmt.Sprintf("%.0f", float64(m.cpuPerRequest())/1e3)
			}
			rep.printf("| %s | %.0f | %s | %s | %s | %s | %d | %s |\n", t.name, m.RPS(), ms(pct(m.Lat, 50)), ms(pct(m.Lat, 90)),
				ms(pct(m.Lat, 99)), ms(pct(m.Lat, 100)), m.Non2xx+m.Errors, cpu)
		}
		rel, ver := all[tRelayd], all[tVerify]
		want := 1.0
		if conns < 64 {
			want = 0.8
		}
		rpsRatio := rel.RPS() / ver.RPS()
		p99 := pct(rel.Lat, 99)
		p99Ratio := float64(p99) / float64(pct(ver.Lat, 99))
		var perRound []string
		for i := range runs[tRelayd] {
			perRound = append(perRound, ratio(runs[tRelayd][i].RPS(), runs[tVerify][i].RPS()))
		}
		rep.printf("\n| ratio relayd / verification ceiling | value | target | |\n|---|---:|---:|---|\n")
		rep.printf("| req/s | %.2f (rounds: %s) | ≥ %.1f | %s |\n", rpsRatio, strings.Join(perRound, ", "), want, verdict(rpsRatio >= want))
		if conns >= 64 {
			rep.printf("| p99 | %.2f | ≤ 0.8 | %s |\n", p99Ratio, verdict(p99Ratio <= 0.8))
			rep.printf("| relayd p99 (ms) | %s | ≤ 15 | %s |\n", ms(p99), verdict(p99 <= 15*time.Millisecond))
		} else {
			rep.printf("| p99 | %.2f | | |\n", p99Ratio)
		}
		rep.printf("| relayd / durable ceiling req/s | %s | | |\n", ratio(rel.RPS(), all[tDurable].RPS()))
		rep.printf("| durable ceiling / verification ceiling req/s | %s | | |\n", ratio(all[tDurable].RPS(), ver.RPS()))
		rep.printf("| relayd / HTTP ceiling req/s | %s | | |\n\n", ratio(rel.RPS(), all[tBare].RPS()))
	}
	return nil
}

// binDir holds the relayd binary built for this run; main removes it.
var binDir string

// benchFloor is the heap floor of the bench process when relayd runs as a
// child (see main).
const benchFloor = 256 << 20

// relaydBin, when set (-relayd-bin), is the relayd binary every child runs.
var relaydBin string

var relaydBinary = sync.OnceValues(func() (string, error) {
	if relaydBin != "" {
		return relaydBin, nil
	}
	dir, err := os.MkdirTemp("", "relayd-bench-bin-")
	if err != nil {
		return "", err
	}
	binDir = dir
	return buildRelayd(dir)
})

// startRelaydTarget runs relayd on a fresh bbolt file with an instant fake
// Operator; stopping it removes both.
func startRelaydTarget(o relaydOpts) (*server, error) {
	api := startOperator(1000)
	dir, cleanup := tempDir("ingest")
	o.DB = filepath.Join(dir, "relayd.db")
	o.OperatorURL = api.URL()
	p, err := runRelayd(o)
	if err != nil {
		api.Close()
		cleanup()
		return nil, err
	}
	return &server{URL: p.ingestURL(), pid: p.pid(), stop: func() {
		if err := p.Stop(); err != nil {
			logf("relayd stop: %v", err)
		}
		api.Close()
		cleanup()
	}}, nil
}

// startProfile profiles this process (use -proc inproc to profile relayd).
func startProfile(path string) func() {
	f, err := os.Create(path)
	if err != nil {
		logf("cpuprofile: %v", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		logf("cpuprofile: %v", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		logf("CPU profile written to %s", path)
	}
}
