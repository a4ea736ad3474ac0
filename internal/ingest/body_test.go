package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relayd/relayd/internal/history"
	"github.com/relayd/relayd/internal/metrics"
	"github.com/relayd/relayd/internal/payload"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/route"
	"github.com/relayd/relayd/internal/verify"
)

func TestBudgetReserveRelease(t *testing.T) {
	var b budget
	const (
		K     = 1 << 10
		limit = 256 * K // large bodies get 192 KiB of it
	)
	steps := []struct {
		op      string
		n, mine int64 // bytes asked, and already held by the same request
		ok      bool
		held    int64
	}{
		{"reserve", 200 * K, 0, true, 200 * K},
		{"reserve", 100 * K, 200 * K, true, 300 * K}, // alone: a body larger than the limit is still readable
		{"reserve", 1, 0, false, 300 * K},            // but nothing joins it
		{"release", 300 * K, 0, true, 0},
		{"reserve", 150 * K, 0, true, 150 * K},
		{"reserve", 50 * K, 0, true, 200 * K},       // a small body may use the last quarter
		{"reserve", 10 * K, 60 * K, false, 200 * K}, // a large one may not
		{"reserve", 56 * K, 8 * K, true, 256 * K},   // exactly the limit, still small
		{"reserve", 1, 0, false, 256 * K},
		{"release", 56 * K, 0, true, 200 * K},
		{"reserve", 40 * K, 0, true, 240 * K},
		{"release", 240 * K, 0, true, 0},
	}
	for i, s := range steps {
		ok := true
		if s.op == "reserve" {
			ok = b.reserve(s.n, s.mine, limit)
		} else {
			b.release(s.n)
		}
		if ok != s.ok || b.Held() != s.held {
			t.Fatalf("step %d %s(%d): ok=%v held=%d, want ok=%v held=%d", i, s.op, s.n, ok, b.Held(), s.ok, s.held)
		}
	}
}

// TestBudgetConcurrentNoLeak: reservations taken and given back from many
// goroutines never exceed the limit and leave nothing held.
func TestBudgetConcurrentNoLeak(t *testing.T) {
	var b budget
	const limit = 1000
	var wg sync.WaitGroup
	var over sync.Once
	for g := range 16 {
		wg.Go(func() {
			for i := range 2000 {
				r := reservation{b: &b, limit: limit}
				for range 1 + (g+i)%5 {
					if !r.grow(int64(10 + i%90)) {
						break
					}
					if h := b.Held(); h > limit {
						over.Do(func() { t.Errorf("held %d > limit %d", h, limit) })
					}
				}
				r.release()
				r.release() // twice is harmless
			}
		})
	}
	wg.Wait()
	if b.Held() != 0 {
		t.Errorf("held %d after every reservation was released", b.Held())
	}
}

// trickle yields its data one byte per Read, then fails like a cut
// connection.
type trickle struct {
	data []byte
	max  int // cap of the destination seen by any Read
}

func (r *trickle) Read(p []byte) (int, error) {
	r.max = max(r.max, len(p))
	if len(r.data) == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	p[0] = r.data[0]
	r.data = r.data[1:]
	return 1, nil
}

// TestReadGrowsAsBytesArrive: a body announced at 1 MiB that trickles
// holds one first chunk, not the announced size; chunks double as bytes
// arrive, and all they hold is reserved.
func TestReadGrowsAsBytesArrive(t *testing.T) {
	const K = 1 << 10
	for _, tc := range []struct {
		name      string
		got, hint int64
		wantHeld  int64
	}{
		{"trickle of a 1 MiB body", 10, 1 << 20, 4 * K},
		{"small announced body", 10, 300, 4 * K},
		{"unknown length", 10, -1, 4 * K},
		{"5000 of 1 MiB", 5000, 1 << 20, 12 * K},
		{"100 KiB of 1 MiB", 100 * K, 1 << 20, (4 + 8 + 16 + 32 + 64) * K},
		{"200 KiB of 1 MiB", 200 * K, 1 << 20, (4 + 8 + 16 + 32 + 64 + 64 + 64) * K},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var bud budget
			var pool chunkPool
			res := reservation{b: &bud, limit: 64 << 20}
			src := &trickle{data: bytes.Repeat([]byte("x"), int(tc.got))}
			chunks, n, err := readChunks(&pool, src, 1<<20, tc.hint, &res, nil)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("err %v, want the cut connection's", err)
			}
			var caps int64
			for _, c := range chunks {
				caps += int64(cap(c))
				if cap(c) > maxChunk {
					t.Errorf("a %d-byte chunk", cap(c))
				}
			}
			if n != tc.got {
				t.Errorf("read %d bytes, want %d", n, tc.got)
			}
			if caps != tc.wantHeld || res.held != caps || bud.Held() != caps {
				t.Errorf("chunks hold %d, reserved %d (budget %d), want %d", caps, res.held, bud.Held(), tc.wantHeld)
			}
		})
	}
}

