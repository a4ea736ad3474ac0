package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/relayd/relayd/internal/xtime"
)

// modeBigQueue runs relayd as a child process (so its memory is its own)
// on a file holding bigN queued messages, and compares its memory and
// ingest rate with the same daemon on an empty file. It then drains the
// queue and reports the file's size.
func modeBigQueue(ctx context.Context, o options, rep *report) error {
	dir, cleanup := tempDir("bigqueue")
	defer cleanup()
	bin, err := relaydBinary()
	if err != nil {
		return err
	}
	api := startOperator(1000)
	defer api.Close()
	conns := o.conns[0]
	p := pushPayloads()

	// Two data directories: one pre-filled, one empty. Both daemons run
	// with the contract's default account rate limit (2/s), so the queue
	// stays full while ingest is measured.
	fullDB := filepath.Join(dir, "full", "relayd.db")
	emptyDB := filepath.Join(dir, "empty", "relayd.db")
	writeCfg := func(name string, ro relaydOpts) (string, error) {
		ro.OperatorURL = api.URL()
		path := filepath.Join(dir, name+".yaml")
		return path, os.WriteFile(path, ro.yaml(), 0o600)
	}
	fullCfg, err := writeCfg("full", relaydOpts{DB: fullDB})
	if err != nil {
		return err
	}
	emptyCfg, err := writeCfg("empty", relaydOpts{DB: emptyDB})
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := prefill(ctx, relaydOpts{DB: fullDB, OperatorURL: api.URL()}, "big", o.bigN, o.convs, 10000); err != nil {
		return err
	}
	fillTime := time.Since(t0)
	filled := fileSize(fullDB)
	logf("pre-filled %d messages in %s; file %s MiB", o.bigN, fillTime.Round(time.Millisecond), mib(filled))

	type sample struct {
		res          result
		idle, loaded memInfo
		peak         memInfo // largest anonymous and file-backed figures sampled, VmHWM
		start        time.Duration
	}
	runs := map[string][]sample{}
	for round := range o.rounds {
		for _, t := range []struct{ name, cfg string }{{"empty", emptyCfg}, {"full", fullCfg}} {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			st := time.Now()
			c, err := startChild(bin, t.cfg)
			if err != nil {
				return fmt.Errorf("%s queue: %w", t.name, err)
			}
			startTime := time.Since(st)
			watch := watchMem(c.cmd.Process.Pid)
			_ = xtime.Sleep(ctx, time.Second)
			idle, _ := readMem(c.cmd.Process.Pid)
			r, err := runLoad(ctx, loadSpec{URL: c.URL, Conns: conns, Duration: o.duration, Warmup: o.warmup, Payloads: p,
				Prefix: fmt.Sprintf("big-%s-%d-%d-", t.name, round, time.Now().UnixNano())})
			loaded, _ := readMem(c.cmd.Process.Pid)
			peak := watch.Stop()
			peak.HWM = max(peak.HWM, loaded.HWM)
			if err := c.Stop(); err != nil {
				logf("relayd stop: %v", err)
			}
			if err != nil {
				return err
			}
			logf("%s queue, round %d: %.0f req/s, p99 %s ms, RSS idle %s MiB, after load %s MiB (VmHWM %s MiB, peak anon %s MiB, peak file %s MiB), start %s",
				t.name, round+1, r.RPS(), ms(pct(r.Lat, 99)), mib(idle.RSS), mib(loaded.RSS), mib(peak.HWM), mib(peak.Anon), mib(peak.File),
				startTime.Round(time.Millisecond))
			runs[t.name] = append(runs[t.name], sample{res: r, idle: idle, loaded: loaded, peak: peak, start: startTime})
		}
	}

	// Drain everything into an instant fake, with no rate limit.
	drainCfg, err := writeCfg("drain", relaydOpts{DB: fullDB, Concurrency: o.dconc, Rate: 1e6, Burst: 100000})
	if err != nil {
		return err
	}
	before := fileSize(fullDB)
	c, err := startChild(bin, drainCfg)
	if err != nil {
		return err
	}
	d0 := api.delivered.Load()
	dStart := time.Now()
	watch := watchMem(c.cmd.Process.Pid)
	for ctx.Err() == nil {
		_ = xtime.Sleep(ctx, time.Second)
		n, err := queueDepth(c.Admin)
		if err != nil {
			c.Stop()
			return err
		}
		if n == 0 {
			break
		}
	}
	drainTime := time.Since(dStart)
	drained := api.delivered.Load() - d0
	peak := watch.Stop()
	if err := c.Stop(); err != nil {
		logf("relayd stop: %v", err)
	}
	after := fileSize(fullDB)
	logf("drained %d messages in %s (%.0f msgs/s); file %s → %s MiB; during drain VmHWM %s MiB, peak anon %s MiB, peak file %s MiB", drained,
		drainTime.Round(time.Millisecond), float64(drained)/drainTime.Seconds(), mib(before), mib(after), mib(peak.HWM), mib(peak.Anon), mib(peak.File))

	// A second fill and drain must reuse the freed pages, not grow the file.
	refill := min(o.bigN, 100000)
	if err := prefill(ctx, relaydOpts{DB: fullDB, OperatorURL: api.URL()}, "again", refill, o.convs, 10000); err != nil {
		return err
	}
	c, err = startChild(bin, drainCfg)
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		_ = xtime.Sleep(ctx, 500*time.Millisecond)
		if n, err := queueDepth(c.Admin); err != nil || n == 0 {
			break
		}
	}
	c.Stop()
	again := fileSize(fullDB)
	compacted := int64(-1)
	if out, err := exec.Command(bin, "compact", "--path", fullDB).CombinedOutput(); err == nil {
		compacted = fileSize(fullDB)
	} else {
		logf("relayd compact: %v: %s", err, out)
	}

	rep.printf("\n## bigqueue\n\n")
	rep.printf("relayd runs as a child process built with `go build` (its memory is read from /proc/<pid>/status), with the contract's "+
		"default account rate limit (2/s) so the queue stays full while ingest is measured. The queue holds %d messages across %d "+
		"conversations (pre-filled through the store's Enqueue in batches of 10,000 in %s; file %s MiB). Empty and full runs alternate.\n\n",
		o.bigN, o.convs, fillTime.Round(time.Second), mib(filled))
	rep.printf("| queue | start s | RSS idle MiB | RSS after load MiB | peak anon MiB | peak file-backed MiB | VmHWM MiB | req/s (%d conns) | p99 ms |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n", conns)
	agg := map[string]result{}
	var worst memInfo
	for _, name := range []string{"empty", "full"} {
		var rs []result
		for _, s := range runs[name] {
			rs = append(rs, s.res)
			rep.printf("| %s | %.1f | %s | %s | %s | %s | %s | %.0f | %s |\n", name, s.start.Seconds(), mib(s.idle.RSS), mib(s.loaded.RSS),
				mib(s.peak.Anon), mib(s.peak.File), mib(s.peak.HWM), s.res.RPS(), ms(pct(s.res.Lat, 99)))
			if name == "full" {
				worst.HWM = max(worst.HWM, s.peak.HWM)
				worst.Anon = max(worst.Anon, s.peak.Anon)
				worst.RSS = max(worst.RSS, s.loaded.RSS)
			}
		}
		agg[name] = merge(rs)
	}
	r := agg["full"].RPS() / agg["empty"].RPS()
	rep.printf("\n| with %d queued | value | target | |\n|---|---:|---:|---|\n", o.bigN)
	rep.printf("| VmHWM, peak resident incl. the mmapped file (MiB) | %s | ≤ 64 | %s |\n", mib(worst.HWM), verdict(worst.HWM <= 64<<20))
	rep.printf("| RSS after the ingest run (MiB) | %s | ≤ 64 | %s |\n", mib(worst.RSS), verdict(worst.RSS <= 64<<20))
	rep.printf("| peak anonymous memory (MiB) | %s | | |\n", mib(worst.Anon))
	rep.printf("| ingest req/s full / empty | %.2f | ≥ 0.80 | %s |\n", r, verdict(r >= 0.8))
	rep.printf("\nDrain: %d messages in %s (%.0f msgs/s, `operator.concurrency: %d`); VmHWM %s MiB, peak anonymous %s MiB, peak file-backed %s MiB. "+
		"File: %s MiB full, %s MiB after draining, %s MiB after another %d messages were queued and drained",
		drained, drainTime.Round(time.Second), float64(drained)/drainTime.Seconds(), o.dconc, mib(peak.HWM), mib(peak.Anon), mib(peak.File),
		mib(before), mib(after), mib(again), refill)
	if compacted >= 0 {
		rep.printf(", %s MiB after `relayd compact`", mib(compacted))
	}
	rep.printf(".\n")
	return nil
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}
