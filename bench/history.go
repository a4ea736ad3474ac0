package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relayd/relayd/internal/xtime"
)

// historySweepWait outlasts the store's history sweep (once a minute), so
// the retention has run before the file is measured.
const historySweepWait = 65 * time.Second

// modeHistory sends 3 × history.max_events events through relayd with the
// history on and measures the file after each third: once the retention
// deletes, freed pages are reused and the file levels off.
func modeHistory(ctx context.Context, o options, rep *report) error {
	dir, cleanup := tempDir("history")
	defer cleanup()
	bin, err := relaydBinary()
	if err != nil {
		return err
	}
	api := startOperator(1000)
	defer api.Close()
	db := filepath.Join(dir, "relayd.db")
	cfg := filepath.Join(dir, "relay.yaml")
	// Dispatch keeps up (an instant fake, no rate limit), so what the file
	// holds is the history, not a queue.
	ro := relaydOpts{DB: db, OperatorURL: api.URL(), Concurrency: o.dconc, Rate: 1e6, Burst: 100000, History: o.histMax}
	if err := os.WriteFile(cfg, ro.yaml(), 0o600); err != nil {
		return err
	}
	c, err := startChild(bin, cfg)
	if err != nil {
		return err
	}
	defer c.Stop()
	p := pushPayloads()
	type third struct {
		sent            int
		took            time.Duration
		ingested, swept int64
	}
	var thirds []third
	for i := range 3 {
		t0 := time.Now()
		n, err := sendN(ctx, c.URL, o.conns[0], p, fmt.Sprintf("hist-%d-", i), o.histMax)
		if err != nil {
			return err
		}
		th := third{sent: n, took: time.Since(t0), ingested: fileSize(db)}
		if err := xtime.Sleep(ctx, historySweepWait); err != nil {
			return err
		}
		th.swept = fileSize(db)
		logf("history: third %d: %d events in %s; file %s MiB, %s MiB after a sweep", i+1, n, th.took.Round(time.Millisecond), mib(th.ingested), mib(th.swept))
		thirds = append(thirds, th)
	}
	rep.printf("\n### History file under retention\n\n")
	rep.printf("relayd (child process, history on, `history.max_events: %d`, dispatch into an instant fake) receives 3 × %d push events; "+
		"the file is measured right after each third and again %s later, once the minute's retention sweep has run.\n\n",
		o.histMax, o.histMax, historySweepWait)
	rep.printf("| events sent | ingest s | file after ingest MiB | file after the sweep MiB |\n|---:|---:|---:|---:|\n")
	total := 0
	for _, th := range thirds {
		total += th.sent
		rep.printf("| %d | %.1f | %s | %s |\n", total, th.took.Seconds(), mib(th.ingested), mib(th.swept))
	}
	return nil
}

// sendN posts n signed events from conns workers and returns how many were
// answered 2xx.
func sendN(ctx context.Context, url string, conns int, p []payload, prefix string, n int) (int, error) {
	client := newClient(conns)
	defer client.CloseIdleConnections()
	var seq, ok atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := seq.Add(1)
				if i > int64(n) {
					return
				}
				code, err := post(ctx, client, url, p[int(i)%len(p)], prefix+strconv.FormatInt(i, 10))
				switch {
				case err != nil:
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				case code >= 200 && code <= 299:
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if ok.Load() == 0 && firstErr != nil {
		return 0, fmt.Errorf("send to %s: %w", url, firstErr)
	}
	return int(ok.Load()), ctx.Err()
}
