package dispatch

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/relayd/relayd/internal/metrics"
	"github.com/relayd/relayd/internal/xtime"
)

// Pacer hands out request slots per scope ("account", "route/<name>")
// under a limit of perSecond requests a second with bursts of burst, given
// on every call so that a reload applies to the next take. The dispatcher
// has its own in-process token buckets; a Pacer shared by replicas (the
// JetStream backend's) makes the limits hold for the whole cluster.
type Pacer interface {
	// Take reserves the scope's next slot and says when it is due. A slot
	// due later than now+maxWait is not taken: ok is false, and at says
	// when the next one would be due.
	Take(ctx context.Context, scope string, perSecond float64, burst int, maxWait time.Duration) (at time.Time, ok bool, err error)
	// Hold keeps slots of scope from being due before until (a 429 with a
	// Retry-After); slots already taken stay due when they were.
	Hold(ctx context.Context, scope string, perSecond float64, burst int, until time.Time) error
}

// sharedRetryAfter is how long the limits stay on the local buckets after
// the shared Pacer failed, before it is tried again.
const sharedRetryAfter = 5 * time.Second

// forever is a maxWait that takes any slot.
const forever = time.Duration(1<<63 - 1)

// limits is the flow control every request passes: the account-wide gate
// that a 429 closes, the account's rate limit and the route's.
type limits struct {
	m   *metrics.Metrics
	log *slog.Logger

	local  *localPacer
	shared Pacer // nil: local only

	mu      sync.RWMutex
	account RateLimit
	routes  map[string]*routeLimiter // only routes with a rate_limit of their own

	gateMu    sync.Mutex
	notBefore time.Time // no request by any worker before this (wall clock)

	downMu     sync.Mutex
	down       bool          // the shared Pacer failed: local buckets meanwhile
	downUntil  time.Time     // when to try the shared Pacer again
	retryAfter time.Duration // sharedRetryAfter; tests shorten it
}

func newLimits(s Settings, m *metrics.Metrics, log *slog.Logger, shared Pacer) *limits {
	l := &limits{
		m: m, log: log, local: newLocalPacer(), shared: shared,
		routes: map[string]*routeLimiter{}, retryAfter: sharedRetryAfter,
	}
	l.apply(s)
	return l
}

// burstOf is at least 1: a zero burst would let no request through.
func burstOf(rl RateLimit) int {
	return max(rl.Burst, 1)
}

// apply takes the reloaded limits; slots already taken carry over.
func (l *limits) apply(s Settings) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.account = s.RateLimit
	for name, rs := range s.Routes {
		if rs.RateLimit == nil {
			continue
		}
		if rl, ok := l.routes[name]; ok {
			rl.rate = *rs.RateLimit
		} else {
			l.routes[name] = &routeLimiter{rate: *rs.RateLimit}
		}
	}
	for name := range l.routes {
		if rs, ok := s.Routes[name]; !ok || rs.RateLimit == nil {
			delete(l.routes, name)
		}
	}
}

// closeGate keeps every worker from sending before until. With share, and
// limits shared by replicas, every other replica too: through the account's
// slots (a replica's next take is due after until; a slot it already took
// is not), so only when the account has a rate limit.
func (l *limits) closeGate(ctx context.Context, until time.Time, share bool) {
	l.gateMu.Lock()
	if until.After(l.notBefore) {
		l.notBefore = until
	}
	l.gateMu.Unlock()
	l.mu.RLock()
	account := l.account
	l.mu.RUnlock()
	if !share || l.shared == nil || account.PerSecond <= 0 || !l.sharedUp() {
		return
	}
	if err := l.shared.Hold(ctx, "account", account.PerSecond, burstOf(account), until); err != nil && ctx.Err() == nil {
		l.sharedFailed(err)
	}
}

