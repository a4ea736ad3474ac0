// Package queuetest is a conformance suite for relayd's storage backends:
// the queue ingest writes to, the queue and chat store the dispatcher reads,
// and the dead-letter operations of the admin API. Every backend runs the
// same cases, so the rest of relayd need not know which one is configured.
//
// The suite asserts behaviour only. Delays are generous and checked as "not
// before", never as "within".
package queuetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/queue"
)

// Backend is what the suite drives: the methods ingest, the dispatcher and
// the admin API use, on one open store.
type Backend interface {
	Enqueue(ctx context.Context, b queue.Batch) (duplicate bool, err error)
	Next(ctx context.Context) (queue.Lease, error)

	GetChat(ctx context.Context, route, key string) (queue.ChatState, error)
	PutChat(ctx context.Context, route, key string, st queue.ChatState) error
	DeleteChat(ctx context.Context, route, key string) error

	ListDead(ctx context.Context, route string) ([]queue.DeadLetter, error)
	GetDead(ctx context.Context, id string) (queue.DeadLetter, error)
	ReplayDead(ctx context.Context, id string) (int, error)
	ReplayAllDead(ctx context.Context, route string) (int, error)
	DropDead(ctx context.Context, id string) (int, error)

	Stats(ctx context.Context) (queue.Stats, error)
	// ChatCounts counts chat records by route, without listing them.
	ChatCounts(ctx context.Context) (map[string]int, error)
	Close() error
}

// Harness adapts a backend to the suite.
type Harness struct {
	// Open opens the backend for test t. The first call for a t starts on
	// empty storage; a later call with the same t, after the Backend it
	// returned before was closed, reopens that same storage (a restart).
	// TempDir gives a directory that is stable per t for that purpose. The
	// suite closes what Open returned when t ends.
	Open func(t *testing.T) Backend
	// Now is the backend's clock, used for the times the suite hands it.
	// nil means time.Now. It must follow real time: the suite waits for
	// real delays.
	Now func() time.Time
	// MaxPending is the backend's max pending messages; 0 skips the case
	// that fills it.
	MaxPending int
	// Coalesces says the backend leases several messages of a
	// conversation as one turn; without it the turn cases check turns of
	// one message.
	Coalesces bool
	// Patience bounds every wait for something that must happen, such as a
	// redelivery after a consumer died on a backend with an ack wait.
	// Default 15s. Waits for something that must not happen are short and
	// fixed.
	Patience time.Duration
}

// Delay is the backoff the suite asks for; long enough that a backend
// ignoring it is caught, short enough to keep the suite quick.
const Delay = 300 * time.Millisecond

// quiet is how long the suite watches for a lease that must not be handed out.
const quiet = 250 * time.Millisecond

// slack absorbs clock rounding when checking "not before".
const slack = 10 * time.Millisecond

// Run runs every case, each as a subtest on its own storage.
func Run(t *testing.T, h Harness) {
	if h.Open == nil {
		t.Fatal("queuetest: Harness.Open is nil")
	}
	if h.Now == nil {
		h.Now = time.Now
	}
	if h.Patience <= 0 {
		h.Patience = 15 * time.Second
	}
	cases := []struct {
		name string
		run  func(s *suite)
	}{
		{"EnqueueNextAck", testEnqueueNextAck},
		{"ConversationFIFO", testConversationFIFO},
		{"ConversationsIndependent", testConversationsIndependent},
		{"RetryNotBefore", testRetryNotBefore},
		{"Release", testRelease},
		{"DeadLetter", testDeadLetter},
		{"ReplayDead", testReplayDead},
		{"ReplayAllDead", testReplayAllDead},
		{"DropDead", testDropDead},
		{"RedeliveryAfterConsumerDies", testRedelivery},
		{"Dedupe", testDedupe},
		{"ChatCompareAndSet", testChatCAS},
		{"ChatCountsInStats", testChatCounts},
		{"MaxPending", testMaxPending},
		{"NextHonoursContext", testNextContext},
		{"CloseUnblocksNext", testCloseUnblocksNext},
		{"StatsAddUp", testStats},
		{"OrderUnderConcurrency", testOrderUnderConcurrency},
		{"TurnCoalesces", testTurnCoalesces},
		{"TurnArrivalsJoinNext", testTurnArrivalsJoinNext},
		{"TurnRetry", testTurnRetry},
		{"TurnDead", testTurnDead},
		{"TurnCrashMidway", testTurnCrashMidway},
		{"Supersede", testSupersede},
		{"SupersedeAfterRestart", testSupersedeAfterRestart},
		{"SupersedeInTurn", testSupersedeInTurn},
		{"TurnBudget", testTurnBudget},
		{"TurnWait", testTurnWait},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &suite{T: t, h: h}
			t.Cleanup(s.closeAll)
			s.b = s.open()
			c.run(s)
		})
	}
}

