package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relayd/relayd/internal/xtime"
)

// trickleKind is one way a hostile sender holds a connection open.
type trickleKind struct {
	name string
	// head is what the sender writes at once (headers and the start of
	// the body); rest is then written one byte a second.
	head, rest []byte
}

// plainTrickle announces a 1 MiB body and sends it a byte a second.
func plainTrickle() trickleKind {
	const size = 1 << 20
	return trickleKind{
		name: "plain",
		head: []byte(trickleHeaders(size, "") + "{"),
		rest: bytes.Repeat([]byte(" "), size-1),
	}
}

// gzipTrickle sends at once a few KiB of gzip that inflates to 3 MiB (under
// max_inflated_bytes, so the body stays acceptable), then the rest of the
// stream (16 KiB of incompressible data) a byte a second: each connection
// makes relayd hold what it has inflated so far.
func gzipTrickle() trickleKind {
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(make([]byte, 3<<20))
	zw.Flush()
	cut := z.Len()
	noise := make([]byte, 16<<10)
	rand.Read(noise)
	zw.Write(noise)
	zw.Close()
	return trickleKind{
		name: "gzip",
		head: append([]byte(trickleHeaders(z.Len(), "Content-Encoding: gzip\r\n")), z.Bytes()[:cut]...),
		rest: z.Bytes()[cut:],
	}
}

// trickleHeaders look like a GitHub delivery with a signature that will
// not match: the sender has no secret.
func trickleHeaders(size int, extra string) string {
	return "POST " + hookPath + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
		"X-GitHub-Event: push\r\nX-GitHub-Delivery: trickle\r\n" +
		"X-Hub-Signature-256: sha256=" + strings.Repeat("0", 64) + "\r\n" +
		extra + "Content-Length: " + strconv.Itoa(size) + "\r\n\r\n"
}

// trickleStats counts what the trickling connections saw.
type trickleStats struct {
	open    atomic.Int64 // connections open now
	dialErr atomic.Int64
	mu      sync.Mutex
	answers map[int]int // status → count; 0 for a connection closed without an answer
}

func (s *trickleStats) answered(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[code]++
}

func (s *trickleStats) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.answers) == 0 {
		return "none"
	}
	var codes []int
	for c := range s.answers {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var parts []string
	for _, c := range codes {
		name := strconv.Itoa(c)
		if c == 0 {
			name = "closed"
		}
		parts = append(parts, fmt.Sprintf("%s ×%d", name, s.answers[c]))
	}
	return strings.Join(parts, ", ")
}

// trickle keeps one hostile connection to addr open until ctx ends: when
// relayd answers or closes it, it waits a second and opens another.
func trickle(ctx context.Context, addr string, k trickleKind, st *trickleStats) {
	for ctx.Err() == nil {
		c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
		if err != nil {
			st.dialErr.Add(1)
			_ = xtime.Sleep(ctx, time.Second)
			continue
		}
		st.open.Add(1)
		trickleOne(ctx, c, k, st)
		st.open.Add(-1)
		c.Close()
		_ = xtime.Sleep(ctx, time.Second)
	}
}

func trickleOne(ctx context.Context, c net.Conn, k trickleKind, st *trickleStats) {
	answer := make(chan int, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			answer <- 0
			return
		}
		resp.Body.Close()
		answer <- resp.StatusCode
	}()
	defer c.Close() // ends the reader when ctx ends first
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(k.head); err != nil {
		st.answered(<-answer)
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case code := <-answer:
			st.answered(code)
			return
		case <-tick.C:
			if i < len(k.rest) {
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				c.Write(k.rest[i : i+1]) // an error shows as the reader's answer
			}
		}
	}
}

// modeTrickle measures relayd's memory while connections trickle bodies
// (plain, then gzip), and the latency of normal signed webhooks sent
// meanwhile.
func modeTrickle(ctx context.Context, o options, rep *report) error {
	if procMode != "child" {
		return errors.New("trickle needs -proc child: it reads relayd's memory from /proc")
	}
	dir, cleanup := tempDir("trickle")
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
	u, err := url.Parse(p.ingestURL())
	if err != nil {
		return err
	}
	pid := p.pid()
	base, err := readMem(pid)
	if err != nil {
		return err
	}
	payloads := pushPayloads()

	rep.printf("\n## trickle\n\n")
	rep.printf("relayd with the default limits (max_body_bytes 1 MiB, max_inflated_bytes 4 MiB, "+
		"max_inflight_body_bytes 32 MiB, read_timeout 30s). Hostile connections on loopback, each "+
		"reconnecting a second after relayd answers or closes it: *plain* announces 1 MiB and sends a byte "+
		"a second; *gzip* sends at once a few KiB that inflate to 3 MiB, then a byte a second. Meanwhile "+
		"%d workers send the signed push sample back to back for %s (after %s warm-up). RSS at start: %s MiB.\n\n",
		o.trickleLoad, o.duration, o.warmup, mib(base.RSS))
	rep.printf("| trickle | connections | peak VmHWM MiB | peak VmRSS MiB | RSS 5 s after they left MiB | " +
		"signed req/s | non-2xx | p50 ms | p99 ms | max ms | hostile answers | target |\n")
	rep.printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n")

	for _, ph := range []struct {
		kind trickleKind
		n    int
	}{{plainTrickle(), o.trickleN}, {gzipTrickle(), o.trickleGzip}} {
		if ph.n <= 0 || ctx.Err() != nil {
			continue
		}
		st := &trickleStats{answers: map[int]int{}}
		tctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for range ph.n {
			wg.Go(func() { trickle(tctx, u.Host, ph.kind, st) })
		}
		mem := watchMem(pid)
		_ = xtime.Sleep(ctx, 2*time.Second) // let them connect and send their heads
		logf("%s: %d connections open", ph.kind.name, st.open.Load())
		res, err := runLoad(ctx, loadSpec{URL: p.ingestURL(), Conns: o.trickleLoad, Duration: o.duration,
			Warmup: o.warmup, Payloads: payloads, Prefix: "trickle-" + ph.kind.name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-", PID: pid})
		open := st.open.Load()
		peak := mem.Stop()
		stop()
		wg.Wait()
		if err != nil {
			return err
		}
		_ = xtime.Sleep(ctx, 5*time.Second)
		after, _ := readMem(pid)
		p99 := pct(res.Lat, 99)
		ok := peak.RSS < 128<<20 && p99 < 500*time.Millisecond
		logf("%s: peak RSS %s MiB (HWM %s), after %s MiB; %d signed requests, %d non-2xx, p99 %s ms; hostile: %s",
			ph.kind.name, mib(peak.RSS), mib(peak.HWM), mib(after.RSS), res.Requests, res.Non2xx, ms(p99), st)
		rep.printf("| %s | %d (%d open at the end) | %s | %s | %s | %.0f | %d | %s | %s | %s | %s | RSS < 128 MiB, p99 < 500 ms: %s |\n",
			ph.kind.name, ph.n, open, mib(peak.HWM), mib(peak.RSS), mib(after.RSS), res.RPS(), res.Non2xx,
			ms(pct(res.Lat, 50)), ms(p99), ms(pct(res.Lat, 100)), st, verdict(ok))
	}
	return nil
}