// waitGate waits until the account gate is open. The gate may move further
// while a worker sleeps, so it is read again after each sleep.
func (l *limits) waitGate(ctx context.Context) error {
	start := time.Now()
	defer func() {
		if w := time.Since(start); w > time.Millisecond {
			l.m.RateLimitWait.WithLabelValues("account").Add(w.Seconds())
		}
	}()
	for {
		l.gateMu.Lock()
		wait := time.Until(l.notBefore)
		l.gateMu.Unlock()
		if wait <= 0 {
			return ctx.Err()
		}
		if err := xtime.Sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// routeLimiter is a route's limit and how many workers wait on it.
type routeLimiter struct {
	rate    RateLimit // guarded by limits.mu
	waiting atomic.Int32
}

// routeBusy is returned by wait when a route already has as many workers
// waiting on its limit as it may: the message should go back to the queue
// for about retryIn, so the worker can serve other routes meanwhile.
type routeBusy struct{ retryIn time.Duration }

func (e *routeBusy) Error() string { return "dispatch: route rate limit busy" }

// wait takes a slot of the account's limit and one of the route's. A
// request waits for both; the time spent is counted per scope. At most
// maxRouteWaiters workers wait on one route's limit at a time (see
// routeBusy), so a backlog on a slow route cannot take every worker from
// the other routes.
func (l *limits) wait(ctx context.Context, route string, maxRouteWaiters int) error {
	l.mu.RLock()
	account, rl := l.account, l.routes[route]
	var rr RateLimit
	if rl != nil {
		rr = rl.rate
	}
	l.mu.RUnlock()
	scope := "route/" + route
	routeTaken := false
	if rl != nil {
		n := rl.waiting.Add(1)
		defer rl.waiting.Add(-1)
		if int(n) > max(maxRouteWaiters, 1) {
			// Only a slot due now, taken before the account's, so a message
			// sent back does not spend an account slot.
			at, ok, err := l.take(ctx, scope, rr, 0)
			if err != nil {
				return err
			}
			if !ok {
				per := time.Duration(float64(time.Second) / max(rr.PerSecond, 1e-9))
				return &routeBusy{retryIn: min(max(time.Until(at), per), time.Hour)}
			}
			routeTaken = true
		}
	}
	if err := l.pace(ctx, "account", "account", account); err != nil {
		return err
	}
	if rl == nil || routeTaken {
		return nil
	}
	return l.pace(ctx, scope, "route", rr)
}

// pace takes a slot of scope and sleeps until it is due, counting the
// sleep under the metric's label.
func (l *limits) pace(ctx context.Context, scope, label string, rl RateLimit) error {
	if rl.PerSecond <= 0 {
		return nil
	}
	at, _, err := l.take(ctx, scope, rl, forever)
	if err != nil {
		return err
	}
	d := time.Until(at)
	if d <= 0 {
		return nil
	}
	start := time.Now()
	err = xtime.Sleep(ctx, d)
	l.m.RateLimitWait.WithLabelValues(label).Add(time.Since(start).Seconds())
	return err
}

// take asks the shared Pacer, or the local buckets when there is none or it
// failed. A failure of the shared Pacer is logged once, and the local
// buckets serve for sharedRetryAfter before it is tried again.
func (l *limits) take(ctx context.Context, scope string, rl RateLimit, maxWait time.Duration) (time.Time, bool, error) {
	if l.shared != nil && l.sharedUp() {
		at, ok, err := l.shared.Take(ctx, scope, rl.PerSecond, burstOf(rl), maxWait)
		if err == nil {
			l.sharedWorks()
			return at, ok, nil
		}
		if ctx.Err() != nil {
			return time.Time{}, false, ctx.Err()
		}
		l.sharedFailed(err)
	}
	return l.local.Take(ctx, scope, rl.PerSecond, burstOf(rl), maxWait)
}

func (l *limits) sharedUp() bool {
	l.downMu.Lock()
	defer l.downMu.Unlock()
	return !l.down || !time.Now().Before(l.downUntil)
}

func (l *limits) sharedFailed(err error) {
	l.downMu.Lock()
	defer l.downMu.Unlock()
	if !l.down {
		l.log.Warn("shared rate limits unavailable: pacing with this replica's own limits until they answer again", "err", err)
	}
	l.down, l.downUntil = true, time.Now().Add(l.retryAfter)
}

func (l *limits) sharedWorks() {
	l.downMu.Lock()
	defer l.downMu.Unlock()
	if l.down {
		l.down = false
		l.log.Info("shared rate limits available again")
	}
}

// localPacer is the in-process Pacer: a token bucket per scope.
type localPacer struct {
	mu   sync.Mutex
	lims map[string]*rate.Limiter
}

func newLocalPacer() *localPacer { return &localPacer{lims: map[string]*rate.Limiter{}} }

var _ Pacer = (*localPacer)(nil)

// Take reserves a token of scope's bucket; the bucket takes the limit
// given, keeping its tokens and reservations across a change.
func (p *localPacer) Take(_ context.Context, scope string, perSecond float64, burst int, maxWait time.Duration) (time.Time, bool, error) {
	lim := rate.Inf
	if perSecond > 0 {
		lim = rate.Limit(perSecond)
	}
	burst = max(burst, 1)
	p.mu.Lock()
	b, ok := p.lims[scope]
	if !ok {
		b = rate.NewLimiter(lim, burst)
		p.lims[scope] = b
	}
	p.mu.Unlock()
	if b.Limit() != lim {
		b.SetLimit(lim)
	}
	if b.Burst() != burst {
		b.SetBurst(burst)
	}
	now := time.Now()
	r := b.ReserveN(now, 1)
	d := r.DelayFrom(now)
	if d > maxWait {
		r.CancelAt(now)
		return now.Add(d), false, nil
	}
	return now.Add(d), true, nil
}

// Hold does nothing: in one process the account gate already holds every
// worker back.
func (p *localPacer) Hold(context.Context, string, float64, int, time.Time) error { return nil }