var dirs sync.Map // *testing.T → string

// TempDir returns a temporary directory that is the same for every call
// with the same t, so Harness.Open can reopen the storage it created. It is
// removed when t ends.
func TempDir(t *testing.T) string {
	if d, ok := dirs.Load(t); ok {
		return d.(string)
	}
	d := t.TempDir()
	dirs.Store(t, d)
	t.Cleanup(func() { dirs.Delete(t) })
	return d
}

type suite struct {
	*testing.T
	h Harness
	b Backend

	mu     sync.Mutex
	opened []*closeOnce
	seq    atomic.Int64
}

type closeOnce struct {
	Backend
	once sync.Once
	err  error
}

func (c *closeOnce) Close() error {
	c.once.Do(func() { c.err = c.Backend.Close() })
	return c.err
}

func (s *suite) open() Backend {
	s.Helper()
	b := &closeOnce{Backend: s.h.Open(s.T)}
	if ts, ok := b.Backend.(TurnSetter); ok {
		ts.SetTurnPolicies(TurnPolicies)
	}
	s.mu.Lock()
	s.opened = append(s.opened, b)
	s.mu.Unlock()
	return b
}

func (s *suite) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.opened {
		if err := b.Close(); err != nil && !errors.Is(err, queue.ErrClosed) {
			s.Errorf("close: %v", err)
		}
	}
}

// restart closes the backend and opens the same storage again.
func (s *suite) restart() {
	s.Helper()
	if err := s.b.Close(); err != nil {
		s.Fatalf("close: %v", err)
	}
	s.b = s.open()
}

func (s *suite) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), s.h.Patience)
	s.Cleanup(cancel)
	return ctx
}

// msg builds a message for route and conversation key with a unique id.
func (s *suite) msg(route, key string) queue.Message {
	n := s.seq.Add(1)
	id := fmt.Sprintf("%s-%d-%d", s.Name(), time.Now().UnixNano(), n)
	return queue.Message{
		ID:              id,
		Route:           route,
		ConversationKey: key,
		Prompt:          fmt.Sprintf("prompt %d for %s/%s", n, route, key),
		Source:          "github",
		Delivery:        "delivery-" + id,
		Event:           "workflow_run",
		EnqueuedAt:      s.h.Now().UTC().Truncate(time.Microsecond),
	}
}

func (s *suite) enqueue(msgs ...queue.Message) {
	s.Helper()
	dup, err := s.b.Enqueue(s.ctx(), queue.Batch{Messages: msgs})
	if err != nil {
		s.Fatalf("enqueue: %v", err)
	}
	if dup {
		s.Fatalf("enqueue without dedupe key reported a duplicate")
	}
}

// next waits (up to Patience) for a lease.
func (s *suite) next() queue.Lease {
	s.Helper()
	l, err := s.b.Next(s.ctx())
	if err != nil {
		s.Fatalf("next: %v", err)
	}
	return l
}

// nextID waits for a lease and checks it is message id.
func (s *suite) nextID(id string) queue.Lease {
	s.Helper()
	l := s.next()
	if got := l.Message().ID; got != id {
		s.Fatalf("leased %s, want %s", got, id)
	}
	return l
}

// none checks that nothing is leased for a while.
func (s *suite) none(why string) {
	s.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), quiet)
	defer cancel()
	l, err := s.b.Next(ctx)
	if err == nil {
		s.Fatalf("%s: leased %s, want nothing", why, l.Message().ID)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		s.Fatalf("%s: next: %v, want context.DeadlineExceeded", why, err)
	}
}

func (s *suite) ack(l queue.Lease) {
	s.Helper()
	if err := l.Ack(s.ctx()); err != nil {
		s.Fatalf("ack %s: %v", l.Message().ID, err)
	}
}

func (s *suite) kill(l queue.Lease, f queue.Failure) {
	s.Helper()
	if err := l.Dead(s.ctx(), f); err != nil {
		s.Fatalf("dead %s: %v", l.Message().ID, err)
	}
}

func failure(status int, code string) queue.Failure {
	return queue.Failure{Status: status, Code: code, Message: "the agent said no", Reason: "permanent", At: time.Now().UTC()}
}

// notBefore checks that now is not (meaningfully) earlier than at.
func (s *suite) notBefore(at time.Time, what string) {
	s.Helper()
	if now := time.Now(); now.Add(slack).Before(at) {
		s.Fatalf("%s %v before the time asked for", what, at.Sub(now))
	}
}

