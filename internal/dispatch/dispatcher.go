package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relayd/relayd/internal/metrics"
	"github.com/relayd/relayd/internal/operator"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/xtime"
)

// Chatter is the part of the Operator client the dispatcher uses.
type Chatter interface {
	Chat(ctx context.Context, r operator.ChatRequest) (operator.ChatResponse, error)
	Health(ctx context.Context) (operator.Health, error)
}

// RateLimit is a token bucket: PerSecond tokens a second, at most Burst at
// once (at least 1). PerSecond <= 0 means unlimited.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// Retry is the backoff policy: exponential from Initial (default 1s) up to
// Max (0: no ceiling), with full jitter; after MaxAttempts failed attempts
// the message is dead-lettered (<= 0: never).
type Retry struct {
	Initial     time.Duration
	Max         time.Duration
	MaxAttempts int
}

// ConversationReset starts a fresh chat once the current one is older than
// After or has had Messages messages; zero disables either bound.
type ConversationReset struct {
	After    time.Duration
	Messages int
}

// RouteSettings are one route's dispatch settings; nil fields are unset.
type RouteSettings struct {
	RateLimit *RateLimit         // on top of the account's
	Reset     *ConversationReset // start a fresh chat when the old one is too old or too long
	TurnLimit *TurnLimit         // the loop guard
	Batch     TurnRenderer       // renders a turn of several events; nil: "N events:" and the prompts
	// Preamble starts the first turn of every new chat; "" for none.
	Preamble string
	// Replier posts the agent's answers to the route's reply sinks; nil:
	// the route does not reply.
	Replier Replier
}

// Settings are the reloadable dispatch settings.
type Settings struct {
	// Concurrency bounds requests in flight (operator.concurrency); at least 1.
	Concurrency int
	// RateLimit is the account's token bucket; PerSecond <= 0 means unlimited.
	RateLimit RateLimit
	// Retry is the backoff policy. MaxAttempts <= 0 never gives up.
	Retry Retry
	// Routes by name. A message of a route missing here is still delivered,
	// with no route limit and no reset.
	Routes map[string]RouteSettings
	// Preamble is the preamble of routes missing from Routes (a message
	// queued under a route a reload removed); "" for none.
	Preamble string
	// DrainTimeout is how long requests in flight may finish after Run's
	// context ends; past it they are cancelled and their messages released.
	// Zero or less cancels them at once.
	DrainTimeout time.Duration
}

// Options are the dispatcher's collaborators; every field may be left zero.
type Options struct {
	Logger  *slog.Logger     // default: discard
	Metrics *metrics.Metrics // default: metrics on a private registry
	// Now is the clock for timestamps (failures, next attempt times, chat
	// ages). Waits use the real clock. Default time.Now.
	Now func() time.Time
	// Rand is the jitter source, uniform in [0, 1). Default math/rand/v2.
	Rand func() float64
	// ProbeInitial and ProbeMax bound the health-probe backoff during a
	// pause, and the resume backoff across pauses that follow each other
	// closely. Default 1s and 1m.
	ProbeInitial, ProbeMax time.Duration
	// Pacer, when set, hands out the slots of the account's and the routes'
	// rate limits (shared by replicas); nil: in-process token buckets. When
	// it fails the dispatcher paces with its own buckets until it answers.
	Pacer Pacer
	// History, when set, gets each message's outcome for its event's record.
	History History
	// Replies stores a delivered turn's replies when its lease is not a
	// ReplyAcker (before the ack: at least once). Nil: such replies are
	// logged and dropped.
	Replies Enqueuer
}

// ErrDrainTimeout is returned by Run when requests were still in flight at
// the end of Settings.DrainTimeout and were cancelled. Their messages
// were released and stay queued.
var ErrDrainTimeout = errors.New("dispatch: drain timeout: in-flight requests cancelled")

// healthTimeout bounds one health probe.
const healthTimeout = 30 * time.Second

// leaseOpTimeout bounds the store calls that end a lease, which run even
// after Run's context ended.
const leaseOpTimeout = 10 * time.Second

