package dispatch

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/relayd/relayd/internal/metrics"
	"github.com/relayd/relayd/internal/xtime"
)

// limits is the flow control every request passes: the account-wide gate
// that a 429 closes, the account's token bucket and the route's.
type limits struct {
	m *metrics.Metrics

	mu      sync.RWMutex
	account *rate.Limiter
	routes  map[string]*routeLimiter // only routes with a rate_limit of their own

	gateMu    sync.Mutex
	notBefore time.Time // no request by any worker before this (wall clock)
}

func newLimits(s Settings, m *metrics.Metrics) *limits {
	l := &limits{m: m, account: newLimiter(s.RateLimit), routes: map[string]*routeLimiter{}}
	l.apply(s)
	return l
}

// newLimiter builds a token bucket; a non-positive rate means unlimited.
func newLimiter(rl RateLimit) *rate.Limiter {
	return rate.NewLimiter(limitOf(rl), burstOf(rl))
}

func limitOf(rl RateLimit) rate.Limit {
	if rl.PerSecond <= 0 {
		return rate.Inf
	}
	return rate.Limit(rl.PerSecond)
}

// burstOf is at least 1: a zero burst would make every Wait fail.
func burstOf(rl RateLimit) int {
	return max(rl.Burst, 1)
}

// apply updates the buckets in place, so waiters and accumulated tokens
// carry over a reload.
func (l *limits) apply(s Settings) {
	l.mu.Lock()
	defer l.mu.Unlock()
	setLimiter(l.account, s.RateLimit)
	for name, rs := range s.Routes {
		if rs.RateLimit == nil {
			continue
		}
		if rl, ok := l.routes[name]; ok {
			setLimiter(rl.lim, *rs.RateLimit)
		} else {
			l.routes[name] = &routeLimiter{lim: newLimiter(*rs.RateLimit)}
		}
	}
	for name := range l.routes {
		if rs, ok := s.Routes[name]; !ok || rs.RateLimit == nil {
			delete(l.routes, name)
		}
	}
}

func setLimiter(lim *rate.Limiter, rl RateLimit) {
	if lim.Limit() != limitOf(rl) {
		lim.SetLimit(limitOf(rl))
	}
	if lim.Burst() != burstOf(rl) {
		lim.SetBurst(burstOf(rl))
	}
}

// closeGate keeps every worker from sending before until.
func (l *limits) closeGate(until time.Time) {
	l.gateMu.Lock()
	if until.After(l.notBefore) {
		l.notBefore = until
	}
	l.gateMu.Unlock()
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

// routeLimiter is a route's token bucket and how many workers wait on it.
type routeLimiter struct {
	lim     *rate.Limiter
	waiting atomic.Int32
}

// routeBusy is returned by wait when a route already has as many workers
// waiting on its bucket as it may: the message should go back to the queue
// for about retryIn, so the worker can serve other routes meanwhile.
type routeBusy struct{ retryIn time.Duration }

func (e *routeBusy) Error() string { return "dispatch: route rate limit busy" }

// wait takes one token from the account's bucket and one from the route's.
// A request waits on both; the time spent is counted per scope. At most
// maxRouteWaiters workers wait on one route's bucket at a time (see
// routeBusy), so a backlog on a slow route cannot take every worker from
// the other routes.
func (l *limits) wait(ctx context.Context, route string, maxRouteWaiters int) error {
	l.mu.RLock()
	account, rl := l.account, l.routes[route]
	l.mu.RUnlock()
	if rl != nil {
		// Checked before the account's bucket, so a message sent back does
		// not spend an account token.
		n := rl.waiting.Add(1)
		defer rl.waiting.Add(-1)
		if int(n) > max(maxRouteWaiters, 1) && rl.lim.Tokens() < 1 {
			// By then the workers already waiting should have had their tokens.
			per := time.Duration(float64(time.Second) / max(float64(rl.lim.Limit()), 1e-9))
			return &routeBusy{retryIn: min(time.Duration(n)*per, time.Hour)}
		}
	}
	if err := waitLimiter(ctx, account, l.m, "account"); err != nil {
		return err
	}
	if rl == nil {
		return nil
	}
	return waitLimiter(ctx, rl.lim, l.m, "route")
}

func waitLimiter(ctx context.Context, lim *rate.Limiter, m *metrics.Metrics, scope string) error {
	if lim.Allow() {
		return nil
	}
	start := time.Now()
	err := lim.Wait(ctx)
	m.RateLimitWait.WithLabelValues(scope).Add(time.Since(start).Seconds())
	return err
}