func sameMessage(t *testing.T, got, want queue.Message) {
	t.Helper()
	if got.ID != want.ID || got.Route != want.Route || got.ConversationKey != want.ConversationKey ||
		got.Prompt != want.Prompt || got.Source != want.Source || got.Delivery != want.Delivery ||
		got.Event != want.Event || !got.EnqueuedAt.Equal(want.EnqueuedAt) {
		t.Fatalf("message changed in storage:\n got %+v\nwant %+v", got, want)
	}
}

func deadIDs(dls []queue.DeadLetter) []string {
	ids := make([]string, len(dls))
	for i, d := range dls {
		ids[i] = d.ID
	}
	return ids
}

func testEnqueueNextAck(s *suite) {
	m := s.msg("r1", "repo/a")
	s.enqueue(m)
	l := s.next()
	sameMessage(s.T, l.Message(), m)
	if a := l.Message().Attempts; a != 0 {
		s.Fatalf("attempts %d on first delivery", a)
	}
	s.ack(l)
	if err := l.Ack(s.ctx()); err == nil {
		s.Fatal("second Ack of one lease succeeded")
	}
	if err := l.Retry(s.ctx(), time.Now(), failure(500, "")); err == nil {
		s.Fatal("Retry after Ack succeeded")
	}
	s.none("after ack")
	s.restart()
	s.none("after ack and restart")
}

func testConversationFIFO(s *suite) {
	var want []string
	for range 4 { // one batch each
		m := s.msg("r1", "repo/a")
		s.enqueue(m)
		want = append(want, m.ID)
	}
	batch := []queue.Message{s.msg("r1", "repo/a"), s.msg("r1", "repo/a"), s.msg("r1", "repo/a")}
	s.enqueue(batch...)
	for _, m := range batch {
		want = append(want, m.ID)
	}
	for i, id := range want {
		l := s.nextID(id)
		if i < 2 {
			s.none("a second lease of one conversation")
		}
		s.ack(l)
	}
	s.none("drained")
}

func testConversationsIndependent(s *suite) {
	a1, a2, b1 := s.msg("r1", "repo/a"), s.msg("r1", "repo/a"), s.msg("r1", "repo/b")
	s.enqueue(a1)
	s.enqueue(a2)
	s.enqueue(b1)

	var la, lb queue.Lease
	for range 2 {
		l := s.next()
		switch l.Message().ID {
		case a1.ID:
			la = l
		case b1.ID:
			lb = l
		default:
			s.Fatalf("leased %s while %s was out; want the heads %s and %s", l.Message().ID, a1.ID, a1.ID, b1.ID)
		}
	}
	if la == nil || lb == nil {
		s.Fatal("the two conversation heads were not both leased")
	}
	s.none("a2 behind its leased head")

	// A head backing off blocks its own conversation only.
	if err := la.Retry(s.ctx(), time.Now().Add(time.Hour), failure(503, "unavailable")); err != nil {
		s.Fatalf("retry: %v", err)
	}
	s.none("a2 behind its backing-off head")
	s.ack(lb)
	b2 := s.msg("r1", "repo/b")
	s.enqueue(b2)
	s.ack(s.nextID(b2.ID))
	// Another route with the same conversation key is another conversation.
	c1 := s.msg("r2", "repo/a")
	s.enqueue(c1)
	s.ack(s.nextID(c1.ID))
	s.none("a2 still behind its backing-off head")
}

func testRetryNotBefore(s *suite) {
	m := s.msg("r1", "repo/a")
	s.enqueue(m)
	l := s.next()
	at := time.Now().Add(Delay)
	if err := l.Retry(s.ctx(), at, queue.Failure{Status: 503, Code: "unavailable", Message: "try later", Reason: "server_error", At: time.Now()}); err != nil {
		s.Fatalf("retry: %v", err)
	}
	if err := l.Ack(s.ctx()); err == nil {
		s.Fatal("Ack after Retry succeeded")
	}
	l = s.nextID(m.ID)
	s.notBefore(at, "redelivered")
	got := l.Message()
	sameMessage(s.T, got, m)
	if got.Attempts != 1 || got.LastStatus != 503 {
		s.Fatalf("after one retry: attempts %d, last status %d; want 1, 503", got.Attempts, got.LastStatus)
	}

	// Attempts and the due time survive a restart in the middle of backoff.
	at = time.Now().Add(Delay)
	if err := l.Retry(s.ctx(), at, queue.Failure{Status: 502, Reason: "server_error", At: time.Now()}); err != nil {
		s.Fatalf("retry: %v", err)
	}
	s.restart()
	l = s.nextID(m.ID)
	s.notBefore(at, "redelivered after restart")
	if got := l.Message(); got.Attempts != 2 || got.LastStatus != 502 {
		s.Fatalf("after two retries and a restart: attempts %d, last status %d; want 2, 502", got.Attempts, got.LastStatus)
	}
	s.ack(l)
	s.none("acked")
}

