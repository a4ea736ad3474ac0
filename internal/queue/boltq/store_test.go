package boltq

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/relayd/relayd/internal/queue"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func openAt(t testing.TB, path string, o Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func openTemp(t testing.TB, o Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relayd.db")
	return openAt(t, path, o), path
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newMsg(id, route, key string) queue.Message {
	return queue.Message{ID: id, Route: route, ConversationKey: key, Prompt: "prompt " + id, Source: "github", Delivery: "d-" + id}
}

func mustEnqueue(t testing.TB, s *Store, msgs ...queue.Message) {
	t.Helper()
	if _, err := s.Enqueue(ctxT(t), queue.Batch{Messages: msgs}); err != nil {
		t.Fatalf("enqueue: %v", err)
	}
}

func mustNext(t testing.TB, s *Store) queue.Lease {
	t.Helper()
	l, err := s.Next(ctxT(t))
	if err != nil {
		t.Fatalf("next: %v", err)
	}
	return l
}

// settle waits until every enqueue answered so far is applied to bbolt:
// the committer serves requests in order, and the log writer hands a group
// over before it answers.
func settle(t testing.TB, s *Store) {
	t.Helper()
	if err := s.do(ctxT(t), &barrierOp{}); err != nil && !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("settle: %v", err)
	}
}

type barrierOp struct{ reply }

func (*barrierOp) apply(*bolt.Tx, *group) error { return nil }
func (*barrierOp) commit(*Store)                {}

func mustStats(t testing.TB, s *Store) queue.Stats {
	t.Helper()
	settle(t, s)
	st, err := s.Stats(ctxT(t))
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	return st
}

// drain leases and acks everything with a few workers and returns the acked
// ids per conversation key, in ack order.
func drain(t *testing.T, s *Store, total, workers int) map[string][]string {
	t.Helper()
	var (
		mu   sync.Mutex
		got  = map[string][]string{}
		held = map[string]bool{}
		n    int
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				l, err := s.Next(ctx)
				if err != nil {
					return
				}
				m := l.Message()
				mu.Lock()
				if held[m.ConversationKey] {
					errc <- fmt.Errorf("two leases out for %s", m.ConversationKey)
				}
				got[m.ConversationKey] = append(got[m.ConversationKey], m.ID)
				held[m.ConversationKey] = false
				n++
				if n == total {
					cancel()
				}
				mu.Unlock()
				if err := l.Ack(context.Background()); err != nil {
					errc <- fmt.Errorf("ack: %w", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if n != total {
		t.Fatalf("drained %d messages, want %d", n, total)
	}
	return got
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "relayd.db")
	openAt(t, path, Options{})
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&^0o750 != 0 {
		t.Errorf("data directory mode %o, want at most 0750", perm)
	}
	fi, err = os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode %o, want 0600", perm)
	}
}

func TestEnqueueRejectsInvalidMessages(t *testing.T) {
	s, _ := openTemp(t, Options{})
	for _, tc := range []struct {
		name string
		m    queue.Message
	}{
		{"no id", newMsg("", "r1", "a")},
		{"no route", newMsg("m1", "", "a")},
		{"NUL in route", newMsg("m1", "r\x001", "a")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Enqueue(ctxT(t), queue.Batch{Messages: []queue.Message{newMsg("ok", "r1", "a"), tc.m}}); err == nil {
				t.Fatal("enqueue accepted an invalid message")
			}
		})
	}
	if st := mustStats(t, s); st != (queue.Stats{}) {
		t.Errorf("stats %+v after rejected batches, want nothing stored", st)
	}
}

