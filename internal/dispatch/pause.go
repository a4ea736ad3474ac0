package dispatch

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/relayd/relayd/internal/operator"
)

// Why dispatch is paused.
type pauseKind int

const (
	running pauseKind = iota
	// pausedUnauthorized: the API answered 401. Health probes decide when
	// the key works again.
	pausedUnauthorized
	// pausedForbidden: every recently answered route got 403. A health probe
	// cannot tell whether the key may post chats again, so once it passes one
	// real queued message goes out as a trial; a trial refused with 403 is
	// released, not dead-lettered.
	pausedForbidden
)

const (
	reasonUnauthorized = "unauthorized: the Operator API rejected the API key (401)"
	reasonForbidden    = "forbidden: the Operator API refused every route (403)"
)

// errPaused ends a lease that reached the API's door while dispatch paused.
var errPaused = errors.New("dispatch: paused")

// pauser is the dispatcher's paused/running state. Workers wait on it; the
// prober (one goroutine owned by Run) ends a pause.
type pauser struct {
	mu       sync.Mutex
	kind     pauseKind
	trial    bool          // pausedForbidden: one trial request may go
	trialOut bool          // the trial is in flight
	changed  chan struct{} // closed and replaced on every change
	kick     chan struct{} // Resume: probe now
	onChange func(paused bool)

	// Resume backoff: when the API keeps refusing chats while the health
	// probe accepts the key, every resume lets a batch of requests out to
	// be refused again. So a pause that comes within relapseWindow of the
	// last resume doubles the wait before the next probe (and so before the
	// next resume), up to ceiling; a pause after dispatch stayed running
	// that long starts again from initial.
	now       func() time.Time // real clock; tests replace it
	initial   time.Duration
	ceiling   time.Duration
	wait      time.Duration // the current pause's first probe delay
	resumedAt time.Time     // zero: never resumed
}

// relapseWindow is how long dispatch must stay running after a resume for
// the next pause to count as new rather than as the same trouble again; at
// least the probe ceiling.
const relapseWindow = time.Minute

func newPauser(initial, ceiling time.Duration, onChange func(paused bool)) *pauser {
	return &pauser{
		changed: make(chan struct{}), kick: make(chan struct{}, 1), onChange: onChange,
		now: time.Now, initial: initial, ceiling: ceiling, wait: initial,
	}
}

// broadcast wakes every waiter. Callers hold mu.
func (p *pauser) broadcast() {
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *pauser) state() (pauseKind, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kind, reasonOf(p.kind)
}

func reasonOf(k pauseKind) string {
	switch k {
	case pausedUnauthorized:
		return reasonUnauthorized
	case pausedForbidden:
		return reasonForbidden
	}
	return ""
}

// pause stops dispatch. 401 overrides 403: a key the API does not know
// cannot be tried with a trial message.
func (p *pauser) pause(k pauseKind) (changed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.kind == k || (p.kind == pausedUnauthorized && k == pausedForbidden) {
		return false
	}
	wasRunning := p.kind == running
	p.kind, p.trial, p.trialOut = k, false, false
	if wasRunning {
		if !p.resumedAt.IsZero() && p.now().Sub(p.resumedAt) < max(relapseWindow, p.ceiling) {
			p.wait = min(p.wait*2, p.ceiling)
		} else {
			p.wait = p.initial
		}
	}
	p.broadcast()
	if wasRunning && p.onChange != nil {
		p.onChange(true)
	}
	return true
}

func (p *pauser) resume() (changed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.kind == running {
		return false
	}
	p.kind, p.trial, p.trialOut = running, false, false
	p.resumedAt = p.now()
	p.broadcast()
	if p.onChange != nil {
		p.onChange(false)
	}
	return true
}

// waitLeasable blocks while dispatch is paused and no trial is on offer, so
// paused workers do not take leases.
func (p *pauser) waitLeasable(ctx context.Context) error {
	for {
		p.mu.Lock()
		ok := p.kind == running || (p.kind == pausedForbidden && p.trial)
		ch := p.changed
		p.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// admit is asked right before a request goes out. It reports whether the
// request is the forbidden-pause trial, or errPaused when it must not go.
func (p *pauser) admit() (trial bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.kind == running:
		return false, nil
	case p.kind == pausedForbidden && p.trial:
		p.trial, p.trialOut = false, true
		return true, nil
	}
	return false, errPaused
}

// offerTrial lets one request go during a forbidden pause.
func (p *pauser) offerTrial() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.kind == pausedForbidden && !p.trial && !p.trialOut {
		p.trial = true
		p.broadcast()
	}
}