func testRelease(s *suite) {
	m := s.msg("r1", "repo/a")
	s.enqueue(m)
	l := s.next()
	if err := l.Release(s.ctx(), time.Now()); err != nil {
		s.Fatalf("release: %v", err)
	}
	l = s.nextID(m.ID)
	if a := l.Message().Attempts; a != 0 {
		s.Fatalf("release counted an attempt: %d", a)
	}
	at := time.Now().Add(Delay)
	if err := l.Release(s.ctx(), at); err != nil {
		s.Fatalf("release: %v", err)
	}
	l = s.nextID(m.ID)
	s.notBefore(at, "released message redelivered")
	if a := l.Message().Attempts; a != 0 {
		s.Fatalf("release counted an attempt: %d", a)
	}
	s.ack(l)
}

func testDeadLetter(s *suite) {
	a1, a2 := s.msg("r1", "repo/a"), s.msg("r1", "repo/a")
	s.enqueue(a1)
	s.enqueue(a2)
	l := s.nextID(a1.ID)
	f := queue.Failure{Status: 400, Code: "invalid_request", Message: "prompt too long", Reason: "bad_request", At: time.Now().UTC()}
	s.kill(l, f)
	if err := l.Ack(s.ctx()); err == nil {
		s.Fatal("Ack after Dead succeeded")
	}
	// The conversation moves on.
	s.ack(s.nextID(a2.ID))

	check := func() {
		s.Helper()
		dls, err := s.b.ListDead(s.ctx(), "")
		if err != nil {
			s.Fatalf("list dead: %v", err)
		}
		if len(dls) != 1 {
			s.Fatalf("dead letters %v, want [%s]", deadIDs(dls), a1.ID)
		}
		d := dls[0]
		sameMessage(s.T, d.Message, a1)
		if d.Failure.Status != 400 || d.Failure.Code != "invalid_request" || d.Failure.Reason != "bad_request" || d.Failure.Message != f.Message {
			s.Fatalf("failure kept as %+v, want %+v", d.Failure, f)
		}
		if d.DeadAt.IsZero() {
			s.Fatal("dead letter without DeadAt")
		}
		if dls, err := s.b.ListDead(s.ctx(), "r1"); err != nil || len(dls) != 1 {
			s.Fatalf("list dead r1: %v %v", deadIDs(dls), err)
		}
		if dls, err := s.b.ListDead(s.ctx(), "r2"); err != nil || len(dls) != 0 {
			s.Fatalf("list dead r2: %v %v", deadIDs(dls), err)
		}
		for _, id := range []string{a1.ID, a1.Delivery} {
			d, err := s.b.GetDead(s.ctx(), id)
			if err != nil || d.ID != a1.ID {
				s.Fatalf("get dead %q: %s %v", id, d.ID, err)
			}
		}
		if _, err := s.b.GetDead(s.ctx(), "no-such-id"); !errors.Is(err, queue.ErrNotFound) {
			s.Fatalf("get dead of an unknown id: %v, want ErrNotFound", err)
		}
		st, err := s.b.Stats(s.ctx())
		if err != nil || st.Dead != 1 {
			s.Fatalf("stats %+v %v, want 1 dead", st, err)
		}
	}
	check()
	s.restart()
	check()
	s.none("dead letters are not delivered")
}