func newPost(body []byte, hdr ...string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return req
}

// TestReadBodyLimits: a complete body comes back in one slice of its
// exact length and the request keeps only that reserved; a body over the
// limit or longer than announced is refused, and a full budget stops it.
func TestReadBodyLimits(t *testing.T) {
	body := bytes.Repeat([]byte("y"), 200000)
	var bud budget
	var pool chunkPool
	res := reservation{b: &bud, limit: 1 << 20}
	raw, err := readBody(&pool, &res, httptest.NewRecorder(), newPost(body), 1<<20, 1<<20)
	if err != nil || !bytes.Equal(raw, body) {
		t.Fatalf("read %d bytes, err %v", len(raw), err)
	}
	if cap(raw) != len(body) || res.held != int64(len(body)) || bud.Held() != res.held {
		t.Errorf("cap %d, reserved %d (budget %d), want all %d", cap(raw), res.held, bud.Held(), len(body))
	}
	res.release()

	_, err = readBody(&pool, &res, httptest.NewRecorder(), newPost(body), 1000, 1000)
	var tooLarge *http.MaxBytesError
	if !errors.As(err, &tooLarge) {
		t.Errorf("over max_body_bytes: err %v, want MaxBytesError", err)
	}
	res.release()

	req := newPost(body)
	req.ContentLength = 10 // a body longer than announced (net/http would cut it)
	if _, err = readBody(&pool, &res, httptest.NewRecorder(), req, 1<<20, 1<<20); err == nil {
		t.Error("a body longer than its Content-Length was taken")
	}
	res.release()

	bud.reserve(1<<20-100, 0, 1<<20) // others hold nearly all of it
	if _, err = readBody(&pool, &res, httptest.NewRecorder(), newPost(body), 1<<20, 1<<20); !errors.Is(err, errNoBudget) {
		t.Errorf("err %v, want errNoBudget", err)
	}
	res.release()
	if got := bud.Held(); got != 1<<20-100 {
		t.Errorf("held %d after release, want only the others' %d", got, 1<<20-100)
	}
}

// TestGzipBombBounded: a body that inflates far past max_inflated_bytes is
// refused having held no more than the limit (and the inflater).
func TestGzipBombBounded(t *testing.T) {
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(make([]byte, 4<<20)) // 16 x the limit, from a few KiB on the wire
	zw.Close()
	const maxInflated = 256 << 10

	var bud budget
	var pool chunkPool
	res := reservation{b: &bud, limit: 64 << 20}
	_, err := readBody(&pool, &res, httptest.NewRecorder(), newPost(z.Bytes(), "Content-Encoding", "gzip"), 1<<20, maxInflated)
	if !errors.Is(err, errInflatedTooLarge) {
		t.Fatalf("err %v, want errInflatedTooLarge", err)
	}
	if res.held > maxInflated+maxChunk+gzipState {
		t.Errorf("reserved %d, want at most the limit, a chunk and the inflater", res.held)
	}
	res.release()

	// A budget that cannot hold the inflater refuses before inflating.
	bud.reserve(64<<20, 0, 64<<20)
	if _, err := readBody(&pool, &res, httptest.NewRecorder(), newPost(z.Bytes(), "Content-Encoding", "gzip"), 1<<20, maxInflated); !errors.Is(err, errNoBudget) {
		t.Errorf("full budget: err %v, want errNoBudget", err)
	}
}

// TestChunkPoolSizes: the pool hands out chunks of the size asked and
// keeps nothing that is not one of its sizes.
func TestChunkPoolSizes(t *testing.T) {
	if minChunk<<(chunkClasses-1) != maxChunk {
		t.Fatalf("chunk classes %d do not reach maxChunk", chunkClasses)
	}
	var p chunkPool
	p.put(make([]byte, 0, 2*maxChunk))
	p.put(make([]byte, 0, minChunk+1))
	p.put(make([]byte, 0, minChunk/2))
	for size := minChunk; size <= maxChunk; size *= 2 {
		p.put(make([]byte, 7, size))
		for range 3 {
			if c := p.get(size); cap(c) != size || len(c) != 0 {
				t.Fatalf("get(%d): len %d cap %d", size, len(c), cap(c))
			}
		}
	}
}