// trialDone records the trial's answer: anything the API would answer to a
// key allowed to post ends the pause; 401 turns it into a key pause; 403 or
// no answer at all keeps it.
func (p *pauser) trialDone(o operator.Outcome, answered bool) {
	p.mu.Lock()
	p.trialOut = false
	p.mu.Unlock()
	switch {
	case o == operator.Unauthorized:
		p.pause(pausedUnauthorized)
	case o == operator.Forbidden || !answered:
	case o == operator.Retry:
		// 429 or 5xx: the API answered but said nothing about permission.
	default:
		p.resume()
	}
}

// resumeNow asks the prober to probe at once (after a reload).
func (p *pauser) resumeNow() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// probe runs while Run runs: whenever dispatch is paused it probes
// GET /api/cli/health with exponential backoff (from the pause's wait,
// doubling up to ceiling; Resume probes at once) and ends the pause when the
// key works.
func (d *Dispatcher) probe(ctx context.Context) {
	p := d.pause
	for {
		p.mu.Lock()
		paused, ch, delay := p.kind != running, p.changed, p.wait
		p.mu.Unlock()
		if !paused {
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return
			}
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-p.kick:
				delay = d.probeInitial
			case <-time.After(delay):
				delay = min(delay*2, d.probeMax)
			}
			kind, _ := p.state()
			if kind == running {
				break
			}
			d.healthCheck(ctx, kind)
			if k, _ := p.state(); k == running {
				break
			}
		}
	}
}

// healthCheck probes the key once and acts on the answer.
func (d *Dispatcher) healthCheck(ctx context.Context, kind pauseKind) {
	pctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	h, err := d.chatter().Health(pctx)
	switch {
	case err == nil && h.Authenticated && kind == pausedUnauthorized:
		if d.pause.resume() {
			d.log.Info("dispatch resumed: the Operator API accepts the key")
		}
	case err == nil && h.Authenticated:
		d.log.Info("dispatch paused by 403: the key authenticates, sending one trial message")
		d.pause.offerTrial()
	case err == nil:
		d.log.Warn("dispatch paused: health probe says the key is not authenticated")
		d.pause.pause(pausedUnauthorized)
	default:
		if v := operator.Classify(err, false); v.Outcome == operator.Unauthorized {
			d.pause.pause(pausedUnauthorized)
		}
		d.log.Warn("dispatch paused: health probe failed", "err", err)
	}
}

// forbidThreshold is how many 403 answers in a row, across all routes,
// with no other answer from the API in between, it takes to suspect the key
// rather than a message. Together with forbidWindow: dispatch pauses only
// when, in addition, every route answered within forbidWindow had 403 as its
// last answer. So one route losing a permission dead-letters its own
// messages while the others go on; a key that lost chat access pauses
// everything after a handful of dead letters, whatever the number of routes.
const (
	forbidThreshold = 3
	forbidWindow    = 10 * time.Minute
)

type answer struct {
	forbidden bool
	at        time.Time
}

// forbidTracker watches API answers for "every route is getting 403".
type forbidTracker struct {
	mu          sync.Mutex
	consecutive int
	last        map[string]answer // route -> its last API answer
}

func newForbidTracker() *forbidTracker { return &forbidTracker{last: map[string]answer{}} }

// observe records an HTTP answer for route and reports whether dispatch
// should pause.
func (t *forbidTracker) observe(route string, forbidden bool, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last[route] = answer{forbidden: forbidden, at: now}
	if !forbidden {
		t.consecutive = 0
		return false
	}
	t.consecutive++
	if t.consecutive < forbidThreshold {
		return false
	}
	for r, a := range t.last {
		if now.Sub(a.at) > forbidWindow {
			delete(t.last, r)
			continue
		}
		if !a.forbidden {
			return false
		}
	}
	t.consecutive = 0
	return true
}