func testReplayDead(s *suite) {
	a1, a2 := s.msg("r1", "repo/a"), s.msg("r1", "repo/a")
	s.enqueue(a1)
	s.kill(s.nextID(a1.ID), failure(400, "invalid_request"))
	s.enqueue(a2)

	n, err := s.b.ReplayDead(s.ctx(), a1.ID)
	if err != nil || n != 1 {
		s.Fatalf("replay %s: %d %v, want 1", a1.ID, n, err)
	}
	if dls, err := s.b.ListDead(s.ctx(), ""); err != nil || len(dls) != 0 {
		s.Fatalf("dead letters after replay: %v %v", deadIDs(dls), err)
	}
	// At the tail of its conversation, as a fresh message with the same id.
	s.ack(s.nextID(a2.ID))
	l := s.nextID(a1.ID)
	sameMessage(s.T, l.Message(), a1)
	if a := l.Message().Attempts; a != 0 {
		s.Fatalf("replayed with %d attempts, want 0", a)
	}
	s.ack(l)

	if n, err := s.b.ReplayDead(s.ctx(), "no-such-id"); !errors.Is(err, queue.ErrNotFound) || n != 0 {
		s.Fatalf("replay of an unknown id: %d %v, want 0, ErrNotFound", n, err)
	}

	// A delivery id replays every message that webhook produced.
	b1, c1 := s.msg("r1", "repo/b"), s.msg("r2", "repo/b")
	c1.Delivery = b1.Delivery
	s.enqueue(b1, c1)
	for range 2 {
		s.kill(s.next(), failure(403, "forbidden"))
	}
	if n, err := s.b.ReplayDead(s.ctx(), b1.Delivery); err != nil || n != 2 {
		s.Fatalf("replay delivery %s: %d %v, want 2", b1.Delivery, n, err)
	}
	got := []string{s.next().Message().ID}
	l = s.next()
	got = append(got, l.Message().ID)
	slices.Sort(got)
	want := []string{b1.ID, c1.ID}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		s.Fatalf("replayed %v, want %v", got, want)
	}
}

func testReplayAllDead(s *suite) {
	var r1, r2 []string
	for i := range 5 {
		route := "r1"
		if i%2 == 1 {
			route = "r2"
		}
		m := s.msg(route, fmt.Sprintf("repo/%d", i))
		s.enqueue(m)
		s.kill(s.nextID(m.ID), failure(400, "invalid_request"))
		if route == "r1" {
			r1 = append(r1, m.ID)
		} else {
			r2 = append(r2, m.ID)
		}
	}
	dls, err := s.b.ListDead(s.ctx(), "")
	if err != nil {
		s.Fatalf("list dead: %v", err)
	}
	if got, want := deadIDs(dls), []string{r1[0], r2[0], r1[1], r2[1], r1[2]}; !slices.Equal(got, want) {
		s.Fatalf("dead letters %v, want oldest first %v", got, want)
	}
	n, err := s.b.ReplayAllDead(s.ctx(), "r2")
	if err != nil || n != len(r2) {
		s.Fatalf("replay all r2: %d %v, want %d", n, err, len(r2))
	}
	if dls, _ := s.b.ListDead(s.ctx(), ""); !slices.Equal(deadIDs(dls), r1) {
		s.Fatalf("left dead %v, want %v", deadIDs(dls), r1)
	}
	n, err = s.b.ReplayAllDead(s.ctx(), "")
	if err != nil || n != len(r1) {
		s.Fatalf("replay all: %d %v, want %d", n, err, len(r1))
	}
	var got []string
	for range len(r1) + len(r2) {
		l := s.next()
		got = append(got, l.Message().ID)
		s.ack(l)
	}
	want := append(slices.Clone(r1), r2...)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		s.Fatalf("replayed %v, want %v", got, want)
	}
	if n, err := s.b.ReplayAllDead(s.ctx(), ""); err != nil || n != 0 {
		s.Fatalf("replay all with none dead: %d %v", n, err)
	}
}

func testDropDead(s *suite) {
	a, b, c := s.msg("r1", "repo/a"), s.msg("r1", "repo/b"), s.msg("r2", "repo/b")
	c.Delivery = b.Delivery
	s.enqueue(a)
	s.enqueue(b, c)
	for range 3 {
		s.kill(s.next(), failure(400, "invalid_request"))
	}
	if n, err := s.b.DropDead(s.ctx(), a.ID); err != nil || n != 1 {
		s.Fatalf("drop %s: %d %v, want 1", a.ID, n, err)
	}
	if _, err := s.b.GetDead(s.ctx(), a.ID); !errors.Is(err, queue.ErrNotFound) {
		s.Fatalf("get dropped: %v, want ErrNotFound", err)
	}
	if n, err := s.b.DropDead(s.ctx(), a.ID); !errors.Is(err, queue.ErrNotFound) || n != 0 {
		s.Fatalf("drop again: %d %v, want 0, ErrNotFound", n, err)
	}
	if n, err := s.b.DropDead(s.ctx(), b.Delivery); err != nil || n != 2 {
		s.Fatalf("drop delivery: %d %v, want 2", n, err)
	}
	if dls, err := s.b.ListDead(s.ctx(), ""); err != nil || len(dls) != 0 {
		s.Fatalf("dead after drops: %v %v", deadIDs(dls), err)
	}
	st, err := s.b.Stats(s.ctx())
	if err != nil || st.Dead != 0 {
		s.Fatalf("stats %+v %v, want 0 dead", st, err)
	}
	s.none("dropped")
}