type countStore struct {
	mu sync.Mutex
	n  int
}

func (s *countStore) Enqueue(context.Context, queue.Batch) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return false, nil
}

// budgetServer serves a text source (verify none), a token source and a
// signed source with small limits.
func budgetServer(t *testing.T, maxInflight int64) (*Handler, *httptest.Server) {
	t.Helper()
	tab, err := Compile(Spec{
		MaxBody: 128 << 10, MaxInflated: 128 << 10, MaxInflight: maxInflight,
		Sources: []SourceSpec{
			{Name: "plain", Path: "/plain", Body: payload.Text, Verify: verify.Spec{Type: "none"}},
			{Name: "tok", Path: "/tok", Body: payload.Text, Verify: verify.Spec{Type: "bearer", Secrets: []string{"tok-secret"}}},
			{Name: "ci", Path: "/ci", Body: payload.Text, Verify: verify.Spec{Type: "hmac", Header: "X-Sig", Algorithm: "sha256", Encoding: "hex", Secrets: []string{"ci-secret"}}},
		},
		Routes: []route.Spec{
			{Name: "p", Source: "plain", Template: "x"},
			{Name: "t", Source: "tok", Template: "x"},
			{Name: "c", Source: "ci", Template: "x"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := New(tab, Options{Store: &countStore{}})
	srv := httptest.NewServer(h.Echo())
	t.Cleanup(srv.Close)
	return h, srv
}

// openBody starts a POST announcing size bytes on a raw connection and
// sends the first sent bytes of it.
func openBody(t *testing.T, srv *httptest.Server, path string, size, sent int, hdr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n", path, size, hdr)
	c.Write(bytes.Repeat([]byte("z"), sent))
	return c
}

// waitHeld waits until the budget holds want bytes (the server reads on
// its own goroutines). It bounds no duration: a wrong figure fails the
// test through the test binary's own timeout.
func waitHeld(t *testing.T, h *Handler, want func(int64) bool) {
	t.Helper()
	for !want(h.budget.Held()) {
		time.Sleep(time.Millisecond)
	}
}

func post(t *testing.T, srv *httptest.Server, path string, body string, hdr http.Header) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestOverloadedPastTheBudget: while bodies being read hold the budget, a
// new body is answered 503 overloaded with Retry-After; when the holder is
// cut, its reservation is given back and requests flow again.
func TestOverloadedPastTheBudget(t *testing.T) {
	const budgetBytes = 64 << 10
	h, srv := budgetServer(t, budgetBytes)

	// One sender sends 60 KiB of a 64 KiB body and stalls.
	holder := openBody(t, srv, "/plain", 64<<10, 60<<10, "")
	waitHeld(t, h, func(n int64) bool { return n >= 60<<10 })

	resp := post(t, srv, "/plain", strings.Repeat("s", 8<<10), nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("past the budget: %d Retry-After=%q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	holder.Close() // cut, as read_timeout would
	waitHeld(t, h, func(n int64) bool { return n == 0 })
	if resp := post(t, srv, "/plain", strings.Repeat("s", 8<<10), nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("after the holder left: %d, want 202", resp.StatusCode)
	}
	if n := h.budget.Held(); n != 0 {
		t.Errorf("budget holds %d bytes after every request ended", n)
	}
}

// TestTrickleDoesNotStarveSmallRequests: many connections that announce
// large bodies and send a byte hold one first chunk each, so a small
// request still fits in the budget.
func TestTrickleDoesNotStarveSmallRequests(t *testing.T) {
	const conns = 12
	h, srv := budgetServer(t, (conns+2)*minChunk)
	for range conns {
		openBody(t, srv, "/plain", 64<<10, 1, "")
	}
	waitHeld(t, h, func(n int64) bool { return n == conns*minChunk })
	for i := range 3 {
		if resp := post(t, srv, "/plain", "small "+strconv.Itoa(i), nil); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("small request %d while %d connections trickle: %d, want 202", i, conns, resp.StatusCode)
		}
	}
}

// TestTokenCheckedBeforeBody: a wrong token is refused from the headers,
// with no byte of the body read or reserved; a body-signing scheme reads
// the body first.
func TestTokenCheckedBeforeBody(t *testing.T) {
	h, srv := budgetServer(t, 1<<20)
	c := openBody(t, srv, "/tok", 64<<10, 0, "Authorization: Bearer wrong\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
		t.Errorf("wrong token: %d close=%v, want 401 and the connection closed", resp.StatusCode, resp.Close)
	}
	if n := h.budget.Held(); n != 0 {
		t.Errorf("a refused token holds %d bytes", n)
	}
	if resp := post(t, srv, "/tok", "hello", http.Header{"Authorization": {"Bearer tok-secret"}}); resp.StatusCode != http.StatusAccepted {
		t.Errorf("right token: %d, want 202", resp.StatusCode)
	}

	// The hmac source needs the body: a stalled one is being read.
	openBody(t, srv, "/ci", 64<<10, 1, "X-Sig: 00\r\n")
	waitHeld(t, h, func(n int64) bool { return n > 0 })
}

// TestSmallBodiesKeepTheirShare: large bodies being read cannot take the
// quarter of the budget kept for small ones; the third large holder is
// refused while a small request still gets through.
func TestSmallBodiesKeepTheirShare(t *testing.T) {
	h, srv := budgetServer(t, 400<<10) // bodies over 64 KiB get 300 KiB of it
	// Each holder sends 100 KiB of 128 KiB and holds a 128 KiB buffer:
	// the third would fit in the whole budget, not in the large share.
	for i := range 2 {
		openBody(t, srv, "/plain", 128<<10, 100<<10, "")
		waitHeld(t, h, func(n int64) bool { return n >= int64(i+1)*(100<<10) })
	}
	third := openBody(t, srv, "/plain", 128<<10, 100<<10, "")
	resp, err := http.ReadResponse(bufio.NewReader(third), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third large body: %d, want 503", resp.StatusCode)
	}
	if resp := post(t, srv, "/plain", strings.Repeat("s", 16<<10), nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("small request beside two large holders: %d, want 202", resp.StatusCode)
	}
}

// recorded keeps the history records a handler writes.
type recorded struct {
	mu   sync.Mutex
	recs []history.Record
}

func (r *recorded) Record(_ context.Context, rec history.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}

// TestTrickleCutByReadTimeout: a sender that sends its headers and then
// trickles its body past the server's read timeout is answered 408, not
// 400: its body was not malformed, only late. It counts as a 408 for its
// source, is not a verification failure, and is kept as rejected.
func TestTrickleCutByReadTimeout(t *testing.T) {
	tab, err := Compile(Spec{
		MaxBody: 128 << 10, MaxInflated: 128 << 10, MaxInflight: 1 << 20,
		Sources: []SourceSpec{{Name: "plain", Path: "/plain", Body: payload.Text, Verify: verify.Spec{Type: "none"}}},
		Routes:  []route.Spec{{Name: "p", Source: "plain", Template: "x"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry())
	rec := &recorded{}
	store := &countStore{}
	h := New(tab, Options{Store: store, Metrics: m, Recorder: rec})
	srv := httptest.NewUnstartedServer(h.Echo())
	// Short, so the test does not wait long; nothing below depends on how
	// long the cut takes.
	srv.Config.ReadTimeout = 200 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)

	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /plain HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\n")
	// Trickle a byte at a time until the server answers.
	answered, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-answered:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := c.Write([]byte("z")); err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	close(answered)
	<-stopped
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("trickled body cut by the read timeout: %d %s, want 408", resp.StatusCode, body)
	}
	if !strings.Contains(string(body), `"request_timeout"`) {
		t.Errorf("answer %s lacks error code request_timeout", body)
	}
	if got := testutil.ToFloat64(m.HTTPRequests.WithLabelValues("plain", "408")); got != 1 {
		t.Errorf("relayd_http_requests_total{plain,408} = %v, want 1", got)
	}
	if n := testutil.CollectAndCount(m.VerificationFailures); n != 0 {
		t.Errorf("a late body counted as a verification failure (%d series)", n)
	}
	if n := h.budget.Held(); n != 0 {
		t.Errorf("budget holds %d bytes after the cut", n)
	}
	store.mu.Lock()
	if store.n != 0 {
		t.Errorf("%d batches enqueued from a cut body", store.n)
	}
	store.mu.Unlock()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.recs) != 1 || rec.recs[0].Kind != history.Rejected || rec.recs[0].Status != http.StatusRequestTimeout ||
		rec.recs[0].Reason != "request_timeout" {
		t.Errorf("history: %+v, want one rejected record, status 408, reason request_timeout", rec.recs)
	}
}
