package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relayd/relayd/internal/xtime"
)

// payload is one signed webhook: the body and its signature header. The
// signature covers the body only, so it is computed once; every request
// still carries a fresh delivery id.
type payload struct {
	body      []byte
	signature string
	event     string
}

func signedPayload(body []byte, secret, event string) payload {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return payload{body: body, signature: "sha256=" + hex.EncodeToString(m.Sum(nil)), event: event}
}

// newClient is a load-generator client: keep-alive, one idle connection
// kept per worker, no compression, no proxy.
func newClient(conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
		},
		Timeout: 30 * time.Second,
	}
}

// result is what one load run measured.
type result struct {
	Requests int           // answered, any status
	Non2xx   int           // answered with a status outside 2xx
	Errors   int           // transport errors (no answer)
	Elapsed  time.Duration // measured window
	Lat      []time.Duration
	// CPU is the receiver's CPU time over the window, when it ran in a
	// child process (0 otherwise).
	CPU time.Duration
}

// cpuPerRequest is the receiver's CPU time per answered request.
func (r result) cpuPerRequest() time.Duration {
	if r.Requests == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Requests)
}

func (r result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// merge pools several runs (rounds) of one target.
func merge(rs []result) result {
	var out result
	for _, r := range rs {
		out.Requests += r.Requests
		out.Non2xx += r.Non2xx
		out.Errors += r.Errors
		out.Elapsed += r.Elapsed
		out.CPU += r.CPU
		out.Lat = append(out.Lat, r.Lat...)
	}
	slices.Sort(out.Lat)
	return out
}

// pct returns the p-th percentile (0..100) of sorted latencies.
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

// loadSpec is one run of the load generator.
type loadSpec struct {
	URL      string
	Conns    int
	Duration time.Duration
	Warmup   time.Duration
	// Payloads are sent in turn, so the messages spread across their
	// repositories' conversations.
	Payloads []payload
	// Prefix makes delivery ids unique across runs.
	Prefix string
	// PID, when not 0, is the receiver's process, whose CPU time is read.
	PID int
}

// runLoad sends Payload from Conns workers over keep-alive connections for
// Warmup (not counted) then Duration, and returns what it measured.
func runLoad(ctx context.Context, s loadSpec) (result, error) {
	client := newClient(s.Conns)
	defer client.CloseIdleConnections()
	var seq atomic.Int64
	var measuring atomic.Bool
	type local struct {
		n, non2xx, errs int
		lat             []time.Duration
		firstErr        error
	}
	locals := make([]local, s.Conns)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for w := range s.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := &locals[w]
			l.lat = make([]time.Duration, 0, 4096)
			for ctx.Err() == nil {
				n := seq.Add(1)
				id := s.Prefix + strconv.FormatInt(n, 10)
				start := time.Now()
				code, err := post(ctx, client, s.URL, s.Payloads[int(n)%len(s.Payloads)], id)
				d := time.Since(start)
				if !measuring.Load() {
					continue
				}
				if err != nil {
					if ctx.Err() != nil {
						return // cut by the end of the run: not counted
					}
					l.errs++
					if l.firstErr == nil {
						l.firstErr = err
					}
					continue
				}
				l.n++
				if code < 200 || code > 299 {
					l.non2xx++
				}
				l.lat = append(l.lat, d)
			}
		}()
	}
	_ = xtime.Sleep(ctx, s.Warmup)
	var cpu0, cpu1 time.Duration
	if s.PID != 0 {
		cpu0, _ = cpuTime(s.PID)
	}
	measuring.Store(true)
	start := time.Now()
	_ = xtime.Sleep(ctx, s.Duration)
	measuring.Store(false)
	elapsed := time.Since(start)
	if s.PID != 0 {
		cpu1, _ = cpuTime(s.PID)
	}
	cancel()
	wg.Wait()
	r := result{Elapsed: elapsed, CPU: cpu1 - cpu0}
	var firstErr error
	for _, l := range locals {
		r.Requests += l.n
		r.Non2xx += l.non2xx
		r.Errors += l.errs
		r.Lat = append(r.Lat, l.lat...)
		if firstErr == nil {
			firstErr = l.firstErr
		}
	}
	slices.Sort(r.Lat)
	if r.Requests == 0 && firstErr != nil {
		return r, fmt.Errorf("load on %s: %w", s.URL, firstErr)
	}
	return r, nil
}

func post(ctx context.Context, c *http.Client, url string, p payload, delivery string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(p.body))
	if err != nil {
		return 0, err
	}
	req.Header = http.Header{
		"Content-Type":        {"application/json"},
		"User-Agent":          {"GitHub-Hookshot/bench"},
		"X-Github-Event":      {p.event},
		"X-Github-Delivery":   {delivery},
		"X-Hub-Signature-256": {p.signature},
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}