func testRedelivery(s *suite) {
	a, b := s.msg("r1", "repo/a"), s.msg("r1", "repo/a")
	s.enqueue(a, b)
	s.nextID(a.ID) // the consumer dies holding it
	s.restart()
	l := s.nextID(a.ID)
	sameMessage(s.T, l.Message(), a)
	s.ack(l)
	s.ack(s.nextID(b.ID))
	s.restart()
	s.none("acked before the restart")
}

func testDedupe(s *suite) {
	m1, m2, m3 := s.msg("r1", "repo/a"), s.msg("r1", "repo/a"), s.msg("r1", "repo/a")
	key := "github:" + m1.Delivery
	enq := func(key string, m queue.Message) bool {
		s.Helper()
		dup, err := s.b.Enqueue(s.ctx(), queue.Batch{DedupeKey: key, DedupeTTL: time.Hour, Messages: []queue.Message{m}})
		if err != nil {
			s.Fatalf("enqueue: %v", err)
		}
		return dup
	}
	if enq(key, m1) {
		s.Fatal("first delivery reported as a duplicate")
	}
	if !enq(key, m2) {
		s.Fatal("redelivery not reported as a duplicate")
	}
	if enq("github:other", m3) {
		s.Fatal("another delivery reported as a duplicate")
	}
	s.restart()
	if !enq(key, m2) {
		s.Fatal("redelivery after a restart not reported as a duplicate")
	}
	s.ack(s.nextID(m1.ID))
	s.ack(s.nextID(m3.ID))
	s.none("duplicates are not stored")
}

