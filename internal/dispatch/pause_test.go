package dispatch_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/operator"
	"github.com/relayd/relayd/internal/operator/fake"
)

// apiCall is one request the fake Operator received.
type apiCall struct {
	path string
	at   time.Time
}

// callLog records, in arrival order, the requests that reach h.
type callLog struct {
	mu    sync.Mutex
	calls []apiCall
	h     http.Handler
}

func (l *callLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	l.calls = append(l.calls, apiCall{path: r.URL.Path, at: time.Now()})
	l.mu.Unlock()
	l.h.ServeHTTP(w, r)
}

func (l *callLog) snapshot() []apiCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]apiCall(nil), l.calls...)
}

func (l *callLog) count(path string) int {
	n := 0
	for _, c := range l.snapshot() {
		if c.path == path {
			n++
		}
	}
	return n
}

// When /api/chat keeps answering 401 while /api/cli/health accepts the
// key, every resume lets requests out that are refused again. The wait
// before each resume doubles up to ProbeMax instead of staying at
// ProbeInitial, and dispatch still resumes for good once chats are accepted.
func TestUnauthorizedChatWithHealthyKeyBacksOff(t *testing.T) {
	t.Parallel()
	const initial, ceiling = 10 * time.Millisecond, 80 * time.Millisecond
	h := newHarness(t)
	h.settings.Concurrency = 1 // one chat per resume: an exact sequence
	h.opts.ProbeInitial, h.opts.ProbeMax = initial, ceiling
	log := &callLog{h: h.fake}
	srv := httptest.NewServer(log)
	t.Cleanup(srv.Close)
	h.client = operator.New(operator.Options{BaseURL: srv.URL, APIKey: apiKey, Timeout: 10 * time.Second})
	h.fake.FailRate(1, []fake.Fault{{Status: http.StatusUnauthorized}})
	for i := range 3 {
		h.enqueue(newMsg("r", fmt.Sprintf("c%d", i), fmt.Sprintf("m%d", i)))
	}
	h.start()

	// Once chat chats+1 arrived, the first chats were all answered 401 and
	// each was followed by its probe; the last may already be accepted.
	const chats = 7
	h.waitFor(fmt.Sprintf("%d refused chat requests", chats), func() bool { return log.count("/api/chat") > chats })
	h.fake.ClearFaults()
	h.settled()
	if p, _ := h.d.Paused(); p {
		t.Errorf("still paused after chats are accepted")
	}

	// Each refused chat is followed by exactly one health probe, which
	// resumes dispatch for exactly one more chat: no bursts.
	calls := log.snapshot()
	waits := []time.Duration{initial, 2 * initial, 4 * initial, ceiling, ceiling, ceiling, ceiling}
	for i := range chats {
		chat, probe := 2*i, 2*i+1
		if probe >= len(calls) || calls[chat].path != "/api/chat" || calls[probe].path != "/api/cli/health" {
			t.Fatalf("calls %d,%d are not a chat then a health probe: %v", chat, probe, paths(calls))
		}
		// Timers never fire early, so these lower bounds hold on any
		// machine; without the resume backoff every wait is ProbeInitial.
		if got := calls[probe].at.Sub(calls[chat].at); got < waits[i] {
			t.Errorf("pause %d: probed %v after the refused chat, want at least %v", i+1, got, waits[i])
		}
	}
	if n := h.attempts("r", "paused"); n < chats {
		t.Errorf("dispatch_attempts{paused} = %v, want at least %d", n, chats)
	}
	if len(h.dead()) != 0 {
		t.Errorf("401 dead-lettered messages")
	}
}

func paths(calls []apiCall) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.path
	}
	return out
}
