package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/relayd/relayd/internal/xtime"
)

// modeLatency sends events one at a time to an idle relayd and measures,
// from the fake Operator's side, how long after the send each prompt
// arrived.
func modeLatency(ctx context.Context, o options, rep *report) error {
	dir, cleanup := tempDir("latency")
	defer cleanup()
	api := startOperator(1000)
	defer api.Close()
	p, err := runRelayd(relaydOpts{DB: filepath.Join(dir, "relayd.db"), OperatorURL: api.URL(), Rate: 1e6, Burst: 100000})
	if err != nil {
		return err
	}
	defer func() {
		if err := p.Stop(); err != nil {
			logf("relayd stop: %v", err)
		}
	}()
	pl := pushPayloads()[0]
	client := newClient(1)
	defer client.CloseIdleConnections()

	type arrival struct {
		body []byte
		at   time.Time
	}
	arrivals := make(chan arrival, 16)
	onArrive := func(body []byte, at time.Time) { arrivals <- arrival{body, at} }
	api.onArrive.Store(&onArrive)

	var toAPI, toAnswer []time.Duration
	nonce := time.Now().UnixNano()
	for i := range o.events + 5 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		id := fmt.Sprintf("lat-%d-%06d", nonce, i)
		want := api.delivered.Load() + 1
		start := time.Now()
		code, err := post(ctx, client, p.ingestURL(), pl, id)
		answered := time.Since(start)
		if err != nil || code != 202 {
			return fmt.Errorf("event %d: answer %d, %v", i, code, err)
		}
		var at time.Time
		timeout := time.After(10 * time.Second)
		for at.IsZero() {
			select {
			case a := <-arrivals:
				if bytes.Contains(a.body, []byte(id)) {
					at = a.at
				}
			case <-timeout:
				return fmt.Errorf("event %d never reached the fake Operator", i)
			}
		}
		for api.delivered.Load() < want {
			time.Sleep(100 * time.Microsecond)
		}
		if i >= 5 { // the first few warm connections and caches up
			toAPI = append(toAPI, at.Sub(start))
			toAnswer = append(toAnswer, answered)
		}
		_ = xtime.Sleep(ctx, 10*time.Millisecond) // idle between events
	}
	slices.Sort(toAPI)
	slices.Sort(toAnswer)
	logf("ingest-to-API p50 %s ms p99 %s ms; 202 p50 %s ms", ms(pct(toAPI, 50)), ms(pct(toAPI, 99)), ms(pct(toAnswer, 50)))
	rep.printf("\n## latency\n\n")
	rep.printf("%d events sent one at a time, 10 ms apart, to an idle relayd (bbolt, instant fake Operator, no rate limit). "+
		"Ingest-to-API is the fake's receive time minus the send time, both read from one clock.\n\n", len(toAPI))
	rep.printf("| measure | p50 ms | p90 ms | p99 ms | max ms | target |\n|---|---:|---:|---:|---:|---|\n")
	p50, p99 := pct(toAPI, 50), pct(toAPI, 99)
	rep.printf("| ingest to API | %s | %s | %s | %s | p50 ≤ 3 (%s), p99 ≤ 10 (%s) |\n", ms(p50), ms(pct(toAPI, 90)), ms(p99), ms(pct(toAPI, 100)),
		verdict(p50 <= 3*time.Millisecond), verdict(p99 <= 10*time.Millisecond))
	rep.printf("| send to 202 answer | %s | %s | %s | %s | |\n", ms(pct(toAnswer, 50)), ms(pct(toAnswer, 90)), ms(pct(toAnswer, 99)), ms(pct(toAnswer, 100)))
	return nil
}