func testChatCAS(s *suite) {
	ctx := s.ctx()
	st, err := s.b.GetChat(ctx, "r1", "repo/a")
	if err != nil || st.Revision != 0 || st.ChatID != "" {
		s.Fatalf("get missing chat: %+v %v, want zero", st, err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	first := queue.ChatState{ChatID: "chat-1", StartedAt: now, Messages: 1, UpdatedAt: now}
	if err := s.b.PutChat(ctx, "r1", "repo/a", first); err != nil {
		s.Fatalf("create chat: %v", err)
	}
	if err := s.b.PutChat(ctx, "r1", "repo/a", first); !errors.Is(err, queue.ErrConflict) {
		s.Fatalf("second create: %v, want ErrConflict", err)
	}
	got, err := s.b.GetChat(ctx, "r1", "repo/a")
	if err != nil || got.Revision == 0 || got.ChatID != "chat-1" || got.Messages != 1 || !got.StartedAt.Equal(now) {
		s.Fatalf("get chat: %+v %v", got, err)
	}
	// The same key on another route is another conversation.
	if other, err := s.b.GetChat(ctx, "r2", "repo/a"); err != nil || other.Revision != 0 {
		s.Fatalf("other route: %+v %v, want none", other, err)
	}

	next := got
	next.Messages = 2
	if err := s.b.PutChat(ctx, "r1", "repo/a", next); err != nil {
		s.Fatalf("update at the current revision: %v", err)
	}
	stale := got
	stale.ChatID = "chat-lost"
	if err := s.b.PutChat(ctx, "r1", "repo/a", stale); !errors.Is(err, queue.ErrConflict) {
		s.Fatalf("update at a stale revision: %v, want ErrConflict", err)
	}
	cur, err := s.b.GetChat(ctx, "r1", "repo/a")
	if err != nil || cur.Revision == got.Revision || cur.ChatID != "chat-1" || cur.Messages != 2 {
		s.Fatalf("after update: %+v %v", cur, err)
	}

	s.restart()
	ctx = s.ctx()
	if again, err := s.b.GetChat(ctx, "r1", "repo/a"); err != nil || again.Revision != cur.Revision || again.ChatID != "chat-1" {
		s.Fatalf("after restart: %+v %v, want %+v", again, err, cur)
	}
	if err := s.b.DeleteChat(ctx, "r1", "repo/a"); err != nil {
		s.Fatalf("delete: %v", err)
	}
	if err := s.b.DeleteChat(ctx, "r1", "repo/a"); err != nil {
		s.Fatalf("delete missing: %v", err)
	}
	if gone, err := s.b.GetChat(ctx, "r1", "repo/a"); err != nil || gone.Revision != 0 || gone.ChatID != "" {
		s.Fatalf("after delete: %+v %v, want zero", gone, err)
	}
	// A writer holding a revision from before the delete must not win.
	if err := s.b.PutChat(ctx, "r1", "repo/a", cur); !errors.Is(err, queue.ErrConflict) {
		s.Fatalf("update of a deleted chat: %v, want ErrConflict", err)
	}
	if err := s.b.PutChat(ctx, "r1", "repo/a", queue.ChatState{ChatID: "chat-2", StartedAt: now, UpdatedAt: now}); err != nil {
		s.Fatalf("create after delete: %v", err)
	}
	if fresh, err := s.b.GetChat(ctx, "r1", "repo/a"); err != nil || fresh.ChatID != "chat-2" || fresh.Revision == 0 {
		s.Fatalf("after re-create: %+v %v", fresh, err)
	}
}

func testMaxPending(s *suite) {
	limit := s.h.MaxPending
	if limit == 0 {
		s.Skip("harness sets no MaxPending")
	}
	for i := range limit {
		s.enqueue(s.msg("r1", fmt.Sprintf("repo/%d", i%7)))
	}
	_, err := s.b.Enqueue(s.ctx(), queue.Batch{Messages: []queue.Message{s.msg("r1", "repo/x")}})
	if !errors.Is(err, queue.ErrFull) {
		s.Fatalf("enqueue past max pending: %v, want ErrFull", err)
	}
	// Leased messages still count; dead and acked ones do not.
	s.kill(s.next(), failure(400, "invalid_request"))
	s.ack(s.next())
	s.enqueue(s.msg("r1", "repo/x"), s.msg("r1", "repo/y"))
	if _, err := s.b.Enqueue(s.ctx(), queue.Batch{Messages: []queue.Message{s.msg("r1", "repo/z")}}); !errors.Is(err, queue.ErrFull) {
		s.Fatalf("enqueue past max pending again: %v, want ErrFull", err)
	}
}

func testNextContext(s *suite) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := s.b.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		s.Fatalf("next on an empty queue: %v, want DeadlineExceeded", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := s.b.Next(ctx); !errors.Is(err, context.Canceled) {
		s.Fatalf("next with a cancelled context: %v, want Canceled", err)
	}
}

func testCloseUnblocksNext(s *suite) {
	errc := make(chan error, 1)
	go func() {
		_, err := s.b.Next(context.Background())
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond) // let it block; the assertion does not depend on it
	if err := s.b.Close(); err != nil {
		s.Fatalf("close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, queue.ErrClosed) {
			s.Fatalf("next after close: %v, want ErrClosed", err)
		}
	case <-time.After(s.h.Patience):
		s.Fatal("Close did not unblock Next")
	}
}

func testStats(s *suite) {
	// Backends may count asynchronously: wait for the figures to add up.
	want := func(pending, inflight, dead int) {
		s.Helper()
		deadline := time.Now().Add(s.h.Patience)
		for {
			st, err := s.b.Stats(s.ctx())
			if err != nil {
				s.Fatalf("stats: %v", err)
			}
			if st.Ready+st.Delayed+st.Inflight == pending && st.Inflight == inflight && st.Dead == dead &&
				st.Ready >= 0 && st.Delayed >= 0 {
				return
			}
			if time.Now().After(deadline) {
				s.Fatalf("stats %+v; want %d pending, %d in flight, %d dead", st, pending, inflight, dead)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	want(0, 0, 0)
	s.enqueue(s.msg("r1", "repo/a"), s.msg("r1", "repo/a"), s.msg("r1", "repo/a"))
	s.enqueue(s.msg("r1", "repo/b"))
	want(4, 0, 0)
	l1 := s.next()
	l2 := s.next()
	want(4, 2, 0)
	s.kill(l1, failure(400, "invalid_request"))
	want(3, 1, 1)
	if err := l2.Retry(s.ctx(), time.Now().Add(time.Hour), failure(503, "")); err != nil {
		s.Fatalf("retry: %v", err)
	}
	want(3, 0, 1)
	s.restart()
	want(3, 0, 1)
}

// testChatCounts: ChatCounts counts chat records by route as they are
// created and deleted, and after a restart.
func testChatCounts(s *suite) {
	// Backends may count asynchronously: wait for the counts to match.
	want := func(counts map[string]int) {
		s.Helper()
		deadline := time.Now().Add(s.h.Patience)
		for {
			got, err := s.b.ChatCounts(s.ctx())
			if err == nil && maps.Equal(got, counts) {
				return
			}
			if time.Now().After(deadline) {
				s.Fatalf("chat counts %v (%v), want %v", got, err, counts)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	put := func(route, key string, st queue.ChatState) {
		s.Helper()
		if err := s.b.PutChat(s.ctx(), route, key, st); err != nil {
			s.Fatalf("put chat %s/%s: %v", route, key, err)
		}
	}
	del := func(route, key string) {
		s.Helper()
		if err := s.b.DeleteChat(s.ctx(), route, key); err != nil {
			s.Fatalf("delete chat %s/%s: %v", route, key, err)
		}
	}
	want(map[string]int{})
	now := time.Now().UTC()
	st := queue.ChatState{ChatID: "chat-1", StartedAt: now, Messages: 1, UpdatedAt: now}
	put("r1", "repo/a", st)
	put("r1", "repo/b", st)
	put("r2", "repo/a", st)
	want(map[string]int{"r1": 2, "r2": 1})

	// Updates and refused creates change no count.
	cur, err := s.b.GetChat(s.ctx(), "r1", "repo/a")
	if err != nil {
		s.Fatalf("get chat: %v", err)
	}
	cur.Messages++
	put("r1", "repo/a", cur)
	if err := s.b.PutChat(s.ctx(), "r1", "repo/b", st); !errors.Is(err, queue.ErrConflict) {
		s.Fatalf("second create: %v, want ErrConflict", err)
	}
	want(map[string]int{"r1": 2, "r2": 1})

	del("r1", "repo/b")
	del("r1", "repo/missing")
	want(map[string]int{"r1": 1, "r2": 1})
	s.restart()
	want(map[string]int{"r1": 1, "r2": 1})
	del("r2", "repo/a")
	put("r1", "repo/b", st) // created again after its delete
	want(map[string]int{"r1": 2})
}

// testOrderUnderConcurrency: a producer enqueues (backing off on ErrFull)
// while several workers consume many conversations with random outcomes.
// Each conversation's messages are acked in enqueue order, no conversation
// ever has two leases out, and nothing is lost.
func testOrderUnderConcurrency(s *suite) {
	const convs, per, workers = 12, 15, 6
	// ctx ends the workers once everything is acked; opCtx bounds the rest.
	opCtx, opCancel := context.WithTimeout(context.Background(), s.h.Patience*4)
	defer opCancel()
	ctx, cancel := context.WithCancel(opCtx)
	defer cancel()
	want := make(map[string][]string)
	var msgs []queue.Message
	for i := range per {
		for c := range convs {
			key := fmt.Sprintf("repo/%d", c)
			m := s.msg("r1", key)
			m.Prompt = fmt.Sprint(i)
			msgs = append(msgs, m)
			want[key] = append(want[key], m.ID)
		}
	}
	produced := make(chan error, 1)
	go func() {
		for _, m := range msgs {
			for {
				_, err := s.b.Enqueue(ctx, queue.Batch{Messages: []queue.Message{m}})
				if errors.Is(err, queue.ErrFull) {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				if err != nil {
					produced <- fmt.Errorf("enqueue %s: %w", m.ID, err)
					return
				}
				break
			}
		}
		produced <- nil
	}()
	var (
		mu    sync.Mutex
		held  = make(map[string]bool)
		acked = make(map[string][]string)
		left  = convs * per
		fails []string
	)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				l, err := s.b.Next(ctx)
				if err != nil {
					return // done (cancel) or the deadline, reported below
				}
				m := l.Message()
				mu.Lock()
				if held[m.ConversationKey] {
					fails = append(fails, "two leases out for "+m.ConversationKey)
				}
				held[m.ConversationKey] = true
				mu.Unlock()
				time.Sleep(time.Duration(rng.IntN(500)) * time.Microsecond)
				outcome := rng.IntN(10)
				mu.Lock()
				held[m.ConversationKey] = false // before ending: the next lease may come before the call returns
				if outcome >= 2 {
					acked[m.ConversationKey] = append(acked[m.ConversationKey], m.ID)
					left--
					if left == 0 {
						cancel()
					}
				}
				mu.Unlock()
				switch outcome {
				case 0:
					err = l.Retry(opCtx, time.Now(), queue.Failure{Status: 503, Reason: "server_error"})
				case 1:
					err = l.Release(opCtx, time.Now())
				default:
					err = l.Ack(opCtx)
				}
				if err != nil {
					mu.Lock()
					fails = append(fails, fmt.Sprintf("ending lease of %s: %v", m.ID, err))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if err := <-produced; err != nil {
		s.Error(err)
	}
	for _, f := range fails {
		s.Error(f)
	}
	if left != 0 {
		s.Fatalf("%d messages not delivered", left)
	}
	for key, ids := range want {
		if !slices.Equal(acked[key], ids) {
			s.Errorf("conversation %s acked in order %v, want %v", key, acked[key], ids)
		}
	}
}
