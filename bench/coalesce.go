package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"
)

// coalesceEach is how many events each conversation has queued in the
// coalescing run.
const coalesceEach = 20

// drainCoalesced pre-fills convs conversations × coalesceEach events, then
// starts relayd with the route coalescing up to coalesceEach events a turn
// and times the delivery of every event, counting turns.
func drainCoalesced(ctx context.Context, o relaydOpts, convs int) (events, turns int, elapsed time.Duration, err error) {
	dir, cleanup := tempDir("coalesce")
	defer cleanup()
	o.DB = filepath.Join(dir, "relayd.db")
	o.MaxEvents = coalesceEach
	api := startOperator(0)
	defer api.Close()
	o.OperatorURL = api.URL()
	var got atomic.Int64
	count := func(body []byte, _ time.Time) { got.Add(int64(bytes.Count(body, []byte("[conv=")))) }
	api.onArrive.Store(&count)
	n := convs * coalesceEach
	if err := prefill(ctx, o, "coal", n, convs, 1000); err != nil {
		return 0, 0, 0, err
	}
	p, err := runRelayd(o)
	if err != nil {
		return 0, 0, 0, err
	}
	start := time.Now()
	deadline := start.Add(10 * time.Minute)
	for got.Load() < int64(n) && ctx.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	elapsed = time.Since(start)
	if err := p.Stop(); err != nil {
		logf("relayd stop: %v", err)
	}
	if e := got.Load(); e < int64(n) {
		return 0, 0, 0, fmt.Errorf("coalescing: only %d of %d events delivered", e, n)
	}
	return n, int(api.delivered.Load()), elapsed, nil
}

// coalesceReport runs the coalescing drain once and reports it.
func coalesceReport(ctx context.Context, o options, rep *report) error {
	events, turns, elapsed, err := drainCoalesced(ctx, relaydOpts{Concurrency: o.dconc, Rate: 1e6, Burst: 100000}, o.convs)
	if err != nil {
		return err
	}
	rate := float64(events) / elapsed.Seconds()
	logf("coalescing: %d events in %d turns in %.2fs = %.0f events/s", events, turns, elapsed.Seconds(), rate)
	rep.printf("\n%d conversations × %d events pre-filled, the route with `coalesce: {max_events: %d}`: every conversation's events are due together.\n\n",
		o.convs, coalesceEach, coalesceEach)
	rep.printf("| coalescing | value | target | |\n|---|---:|---:|---|\n")
	rep.printf("| events/s | %.0f | ≥ 5000 | %s |\n", rate, verdict(rate >= 5000))
	rep.printf("| turns | %d | %d (one per conversation) | %s |\n", turns, o.convs, verdict(turns == o.convs))
	return nil
}
