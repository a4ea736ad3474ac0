package natsq

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/xtime"
)

// limitsTTL bounds how long a limit's record outlives its last take. A
// record holds a time that is at most a few retry delays ahead, so one
// removed a day later held nothing; this only clears the keys of routes a
// reload took away.
const limitsTTL = 24 * time.Hour

// maxEmission caps one slot's spacing, so a tiny rate cannot overflow a
// Duration.
const maxEmission = 24 * time.Hour

// RateLimiter paces requests for the whole cluster: every replica's Store
// sharing the stream takes its slots from the same records, in the
// "<stream>_limits" bucket, one key per scope ("account", "route/<name>").
//
// A record is the scope's theoretical arrival time (GCRA): the time at
// which the scope's bucket would be empty again. A take reads it and
// writes it forward by one emission interval with a revision check, so two
// replicas never get the same slot; on a conflict it reads again. That is
// two KV operations per round (more under contention between replicas),
// and the caller then sleeps until its slot. In a process, one goroutine
// per scope does the rounds, each for every take waiting at that moment,
// so a high limit does not cap a replica at one take per round trip, and
// conflicts come from other replicas only.
//
// Times are the replicas' wall clocks: a replica whose clock runs ε ahead
// of the others may send up to ε early, so the account may see up to
// rate×ε requests more than the limit in a window. Replicas are assumed to
// be synchronised (NTP: milliseconds).
type RateLimiter struct {
	s *Store

	mu     sync.Mutex
	scopes map[string]chan *takeReq // served by one goroutine each
}

// takeReq is one Take waiting for its scope's next round.
type takeReq struct {
	ctx       context.Context
	perSecond float64
	burst     int
	maxWait   time.Duration
	reply     chan takeRes // buffered: the round never waits for the taker
}

type takeRes struct {
	at  time.Time
	ok  bool
	err error
}

// maxRound bounds the takes served by one round.
const maxRound = 1024

// RateLimiter returns the store's shared rate limiter.
func (s *Store) RateLimiter() *RateLimiter {
	s.limOnce.Do(func() { s.lim = &RateLimiter{s: s, scopes: map[string]chan *takeReq{}} })
	return s.lim
}

// provisionLimits creates or updates the limits bucket.
func (s *Store) provisionLimits(ctx context.Context) (jetstream.KeyValue, error) {
	return s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: s.n.stream + "_limits", Description: "relayd rate limits", History: 1,
		TTL: limitsTTL, Storage: jetstream.FileStorage, Replicas: s.o.Replicas,
	})
}

// Take reserves the scope's next slot under a limit of perSecond requests a
// second with bursts of burst, and returns when it is due (now or later).
// When the slot would be due more than maxWait from now, nothing is taken:
// ok is false and at says when the next slot would be due. A perSecond <= 0
// is unlimited: every slot is due now, with no KV operation. The error
// wraps queue.ErrUnavailable when NATS does not answer. A Take cancelled
// while its round runs may still have used a slot.
func (r *RateLimiter) Take(ctx context.Context, scope string, perSecond float64, burst int, maxWait time.Duration) (at time.Time, ok bool, err error) {
	if perSecond <= 0 {
		return r.s.o.Now(), true, nil
	}
	ch, err := r.scope(scope)
	if err != nil {
		return time.Time{}, false, err
	}
	req := &takeReq{ctx: ctx, perSecond: perSecond, burst: burst, maxWait: maxWait, reply: make(chan takeRes, 1)}
	select {
	case ch <- req:
	case <-ctx.Done():
		return time.Time{}, false, ctx.Err()
	case <-r.s.ctx.Done():
		return time.Time{}, false, fmt.Errorf("natsq: rate limit: %w", queue.ErrClosed)
	}
	select {
	case res := <-req.reply:
		return res.at, res.ok, res.err
	case <-ctx.Done():
		return time.Time{}, false, ctx.Err()
	}
}

// scope returns the channel of scope's goroutine, starting it if needed.
func (r *RateLimiter) scope(scope string) (chan *takeReq, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ch, ok := r.scopes[scope]; ok {
		return ch, nil
	}
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		// Close waits for the goroutines started before it began.
		return nil, fmt.Errorf("natsq: rate limit: %w", queue.ErrClosed)
	}
	ch := make(chan *takeReq)
	r.scopes[scope] = ch
	s.wg.Add(1)
	go r.serve(limitKey(scope), ch)
	return ch, nil
}

// serve runs scope's rounds until the store closes: each round takes a
// slot for every Take waiting, in the order they came, with one read and
// one revision-checked write.
func (r *RateLimiter) serve(key string, ch chan *takeReq) {
	defer r.s.wg.Done()
	for {
		var round []*takeReq
		select {
		case <-r.s.ctx.Done():
			return
		case req := <-ch:
			round = append(round, req)
		}
	more:
		for len(round) < maxRound {
			select {
			case req := <-ch:
				round = append(round, req)
			default:
				break more
			}
		}
		// Takers that left before their round get nothing (a slot would
		// be wasted).
		round = slices.DeleteFunc(round, func(q *takeReq) bool { return q.ctx.Err() != nil })
		if len(round) == 0 {
			continue
		}
		res := make([]takeRes, len(round))
		err := r.update(r.s.ctx, key, func(tat, now time.Time) (time.Time, bool) {
			write := false
			for i, q := range round {
				var next time.Time
				res[i].at, next, res[i].ok = gcraTake(tat, now, q.perSecond, q.burst, q.maxWait)
				if res[i].ok {
					tat, write = next, true
				}
			}
			return tat, write
		})
		for i, q := range round {
			if err != nil {
				res[i] = takeRes{err: err}
			}
			q.reply <- res[i]
		}
	}
}