// MaxTails bounds the delivered turns whose ack commits in the background
// while their worker sends the next turn. A delivered turn is sent again
// after a crash until its ack commits; each worker holds at most one turn
// that is sent and not acked (its request in flight, or its ack
// committing), so a crash sends again at most Concurrency + MaxTails
// turns. A larger bound bought no throughput: acks commit in groups, a
// few milliseconds after the answer, while the other workers send.
const MaxTails = 4

// Dispatcher delivers queued messages to the Operator API.
type Dispatcher struct {
	q     Queue
	chats ChatStore
	api   atomic.Pointer[chatterBox]

	settings atomic.Pointer[Settings]
	resize   chan struct{} // Apply changed Concurrency
	running  atomic.Bool
	cut      atomic.Bool // a request was cancelled by the drain timeout

	log          *slog.Logger
	m            *metrics.Metrics
	now          func() time.Time
	rand         func() float64
	probeInitial time.Duration
	probeMax     time.Duration

	hist   History
	enq    Enqueuer
	lim    *limits
	pause  *pauser
	forbid *forbidTracker

	// tails end delivered leases in the background (see handle); at most
	// MaxTails at once.
	tails     sync.WaitGroup
	tailSlots chan struct{}

	// sinkGates hold back the posts to a reply sink that asked for a
	// wait (a rate limit): (route, sink index) -> until when.
	sinkGates sync.Map

	heldMu sync.Mutex
	held   map[convKey]string // conversations this dispatcher holds a lease of -> message id
}

type chatterBox struct{ Chatter }

type convKey struct{ route, key string }

