package dispatch_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/metrics"
	"github.com/relayd/relayd/internal/operator"
	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/queue/natsq"
	"github.com/relayd/relayd/internal/queue/natsq/natstest"
)

// replica is one relayd process of a cluster: its own JetStream store and
// dispatcher, sharing the NATS server and the Operator with the others.
// A stopped replica has left the cluster: its store is closed, so its
// partitions go to the others.
type replica struct {
	t      testing.TB
	url    string
	parts  int // partitions; 0 for the default
	store  *natsq.Store
	m      *metrics.Metrics
	cancel context.CancelFunc
	done   chan error
}

// cluster is n replicas on one embedded JetStream, talking to one fake
// Operator.
type cluster struct {
	t        testing.TB
	fake     *fake.Server
	client   *operator.Client
	replicas []*replica
}

func newCluster(t testing.TB, n int) *cluster {
	return newClusterWith(t, n, clusterOptions{})
}

type clusterOptions struct {
	partitions int
	// wrap, when set, stands in front of the fake Operator.
	wrap func(http.Handler) http.Handler
}

func newClusterWith(t testing.TB, n int, o clusterOptions) *cluster {
	t.Helper()
	_, url := natstest.RunServer(t)
	c := &cluster{t: t, fake: fake.New(fake.Options{})}
	var h http.Handler = c.fake
	if o.wrap != nil {
		h = o.wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c.client = operator.New(operator.Options{BaseURL: srv.URL, APIKey: apiKey, Timeout: 30 * time.Second})
	for range n {
		r := &replica{t: t, url: url, parts: o.partitions, m: metrics.New(prometheus.NewRegistry())}
		t.Cleanup(r.stop)
		c.replicas = append(c.replicas, r)
	}
	return c
}

// open opens the replica's store if it has none. Short claims let the
// replicas share the partitions within a second of joining.
func (r *replica) open() {
	r.t.Helper()
	if r.store != nil {
		return
	}
	st, err := natsq.Open(context.Background(), natsq.Options{
		URLs: []string{r.url}, Partitions: r.parts, OwnerTTL: time.Second, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		r.t.Fatal(err)
	}
	r.store = st
}

// startAll starts every replica's dispatcher with s.
func (c *cluster) startAll(s dispatch.Settings) {
	for _, r := range c.replicas {
		c.start(r, s)
	}
}

// start runs a new dispatcher on the replica's store, pacing with the
// limits the replicas share, as the daemon wires it on nats.
func (c *cluster) start(r *replica, s dispatch.Settings) {
	r.open()
	d := dispatch.New(r.store, r.store, c.client, s, dispatch.Options{
		Metrics: r.m, Pacer: r.store.RateLimiter(), Logger: slog.New(slog.DiscardHandler),
	})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- d.Run(ctx) }()
}

// stop ends the replica's dispatcher and closes its store.
func (r *replica) stop() {
	if r.cancel != nil {
		r.cancel()
		r.cancel = nil
		select {
		case <-r.done:
		case <-time.After(waitTimeout):
			r.t.Fatal("Run did not return after cancel")
		}
	}
	if r.store != nil {
		_ = r.store.Close()
		r.store = nil
	}
}

// enqueue stores msgs through the first replica running.
func (c *cluster) enqueue(msgs ...queue.Message) {
	c.t.Helper()
	i := slices.IndexFunc(c.replicas, func(r *replica) bool { return r.store != nil })
	if i < 0 {
		c.t.Fatal("enqueue: no replica running")
	}
	if _, err := c.replicas[i].store.Enqueue(context.Background(), queue.Batch{Messages: msgs}); err != nil {
		c.t.Fatalf("enqueue: %v", err)
	}
}

// waitFor polls cond for up to patience.
func (c *cluster) waitFor(what string, patience time.Duration, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// arrivals are the times the Operator received the chat requests whose
// text is text, in order.
func (c *cluster) arrivals(text string) []time.Time {
	var out []time.Time
	for _, r := range c.fake.Requests() {
		if r.Method == "POST" && r.Text == text {
			out = append(out, r.Start)
		}
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

func (c *cluster) sum(v func(m *metrics.Metrics) float64) float64 {
	var n float64
	for _, r := range c.replicas {
		n += v(r.m)
	}
	return n
}

// slack is how late a request may reach the Operator after its slot (the
// sleep's overshoot, the HTTP round trip): a request sent late can land
// next to the one after it. It only ever lets a window hold more, so the
// check stays one-sided; a limit kept per process (3× the rate here) is
// still far past it.
const slack = 400 * time.Millisecond

// checkRate asserts that no window of length w holds more than
// burst + perSecond×(w+slack) requests, and that they were not sent faster
// overall: past the burst, one slot of 1/perSecond each.
func checkRate(t *testing.T, at []time.Time, perSecond float64, burst int) {
	t.Helper()
	// The first request may have reached the Operator late.
	slots := time.Duration(float64(len(at)-burst) / perSecond * float64(time.Second))
	if span, want := at[len(at)-1].Sub(at[0]), slots-slack; span < want {
		t.Errorf("%d requests took %v, want at least %v", len(at), span, want)
	}
	for i := range at {
		for j := i; j < len(at); j++ {
			w := at[j].Sub(at[i])
			if n, allowed := j-i+1, float64(burst)+perSecond*(w+slack).Seconds(); float64(n) > allowed {
				t.Fatalf("%d requests within %v (from the %dth), want at most %.1f at %v/s with a burst of %d",
					n, w, i+1, allowed, perSecond, burst)
			}
		}
	}
}

// Three replicas with operator.rate_limit {per_second: 5, burst: 1}: the
// Operator sees at most 5 requests a second from all of them together.
func TestClusterAccountRateLimit(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	s := defaultSettings()
	s.RateLimit = dispatch.RateLimit{PerSecond: 5, Burst: 1}
	const n = 60
	var msgs []queue.Message
	for i := range n {
		msgs = append(msgs, newMsg([]string{"a", "b", "c"}[i%3], fmt.Sprintf("c%d", i), "x"))
	}
	c.startAll(s)
	c.enqueue(msgs...)
	c.waitFor("every event delivered", 3*time.Minute, func() bool { return len(c.arrivals("x")) >= n })
	checkRate(t, c.arrivals("x"), 5, 1)
	if w := c.sum(func(m *metrics.Metrics) float64 {
		return testutil.ToFloat64(m.RateLimitWait.WithLabelValues("account"))
	}); w <= 0 {
		t.Errorf("rate_limit_wait{account} = %v summed over the replicas, want > 0", w)
	}
	busy := 0
	for _, r := range c.replicas {
		if testutil.ToFloat64(r.m.DispatchAttempts.WithLabelValues("a", "delivered"))+
			testutil.ToFloat64(r.m.DispatchAttempts.WithLabelValues("b", "delivered"))+
			testutil.ToFloat64(r.m.DispatchAttempts.WithLabelValues("c", "delivered")) > 0 {
			busy++
		}
	}
	if busy < 2 {
		t.Errorf("%d replicas delivered, want the work spread over several", busy)
	}
}

// The same for a route's rate_limit, with no account limit.
func TestClusterRouteRateLimit(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	s := defaultSettings()
	s.Routes = map[string]dispatch.RouteSettings{"slow": {RateLimit: &dispatch.RateLimit{PerSecond: 5, Burst: 1}}}
	const n = 30
	var msgs []queue.Message
	for i := range n {
		msgs = append(msgs, newMsg("slow", fmt.Sprintf("c%d", i), "slow"))
	}
	c.startAll(s)
	c.enqueue(msgs...)
	c.waitFor("every event delivered", 3*time.Minute, func() bool { return len(c.arrivals("slow")) >= n })
	checkRate(t, c.arrivals("slow"), 5, 1)
	if w := c.sum(func(m *metrics.Metrics) float64 { return testutil.ToFloat64(m.RateLimitWait.WithLabelValues("route")) }); w <= 0 {
		t.Errorf("rate_limit_wait{route} = %v summed over the replicas, want > 0", w)
	}
}

// turn_limit is kept in the conversation's chat record, which the
// replicas share: with {turns: 2, per: 1h}, one turn sent by one replica
// and one by another leave none for either.
func TestClusterTurnLimit(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2)
	s := defaultSettings()
	s.Routes = map[string]dispatch.RouteSettings{"r": {TurnLimit: &dispatch.TurnLimit{Turns: 2, Per: time.Hour}}}
	a, b := c.replicas[0], c.replicas[1]
	sent := func() int { return len(c.arrivals("turn")) }
	limited := func(r *replica) float64 { return testutil.ToFloat64(r.m.TurnsLimited.WithLabelValues("r")) }

	// Each replica alone in turn, so that each sends one of the two turns.
	c.start(a, s)
	c.enqueue(newMsg("r", "repo", "turn"))
	c.waitFor("a's turn", waitTimeout, func() bool { return sent() == 1 })
	a.stop()
	c.start(b, s)
	c.enqueue(newMsg("r", "repo", "turn"))
	c.waitFor("b's turn", waitTimeout, func() bool { return sent() == 1+1 })
	b.stop()

	c.start(a, s)
	c.enqueue(newMsg("r", "repo", "turn"))
	c.waitFor("a to hold back the third turn", waitTimeout, func() bool { return limited(a) >= 1 })
	st, err := a.store.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := sent(); got != 2 {
		t.Fatalf("%d turns sent, want 2 (turn_limit 2 per hour across the replicas)", got)
	}
	if st.Ready+st.Delayed+st.Inflight != 1 {
		t.Fatalf("queue %+v, want the third event still queued", st)
	}
}

// A 429 with Retry-After that one replica gets holds the other replicas
// back too, through the account's shared slots.
func TestClusterRetryAfterShared(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2)
	s := defaultSettings()
	s.RateLimit = dispatch.RateLimit{PerSecond: 50, Burst: 5}
	a, b := c.replicas[0], c.replicas[1]
	c.fake.FailNext(1, fake.Fault{Status: 429, RetryAfter: "2"})
	c.start(a, s)
	first := newMsg("r", "a", "conversation a")
	c.enqueue(first)
	c.waitFor("the 429 to be handled", waitTimeout, func() bool {
		return testutil.ToFloat64(a.m.Retries.WithLabelValues("r", "rate_limited")) == 1
	})
	a.stop() // only the other replica may send now
	c.start(b, s)
	other := newMsg("r", "b", "conversation b")
	c.enqueue(other)
	c.waitFor("the other conversation sent", waitTimeout, func() bool { return len(c.arrivals("conversation b")) == 1 })
	var refused time.Time
	for _, r := range c.fake.Requests() {
		if r.Status == 429 {
			refused = r.Start
		}
	}
	if d := c.arrivals("conversation b")[0].Sub(refused); d < 2*time.Second {
		t.Errorf("the other replica sent %v after the account's 429 with Retry-After: 2", d)
	}
	if w := testutil.ToFloat64(b.m.RateLimitWait.WithLabelValues("account")); w <= 0 {
		t.Errorf("rate_limit_wait{account} on the other replica = %v, want > 0", w)
	}
}

// On one partition shared by two replicas, a conversation whose turn takes
// 10 s and one that backs off for a minute delay only themselves: the other
// conversations are delivered meanwhile.
func TestClusterNoHeadOfLine(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	slowEnded := make(chan time.Time, 1)
	slowStarted := make(chan struct{}, 1)
	c := newClusterWith(t, 2, clusterOptions{partitions: 1, wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(strings.NewReader(string(body)))
			if strings.Contains(string(body), "long turn") {
				// The agent works on this turn for 10 s (or until the
				// test has seen what it waits for).
				select {
				case slowStarted <- struct{}{}:
				default:
				}
				select {
				case <-time.After(10 * time.Second):
				case <-release:
				}
				next.ServeHTTP(w, r)
				select {
				case slowEnded <- time.Now():
				default:
				}
				return
			}
			next.ServeHTTP(w, r)
		})
	}})
	var once sync.Once
	releaseLong := func() { once.Do(func() { close(release) }) }
	t.Cleanup(releaseLong)
	s := defaultSettings()
	s.Retry = dispatch.Retry{Initial: time.Minute, Max: time.Minute, MaxAttempts: 5}
	c.startAll(s)
	c.fake.FailNext(1, fake.Fault{Status: 503})
	c.enqueue(newMsg("r", "backoff", "backing off"))
	c.waitFor("the first attempt to fail", waitTimeout, func() bool { return len(c.fake.Requests()) == 1 })
	c.enqueue(newMsg("r", "long", "long turn"), newMsg("r", "long", "after the long turn"))
	select {
	case <-slowStarted:
	case <-time.After(waitTimeout):
		t.Fatal("the long turn was not sent")
	}
	var others []queue.Message
	for i := range 10 {
		others = append(others, newMsg("r", fmt.Sprintf("other-%d", i), "other"))
	}
	c.enqueue(others...)
	c.waitFor("the other conversations", waitTimeout, func() bool { return len(c.arrivals("other")) == len(others) })
	select {
	case at := <-slowEnded:
		t.Fatalf("the long turn ended at %v, before the other conversations were all delivered", at)
	default:
	}
	if n := len(c.arrivals("backing off")); n != 1 {
		t.Fatalf("the backing-off conversation was sent %d times, want once (its retry is a minute away)", n)
	}
	if n := len(c.arrivals("after the long turn")); n != 0 {
		t.Fatalf("the long conversation's next event was sent while its turn was in flight")
	}
	releaseLong()
	c.waitFor("the long conversation's next event", waitTimeout, func() bool { return len(c.arrivals("after the long turn")) == 1 })
}