// Hold keeps every replica from taking a slot of scope before until (the
// Operator answered 429 with a Retry-After): slots already handed out stay
// valid. perSecond and burst are the scope's current limit; with
// perSecond <= 0 no take reads the record, so Hold does nothing.
func (r *RateLimiter) Hold(ctx context.Context, scope string, perSecond float64, burst int, until time.Time) error {
	if perSecond <= 0 {
		return nil
	}
	return r.update(ctx, limitKey(scope), func(tat, _ time.Time) (time.Time, bool) {
		next := gcraHold(tat, perSecond, burst, until)
		return next, next.After(tat)
	})
}

// update reads key's record, lets f decide the next one, and writes it
// with a revision check, reading again on a conflict until it wins or ctx
// ends. f gets the stored time (zero when none) and the current time.
func (r *RateLimiter) update(ctx context.Context, key string, f func(tat, now time.Time) (time.Time, bool)) error {
	for try := 0; ; try++ {
		if r.s.isClosed() {
			return fmt.Errorf("natsq: rate limit: %w", queue.ErrClosed)
		}
		// Fail at once while disconnected, so the caller falls back without
		// waiting for a timeout.
		if st := r.s.nc.Status(); st != nats.CONNECTED {
			return fmt.Errorf("natsq: rate limit: nats %s: %w", st, queue.ErrUnavailable)
		}
		err := r.try(ctx, key, f)
		if !errors.Is(err, errLimitConflict) {
			return err
		}
		// Another replica wrote between our read and write. Read again at
		// once the first time; after that, back off a little with jitter so
		// replicas in step fall out of it.
		if try > 0 {
			d := time.Duration(rand.Int64N(int64(min(try, 20)) * int64(time.Millisecond)))
			if err := xtime.Sleep(ctx, d); err != nil {
				return err
			}
		}
	}
}

// errLimitConflict: the record changed between the read and the write.
var errLimitConflict = errors.New("natsq: rate limit record changed")

func (r *RateLimiter) try(ctx context.Context, key string, f func(tat, now time.Time) (time.Time, bool)) error {
	ctx, cancel := r.s.opCtx(ctx)
	defer cancel()
	kv := r.s.limitsKV
	var (
		tat time.Time
		rev uint64
	)
	e, err := kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return r.s.fail("rate limit get", err)
	default:
		rev = e.Revision()
		// A record that does not parse counts as none: it is overwritten.
		if ns, perr := strconv.ParseInt(string(e.Value()), 10, 64); perr == nil {
			tat = time.Unix(0, ns)
		}
	}
	next, write := f(tat, r.s.o.Now())
	if !write {
		return nil
	}
	val := []byte(strconv.FormatInt(next.UnixNano(), 10))
	if rev == 0 {
		_, err = kv.Create(ctx, key, val)
	} else {
		_, err = kv.Update(ctx, key, val, rev)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return errLimitConflict
	case err != nil:
		return r.s.fail("rate limit update", err)
	}
	return nil
}

// limitKey is a scope's KV key: "account", and "route.<name>" for a
// route; a name that is not a plain word is base64-encoded behind a "=",
// which plain names cannot contain ("~", as in subjects, is not allowed
// in a key).
func limitKey(scope string) string {
	if route, ok := strings.CutPrefix(scope, "route/"); ok && route != "" {
		return "route." + keyWord(route)
	}
	return keyWord(scope)
}

func keyWord(s string) string {
	if t := routeToken(s); !strings.HasPrefix(t, "~") {
		return t
	}
	return "=" + b64.EncodeToString([]byte(s))
}

// emission is the spacing of slots at perSecond, and the tolerance the
// burst allows on top of one slot.
func emission(perSecond float64, burst int) (t, tau time.Duration) {
	t = maxEmission
	if s := float64(time.Second) / perSecond; s < float64(maxEmission) {
		t = time.Duration(s)
	}
	return t, time.Duration(max(burst, 1)-1) * t
}

// gcraTake is one take of the generic cell rate algorithm with
// reservation. tat is the stored theoretical arrival time (zero: none).
// The slot is due at tat-τ, not before now; taking it moves tat to
// max(tat, now)+T. Over any window of length w this hands out at most
// burst + perSecond×w slots. A slot due later than now+maxWait is not taken
// (ok false; at still says when it would be due).
func gcraTake(tat, now time.Time, perSecond float64, burst int, maxWait time.Duration) (at, next time.Time, ok bool) {
	t, tau := emission(perSecond, burst)
	if tat.Before(now) {
		tat = now // idle: the whole burst is there
	}
	at = tat.Add(-tau)
	if at.Before(now) {
		at = now
	}
	if at.Sub(now) > maxWait {
		return at, time.Time{}, false
	}
	return at, tat.Add(t), true
}

// gcraHold moves tat so that no slot is due before until; after it the
// scope starts with no burst and refills at its rate.
func gcraHold(tat time.Time, perSecond float64, burst int, until time.Time) time.Time {
	_, tau := emission(perSecond, burst)
	if h := until.Add(tau); h.After(tat) {
		return h
	}
	return tat
}