// New returns a dispatcher; Run starts it.
func New(q Queue, chats ChatStore, api Chatter, s Settings, o Options) *Dispatcher {
	d := &Dispatcher{
		q: q, chats: chats,
		resize:       make(chan struct{}, 1),
		log:          o.Logger,
		m:            o.Metrics,
		now:          o.Now,
		rand:         o.Rand,
		probeInitial: o.ProbeInitial,
		probeMax:     o.ProbeMax,
		hist:         o.History,
		enq:          o.Replies,
		forbid:       newForbidTracker(),
		held:         map[convKey]string{},
		tailSlots:    make(chan struct{}, MaxTails),
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.m == nil {
		d.m = metrics.New(prometheus.NewRegistry())
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.rand == nil {
		d.rand = rand.Float64
	}
	if d.probeInitial <= 0 {
		d.probeInitial = time.Second
	}
	if d.probeMax < d.probeInitial {
		d.probeMax = max(time.Minute, d.probeInitial)
	}
	d.setChatter(api)
	s = cloneSettings(s)
	d.settings.Store(&s)
	d.lim = newLimits(s, d.m, d.log, o.Pacer)
	d.pause = newPauser(d.probeInitial, d.probeMax, func(paused bool) {
		if paused {
			d.m.DispatchPaused.Set(1)
		} else {
			d.m.DispatchPaused.Set(0)
		}
	})
	d.m.DispatchPaused.Set(0)
	return d
}

func cloneSettings(s Settings) Settings {
	routes := make(map[string]RouteSettings, len(s.Routes))
	for k, v := range s.Routes {
		if v.RateLimit != nil {
			rl := *v.RateLimit
			v.RateLimit = &rl
		}
		if v.Reset != nil {
			r := *v.Reset
			v.Reset = &r
		}
		if v.TurnLimit != nil {
			tl := *v.TurnLimit
			v.TurnLimit = &tl
		}
		routes[k] = v
	}
	s.Routes = routes
	s.Concurrency = max(s.Concurrency, 1)
	return s
}

// Apply swaps the settings (a reload). Limits, retry policy, routes and the
// drain timeout apply to the next request; a concurrency change resizes the
// running worker pool at once (surplus workers finish the message they hold,
// if any, then stop).
func (d *Dispatcher) Apply(s Settings) {
	s = cloneSettings(s)
	d.settings.Store(&s)
	d.lim.apply(s)
	select {
	case d.resize <- struct{}{}:
	default:
	}
}

// setChatter swaps the Operator client. A reload changes the client's key
// in place; tests swap the client whole.
func (d *Dispatcher) setChatter(api Chatter) { d.api.Store(&chatterBox{api}) }

func (d *Dispatcher) chatter() Chatter { return d.api.Load().Chatter }

// Paused reports whether dispatch is paused and why (for /readyz).
func (d *Dispatcher) Paused() (paused bool, reason string) {
	k, r := d.pause.state()
	return k != running, r
}

// Resume probes the API at once if dispatch is paused (after a reload with a
// new key). Dispatch resumes only if the probe succeeds.
func (d *Dispatcher) Resume() { d.pause.resumeNow() }

// Run dispatches until ctx ends, then drains: it stops leasing, lets
// requests in flight finish within Settings.DrainTimeout, cancels the rest
// and releases their leases. It returns nil after a clean drain,
// ErrDrainTimeout when requests had to be cancelled, or an error when the
// queue was closed under it.
func (d *Dispatcher) Run(ctx context.Context) error {
	if !d.running.CompareAndSwap(false, true) {
		return errors.New("dispatch: Run is already running")
	}
	defer d.running.Store(false)
	d.cut.Store(false)

	// Requests and the store calls around them outlive ctx by the drain
	// timeout: ctx ending stops leasing, not the work already leased.
	reqCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()

	var wg sync.WaitGroup
	failed := make(chan error, 1)

	wg.Go(func() { d.probe(runCtx) })

	var workers []context.CancelFunc
	resize := func() {
		target := d.settings.Load().Concurrency
		for len(workers) < target {
			wctx, cancel := context.WithCancel(runCtx)
			workers = append(workers, cancel)
			wg.Go(func() { d.work(wctx, reqCtx, failed) })
		}
		for len(workers) > target {
			workers[len(workers)-1]()
			workers = workers[:len(workers)-1]
		}
	}
	resize()
	d.log.Info("dispatch started", "concurrency", len(workers))

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-d.resize:
			before := len(workers)
			resize()
			if len(workers) != before {
				d.log.Info("dispatch concurrency changed", "concurrency", len(workers))
			}
		case err := <-failed:
			runErr = err
			break loop
		}
	}
	stopRun()

	done := make(chan struct{})
	go func() {
		wg.Wait()
		d.tails.Wait() // no worker is left to start one
		close(done)
	}()
	drain := d.settings.Load().DrainTimeout
	if drain > 0 {
		t := time.NewTimer(drain)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
		}
	}
	select {
	case <-done:
		d.log.Info("dispatch stopped")
		return runErr
	default:
	}
	hardStop()
	<-done
	if !d.cut.Load() {
		d.log.Info("dispatch stopped")
		return runErr
	}
	d.log.Warn("dispatch stopped: requests in flight were cancelled and their messages released", "drain_timeout", drain)
	if runErr == nil {
		runErr = ErrDrainTimeout
	}
	return runErr
}

// work is one worker: it leases and handles messages until ctx ends.
func (d *Dispatcher) work(ctx, reqCtx context.Context, failed chan<- error) {
	var errDelay time.Duration
	for {
		if err := d.pause.waitLeasable(ctx); err != nil {
			return
		}
		lease, err := d.q.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, queue.ErrClosed) {
				select {
				case failed <- fmt.Errorf("dispatch: %w", err):
				default:
				}
				return
			}
			errDelay = min(max(errDelay*2, 100*time.Millisecond), 5*time.Second)
			d.log.Error("dispatch: leasing failed", "err", err, "retry_in", errDelay)
			if xtime.Sleep(ctx, errDelay) != nil {
				return
			}
			continue
		}
		errDelay = 0
		d.handle(ctx, reqCtx, lease)
	}
}

// hold records that this dispatcher holds a lease of m's conversation. It
// refuses a second one: the queue must never hand out two, and acting on two
// would break the conversation's order.
func (d *Dispatcher) hold(m queue.Message) bool {
	k := convKey{m.Route, m.ConversationKey}
	d.heldMu.Lock()
	defer d.heldMu.Unlock()
	if _, ok := d.held[k]; ok {
		return false
	}
	d.held[k] = m.ID
	return true
}

func (d *Dispatcher) unhold(m queue.Message) {
	d.heldMu.Lock()
	delete(d.held, convKey{m.Route, m.ConversationKey})
	d.heldMu.Unlock()
}