// Long conversation and dedupe keys come from webhook data; they are stored
// under a hash and still behave as keys.
func TestLongKeys(t *testing.T) {
	s, _ := openTemp(t, Options{})
	long := strings.Repeat("k", 40000)
	m1, m2 := newMsg("m1", "r1", long), newMsg("m2", "r1", long+"x")
	if dup, err := s.Enqueue(ctxT(t), queue.Batch{DedupeKey: long, Messages: []queue.Message{m1, m2}}); dup || err != nil {
		t.Fatalf("enqueue: %v %v", dup, err)
	}
	if dup, err := s.Enqueue(ctxT(t), queue.Batch{DedupeKey: long, Messages: []queue.Message{newMsg("m3", "r1", "a")}}); !dup || err != nil {
		t.Fatalf("second enqueue: dup %v %v, want a duplicate", dup, err)
	}
	a, b := mustNext(t, s), mustNext(t, s) // two conversations
	if a.Message().ConversationKey == b.Message().ConversationKey {
		t.Fatal("keys differing past the hash threshold share a conversation")
	}
	if err := s.PutChat(ctxT(t), "r1", long, queue.ChatState{ChatID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if st, err := s.GetChat(ctxT(t), "r1", long); err != nil || st.ChatID != "c1" {
		t.Fatalf("get chat: %+v %v", st, err)
	}
	chats, err := s.ListChats(ctxT(t))
	if err != nil || len(chats) != 2 || chats[0].ConversationKey != long || *chats[0].Waiting != 1 ||
		chats[1].ConversationKey != long+"x" || chats[1].ChatID != "" || *chats[1].Waiting != 1 {
		t.Fatalf("list chats: %d %v, want both full keys back, one message waiting each", len(chats), err)
	}
	for _, l := range []queue.Lease{a, b} {
		if err := l.Ack(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	chats, err = s.ListChats(ctxT(t))
	if err != nil || len(chats) != 1 || chats[0].ConversationKey != long || *chats[0].Waiting != 0 {
		t.Fatalf("list chats after the acks: %d %v, want the chat alone, nothing waiting", len(chats), err)
	}
}

func TestConcurrentEnqueueDurable(t *testing.T) {
	s, path := openTemp(t, Options{})
	const goroutines, each = 64, 30
	var wg sync.WaitGroup
	errc := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				m := newMsg(fmt.Sprintf("g%d-%03d", g, i), "r1", fmt.Sprintf("conv-%d", g))
				if _, err := s.Enqueue(context.Background(), queue.Batch{DedupeKey: m.ID, Messages: []queue.Message{m}}); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	const total = goroutines * each
	if st := mustStats(t, s); st.Ready+st.Delayed != total {
		t.Fatalf("stats %+v, want %d pending", st, total)
	}
	t.Logf("%d enqueues in %d commits", total, s.commits.Load())

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path, Options{})
	if st := mustStats(t, s); st.Ready != goroutines || st.Delayed != total-goroutines {
		t.Fatalf("stats after reopen %+v, want %d ready heads and %d behind them", st, goroutines, total-goroutines)
	}
	got := drain(t, s, total, 8)
	for g := range goroutines {
		key := fmt.Sprintf("conv-%d", g)
		ids := got[key]
		if len(ids) != each || !slices.IsSorted(ids) {
			t.Errorf("%s delivered %v, want %d in enqueue order", key, ids, each)
		}
	}
}

func TestReopenPreservesOrderAndBackoff(t *testing.T) {
	clock := newClock()
	s, path := openTemp(t, Options{Now: clock.Now})
	const convs, per = 100, 8
	for i := range per {
		var batch []queue.Message
		for c := range convs {
			batch = append(batch, newMsg(fmt.Sprintf("c%03d-%03d", c, i), "r1", fmt.Sprintf("conv-%03d", c)))
		}
		clock.Add(time.Millisecond)
		mustEnqueue(t, s, batch...)
	}
	// Back off the head of conversation 0 and acknowledge the head of 1.
	var backoff time.Time
	for range 2 {
		l := mustNext(t, s)
		switch l.Message().ConversationKey {
		case "conv-000":
			backoff = clock.Now().Add(time.Hour)
			if err := l.Retry(ctxT(t), backoff, queue.Failure{Status: 503, Reason: "server_error"}); err != nil {
				t.Fatal(err)
			}
		case "conv-001":
			if err := l.Ack(ctxT(t)); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("leased %s first, want the oldest heads", l.Message().ID)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openAt(t, path, Options{Now: clock.Now})
	st := mustStats(t, s)
	if want := (queue.Stats{Ready: convs - 1, Delayed: convs*per - 1 - (convs - 1)}); st != want {
		t.Fatalf("stats after reopen %+v, want %+v", st, want)
	}
	// Oldest first across conversations: every conversation's first
	// remaining message comes before any second one.
	seen := map[string]int{}
	for i := range convs - 1 {
		l := mustNext(t, s)
		m := l.Message()
		if m.ConversationKey == "conv-000" {
			t.Fatal("a backing-off head was leased")
		}
		if seen[m.ConversationKey]++; seen[m.ConversationKey] > 1 {
			t.Fatalf("lease %d: second message of %s before other heads", i, m.ConversationKey)
		}
		if err := l.Release(ctxT(t), clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	clock.Add(2 * time.Hour)
	got := drain(t, s, convs*per-1, 4)
	for c := range convs {
		key := fmt.Sprintf("conv-%03d", c)
		ids := got[key]
		if want := per - btoi(c == 1); len(ids) != want || !slices.IsSorted(ids) {
			t.Errorf("%s delivered %v, want %d in order", key, ids, want)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestOldestDueHeadFirst(t *testing.T) {
	clock := newClock()
	s, _ := openTemp(t, Options{Now: clock.Now})
	t0 := clock.Now()
	a, b, c := newMsg("a", "r1", "A"), newMsg("b", "r1", "B"), newMsg("c", "r1", "C")
	a.EnqueuedAt, b.EnqueuedAt, c.EnqueuedAt = t0.Add(-2*time.Second), t0.Add(-3*time.Second), t0.Add(-time.Second)
	mustEnqueue(t, s, a, b, c)
	// b is oldest; retried to just after a, it comes back between a and c.
	l := mustNext(t, s)
	if id := l.Message().ID; id != "b" {
		t.Fatalf("first lease %s, want b", id)
	}
	if err := l.Retry(ctxT(t), t0.Add(-1500*time.Millisecond), queue.Failure{Status: 500}); err != nil {
		t.Fatal(err)
	}
	var order []string
	for range 3 {
		l := mustNext(t, s)
		order = append(order, l.Message().ID)
		if err := l.Ack(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(order, want) {
		t.Fatalf("lease order %v, want %v", order, want)
	}
}

func TestStatsValues(t *testing.T) {
	clock := newClock()
	s, path := openTemp(t, Options{Now: clock.Now})
	mustEnqueue(t, s, newMsg("a1", "r1", "A"), newMsg("a2", "r1", "A"), newMsg("a3", "r1", "A"), newMsg("b1", "r1", "B"))
	var lb queue.Lease
	for _, step := range []struct {
		name string
		do   func()
		want queue.Stats
	}{
		{"queued: two heads ready, two behind them", func() {}, queue.Stats{Ready: 2, Delayed: 2}},
		{"A leased and backing off", func() {
			l := mustNext(t, s)
			if l.Message().ID != "a1" {
				t.Fatalf("leased %s, want a1", l.Message().ID)
			}
			if err := l.Retry(ctxT(t), clock.Now().Add(time.Hour), queue.Failure{Status: 503}); err != nil {
				t.Fatal(err)
			}
		}, queue.Stats{Ready: 1, Delayed: 3}},
		{"B leased", func() {
			lb = mustNext(t, s)
			if lb.Message().ID != "b1" {
				t.Fatalf("leased %s, want b1", lb.Message().ID)
			}
		}, queue.Stats{Delayed: 3, Inflight: 1}},
		{"backoff over", func() { clock.Add(2 * time.Hour) }, queue.Stats{Ready: 1, Delayed: 2, Inflight: 1}},
		{"B dead", func() {
			if err := lb.Dead(ctxT(t), queue.Failure{Status: 400, Reason: "bad_request"}); err != nil {
				t.Fatal(err)
			}
		}, queue.Stats{Ready: 1, Delayed: 2, Dead: 1}},
	} {
		step.do()
		if got := mustStats(t, s); got != step.want {
			t.Fatalf("%s: stats %+v, want %+v", step.name, got, step.want)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path, Options{Now: clock.Now})
	if got, want := mustStats(t, s), (queue.Stats{Ready: 1, Delayed: 2, Dead: 1}); got != want {
		t.Fatalf("after reopen: stats %+v, want %+v", got, want)
	}
}

func TestLeaseAfterClose(t *testing.T) {
	s, path := openTemp(t, Options{})
	mustEnqueue(t, s, newMsg("m1", "r1", "A"))
	l := mustNext(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	for name, err := range map[string]error{
		"ack":     l.Ack(ctx),
		"retry":   l.Retry(ctx, time.Now(), queue.Failure{}),
		"release": l.Release(ctx, time.Now()),
		"dead":    l.Dead(ctx, queue.Failure{}),
	} {
		if !errors.Is(err, queue.ErrClosed) {
			t.Errorf("%s after close: %v, want ErrClosed", name, err)
		}
	}
	if _, err := s.Enqueue(ctx, queue.Batch{Messages: []queue.Message{newMsg("m2", "r1", "A")}}); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("enqueue after close: %v, want ErrClosed", err)
	}
	if _, err := s.Stats(ctx); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("stats after close: %v, want ErrClosed", err)
	}
	if _, err := s.ListDead(ctx, ""); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("list dead after close: %v, want ErrClosed", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("ping after close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	s = openAt(t, path, Options{})
	if l := mustNext(t, s); l.Message().ID != "m1" {
		t.Fatalf("after reopen leased %s, want m1 again", l.Message().ID)
	}
}

func TestPing(t *testing.T) {
	s, _ := openTemp(t, Options{})
	if err := s.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// failOp writes, then fails as a broken write would.
type failOp struct{ reply }

var errBoom = errors.New("boom")

func (o *failOp) apply(tx *bolt.Tx, _ *group) error {
	if err := tx.Bucket(bucketMeta).Put([]byte("fail"), marker); err != nil {
		return err
	}
	return fatal(errBoom)
}

func (o *failOp) commit(*Store) {}

// logged is a group of enqueues as the log writer hands it to the
// committer, for tests that build commit groups by hand. Its LSN is 0, so
// it leaves the applied LSN alone.
func logged(s *Store, msgs ...queue.Message) *applyOp {
	s.mu.Lock()
	s.unapplied += len(msgs)
	s.mu.Unlock()
	return &applyOp{entries: []walEntry{{msgs: msgs}}, n: len(msgs)}
}

// One group: a failing request does not fail the others, whether it fails
// validation (a CAS conflict) or a write (retried without it).
func TestGroupIsolatesFailures(t *testing.T) {
	s, _ := openTemp(t, Options{})
	if err := s.PutChat(ctxT(t), "r1", "A", queue.ChatState{ChatID: "c1"}); err != nil {
		t.Fatal(err)
	}
	conflict := &putChatOp{name: convName("r1", "A"), chat: queue.Chat{Route: "r1", ConversationKey: "A", ChatState: queue.ChatState{ChatID: "c2"}}}
	enq1 := logged(s, newMsg("m1", "r1", "A"))
	broken := &failOp{}
	create := &putChatOp{name: convName("r1", "B"), chat: queue.Chat{Route: "r1", ConversationKey: "B", ChatState: queue.ChatState{ChatID: "c3"}}}
	enq2 := logged(s, newMsg("m4", "r1", "B"))
	ops := []waiter{conflict, broken, create}
	for _, o := range ops {
		o.init()
	}
	before := s.commits.Load()
	if err := s.submit(conflict, enq1, broken, create, enq2); err != nil {
		t.Fatal(err)
	}
	for _, o := range ops {
		<-o.wait()
	}
	for _, c := range []struct {
		name string
		got  error
		want error
	}{
		{"conflict", conflict.result(), queue.ErrConflict},
		{"broken", broken.result(), errBoom},
		{"create", create.result(), nil},
	} {
		if !errors.Is(c.got, c.want) || (c.want == nil && c.got != nil) {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
	if n := s.commits.Load() - before; n != 1 {
		t.Errorf("%d commits for one group, want 1", n)
	}
	if st := mustStats(t, s); st.Ready != 2 || st.Delayed != 0 {
		t.Errorf("stats %+v, want m1 and m4 ready", st)
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta).Get([]byte("fail")) != nil {
			return errors.New("the failed request's write was committed")
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if st, _ := s.GetChat(ctxT(t), "r1", "A"); st.ChatID != "c1" {
		t.Errorf("chat A is %q after a conflicting put, want c1", st.ChatID)
	}
	if st, _ := s.GetChat(ctxT(t), "r1", "B"); st.ChatID != "c3" {
		t.Errorf("chat B is %q, want c3", st.ChatID)
	}
}

// Requests for one conversation in one group see each other: the ack of a
// last message and an enqueue to the same conversation, in either order.
func TestGroupSameConversation(t *testing.T) {
	s, _ := openTemp(t, Options{})
	for i, ackFirst := range []bool{true, false} {
		id := fmt.Sprint(i)
		mustEnqueue(t, s, newMsg("old"+id, "r1", "A"))
		l := mustNext(t, s).(*lease)
		ack := &leaseOp{l: l, kind: leaseAck}
		enq := logged(s, newMsg("new"+id, "r1", "A"))
		ack.init()
		first, second := op(ack), op(enq)
		if !ackFirst {
			first, second = enq, ack
		}
		if err := s.submit(first, second); err != nil {
			t.Fatal(err)
		}
		<-ack.wait()
		if ack.result() != nil {
			t.Fatalf("ack %v", ack.result())
		}
		if st := mustStats(t, s); st != (queue.Stats{Ready: 1}) {
			t.Fatalf("ackFirst=%v: stats %+v, want one ready", ackFirst, st)
		}
		l2 := mustNext(t, s)
		if l2.Message().ID != "new"+id {
			t.Fatalf("leased %s, want new%s", l2.Message().ID, id)
		}
		if err := l2.Ack(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	// A second ending of one lease in the same group is refused.
	mustEnqueue(t, s, newMsg("x", "r1", "A"))
	l := mustNext(t, s).(*lease)
	a, d := &leaseOp{l: l, kind: leaseAck}, &leaseOp{l: l, kind: leaseDead}
	a.init()
	d.init()
	if err := s.submit(a, d); err != nil {
		t.Fatal(err)
	}
	<-a.wait()
	<-d.wait()
	if a.result() != nil || !errors.Is(d.result(), ErrLeaseEnded) {
		t.Fatalf("ack %v, dead %v; want nil, ErrLeaseEnded", a.result(), d.result())
	}
	if st := mustStats(t, s); st != (queue.Stats{}) {
		t.Fatalf("stats %+v, want empty", st)
	}
}

func TestConcurrentDuplicatesStoreOnce(t *testing.T) {
	s, _ := openTemp(t, Options{})
	const n = 32
	var wg sync.WaitGroup
	dups := make(chan bool, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dup, err := s.Enqueue(context.Background(), queue.Batch{DedupeKey: "github:abc", Messages: []queue.Message{newMsg(fmt.Sprint(i), "r1", "A")}})
			if err != nil {
				t.Error(err)
			}
			dups <- dup
		}()
	}
	wg.Wait()
	close(dups)
	stored := 0
	for d := range dups {
		if !d {
			stored++
		}
	}
	if st := mustStats(t, s); stored != 1 || st.Ready+st.Delayed != 1 {
		t.Fatalf("%d enqueues not duplicates, stats %+v; want exactly one stored", stored, st)
	}
}

func TestMaxPendingUnderConcurrency(t *testing.T) {
	s, _ := openTemp(t, Options{MaxPending: 10})
	const n = 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, full := 0, 0
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Enqueue(context.Background(), queue.Batch{Messages: []queue.Message{newMsg(fmt.Sprint(i), "r1", fmt.Sprint(i%3))}})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, queue.ErrFull):
				full++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok != 10 || full != n-10 {
		t.Fatalf("%d stored, %d refused; want 10 and %d", ok, full, n-10)
	}
}

func countKeys(t *testing.T, s *Store, bucket []byte) int {
	t.Helper()
	settle(t, s)
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(_, _ []byte) error { n++; return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDedupeExpiryAndSweep(t *testing.T) {
	clock := newClock()
	s, _ := openTemp(t, Options{Now: clock.Now, DedupeSweepInterval: -1})
	enq := func(key string, ttl time.Duration, id string) bool {
		t.Helper()
		dup, err := s.Enqueue(ctxT(t), queue.Batch{DedupeKey: key, DedupeTTL: ttl, Messages: []queue.Message{newMsg(id, "r1", "A")}})
		if err != nil {
			t.Fatal(err)
		}
		return dup
	}
	enq("short", time.Hour, "m1")
	enq("long", 3*time.Hour, "m2")
	enq("default", 0, "m3") // DefaultDedupeTTL
	clock.Add(time.Hour - time.Nanosecond)
	if !enq("short", time.Hour, "m4") {
		t.Fatal("key not a duplicate just before its TTL")
	}
	clock.Add(time.Hour)
	// Expired: not a duplicate even before the sweep; the mark is renewed.
	if enq("short", time.Hour, "m5") {
		t.Fatal("expired key still a duplicate")
	}
	n, more, err := s.sweepDedupe(ctxT(t), 100)
	if err != nil || n != 1 || more {
		t.Fatalf("sweep: %d %v %v, want the one stale expiry entry", n, more, err)
	}
	if !enq("short", time.Hour, "m6") {
		t.Fatal("renewed mark was swept")
	}
	clock.Add(2 * time.Hour) // long and the renewed short expire
	if n, _, err := s.sweepDedupe(ctxT(t), 100); err != nil || n != 2 {
		t.Fatalf("sweep: %d %v, want 2", n, err)
	}
	if d, x := countKeys(t, s, bucketDedupe), countKeys(t, s, bucketDedupExp); d != 1 || x != 1 {
		t.Fatalf("%d marks and %d expiry entries left, want the default-TTL one", d, x)
	}
	clock.Add(DefaultDedupeTTL)
	if n, _, err := s.sweepDedupe(ctxT(t), 100); err != nil || n != 1 {
		t.Fatalf("sweep: %d %v, want 1", n, err)
	}

	// Bounded chunks.
	for i := range 250 {
		if _, err := s.Enqueue(ctxT(t), queue.Batch{DedupeKey: fmt.Sprint("k", i), DedupeTTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	clock.Add(time.Hour)
	var chunks []int
	for {
		n, more, err := s.sweepDedupe(ctxT(t), 100)
		if err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, n)
		if !more {
			break
		}
	}
	if want := []int{100, 100, 50}; !slices.Equal(chunks, want) {
		t.Fatalf("swept in chunks %v, want %v", chunks, want)
	}
	if d, x := countKeys(t, s, bucketDedupe), countKeys(t, s, bucketDedupExp); d != 0 || x != 0 {
		t.Fatalf("%d marks and %d expiry entries left, want none", d, x)
	}
}

func TestSweeperRuns(t *testing.T) {
	clock := newClock()
	s, _ := openTemp(t, Options{Now: clock.Now, DedupeSweepInterval: 10 * time.Millisecond})
	for i := range 50 {
		if _, err := s.Enqueue(ctxT(t), queue.Batch{DedupeKey: fmt.Sprint("k", i), DedupeTTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	if n := countKeys(t, s, bucketDedupe); n != 50 {
		t.Fatalf("%d marks, want 50", n)
	}
	clock.Add(time.Hour)
	deadline := time.Now().Add(20 * time.Second)
	for countKeys(t, s, bucketDedupe) != 0 || countKeys(t, s, bucketDedupExp) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sweeper did not delete expired marks")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNextWakesForDelayedHead(t *testing.T) {
	clock := newClock()
	s, _ := openTemp(t, Options{Now: clock.Now})
	mustEnqueue(t, s, newMsg("m1", "r1", "A"))
	l := mustNext(t, s)
	if err := l.Retry(ctxT(t), clock.Now().Add(time.Minute), queue.Failure{Status: 500}); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		l, err := s.Next(ctxT(t))
		if err != nil {
			got <- err.Error()
			return
		}
		got <- l.Message().ID
	}()
	select {
	case id := <-got:
		t.Fatalf("leased %s before its time", id)
	case <-time.After(100 * time.Millisecond):
	}
	clock.Add(time.Minute)
	select {
	case id := <-got:
		if id != "m1" {
			t.Fatalf("got %s, want m1", id)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Next did not notice the injected clock passing the due time")
	}
}

func TestCompact(t *testing.T) {
	s, src := openTemp(t, Options{})
	prompt := strings.Repeat("p", 1000)
	for i := range 40 {
		var batch []queue.Message
		for j := range 50 {
			m := newMsg(fmt.Sprintf("m%02d-%02d", j, i), "r1", fmt.Sprint("conv-", j))
			m.Prompt = prompt
			batch = append(batch, m)
		}
		if _, err := s.Enqueue(ctxT(t), queue.Batch{DedupeKey: fmt.Sprint("d", i), Messages: batch}); err != nil {
			t.Fatal(err)
		}
	}
	// Drain all but the last message of each conversation; kill one head.
	for range 50 * 39 {
		l := mustNext(t, s)
		if err := l.Ack(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if err := mustNext(t, s).Dead(ctxT(t), queue.Failure{Status: 400, Reason: "bad_request"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutChat(ctxT(t), "r1", "conv-1", queue.ChatState{ChatID: "chat-1"}); err != nil {
		t.Fatal(err)
	}
	chat, _ := s.GetChat(ctxT(t), "r1", "conv-1")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	dst := filepath.Join(t.TempDir(), "compact.db")
	if err := Compact(ctxT(t), src, dst); err != nil {
		t.Fatalf("compact: %v", err)
	}
	if err := Compact(ctxT(t), src, dst); err == nil {
		t.Fatal("compact over an existing file succeeded")
	}
	if err := Compact(ctxT(t), filepath.Join(t.TempDir(), "missing.db"), filepath.Join(t.TempDir(), "x.db")); err == nil {
		t.Fatal("compact of a missing file succeeded")
	}
	si, _ := os.Stat(src)
	di, _ := os.Stat(dst)
	t.Logf("compacted %d bytes into %d", si.Size(), di.Size())
	if di.Size() >= si.Size()/2 {
		t.Errorf("compacted file %d bytes, source %d: want much smaller", di.Size(), si.Size())
	}

	c := openAt(t, dst, Options{})
	if st := mustStats(t, c); st != (queue.Stats{Ready: 49, Dead: 1}) {
		t.Fatalf("compacted stats %+v, want 49 ready and 1 dead", st)
	}
	if got, err := c.GetChat(ctxT(t), "r1", "conv-1"); err != nil || !reflect.DeepEqual(got, chat) {
		t.Fatalf("compacted chat %+v %v, want %+v", got, err, chat)
	}
	if dup, err := c.Enqueue(ctxT(t), queue.Batch{DedupeKey: "d3"}); err != nil || !dup {
		t.Fatalf("dedupe mark lost in compaction: %v %v", dup, err)
	}
	// Sequences carry over: new messages still go to the tail.
	mustEnqueue(t, c, newMsg("late", "r1", "conv-2"))
	got := drain(t, c, 50, 2)
	if ids := got["conv-2"]; !slices.Equal(ids, []string{"m02-39", "late"}) {
		t.Fatalf("conv-2 after compaction %v", ids)
	}
}

func TestListChats(t *testing.T) {
	s, _ := openTemp(t, Options{})
	for _, k := range []string{"b", "a"} {
		if err := s.PutChat(ctxT(t), "r1", k, queue.ChatState{ChatID: "chat-" + k, Messages: 3}); err != nil {
			t.Fatal(err)
		}
	}
	chats, err := s.ListChats(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(chats) != 2 || chats[0].ConversationKey != "a" || chats[1].ChatID != "chat-b" || chats[0].Route != "r1" || chats[0].Revision == 0 {
		t.Fatalf("chats %+v", chats)
	}
}

// A clean Close writes the freelist, so the next Open reads it rather than
// walking the file. bbolt commits a transaction at open when a writable
// file has no synced freelist: the transaction id tells whether it did.
func TestCloseWritesFreelist(t *testing.T) {
	s, path := openTemp(t, Options{})
	for i := range 50 {
		mustEnqueue(t, s, newMsg(fmt.Sprint("m", i), "r1", fmt.Sprint(i%5)))
	}
	drain(t, s, 50, 4)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	txid := func(o *bolt.Options) int {
		db, err := bolt.Open(path, 0o600, o)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		tx, err := db.Begin(false)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		return tx.ID()
	}
	before := txid(&bolt.Options{ReadOnly: true})
	if after := txid(&bolt.Options{}); after != before {
		t.Fatalf("opening with a synced freelist expected committed nothing; the transaction id went from %d to %d", before, after)
	}
	// The store still runs without writing it, and opens after that.
	s = openAt(t, path, Options{})
	mustEnqueue(t, s, newMsg("again", "r1", "A"))
	if l := mustNext(t, s); l.Message().ID != "again" {
		t.Fatalf("leased %s, want again", l.Message().ID)
	}
}
