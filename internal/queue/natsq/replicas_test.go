package natsq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/ingest"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/queue/natsq"
	"github.com/relayd/relayd/internal/queue/natsq/natstest"
)

var (
	_ ingest.Store       = (*natsq.Store)(nil)
	_ dispatch.Queue     = (*natsq.Store)(nil)
	_ dispatch.ChatStore = (*natsq.Store)(nil)
)

// patience bounds every wait for something that must happen.
const patience = 60 * time.Second

func waitCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	t.Cleanup(cancel)
	return ctx
}

var ids atomic.Int64

func newMsg(route, key string) queue.Message {
	id := fmt.Sprintf("m-%d-%d", time.Now().UnixNano(), ids.Add(1))
	return queue.Message{ID: id, Route: route, ConversationKey: key, Prompt: "p " + id, Source: "github", Delivery: "d-" + id}
}

func enqueue(t testing.TB, s *natsq.Store, ms ...queue.Message) {
	t.Helper()
	if dup, err := s.Enqueue(waitCtx(t), queue.Batch{Messages: ms}); err != nil || dup {
		t.Fatalf("enqueue: dup %v, %v", dup, err)
	}
}

// nextAny leases the next turn from whichever store owns its partition:
// each replica hands out only the partitions it owns. It returns the lease
// and the store it came from.
func nextAny(t testing.TB, stores ...*natsq.Store) (queue.Lease, *natsq.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	type got struct {
		l queue.Lease
		s *natsq.Store
	}
	ch := make(chan got, len(stores))
	for _, s := range stores {
		go func() {
			l, err := s.Next(ctx)
			if err != nil {
				l = nil
			}
			ch <- got{l, s}
		}()
	}
	var first got
	for range stores {
		g := <-ch
		switch {
		case g.l == nil:
		case first.l == nil:
			first = g
			cancel()
		default: // a second store had a turn too: put it back
			_ = g.l.Release(context.Background(), time.Time{})
		}
	}
	if first.l == nil {
		t.Fatalf("no store leased anything within %v", patience)
	}
	return first.l, first.s
}

// other returns the store of pair that is not s.
func other(s *natsq.Store, pair ...*natsq.Store) *natsq.Store {
	if pair[0] == s {
		return pair[1]
	}
	return pair[0]
}

// replica is one consumer of the shared queue, as a dispatcher would run
// it: workers leasing, "sending" for a random while, and ending the lease.
type replica struct {
	name   string
	store  *natsq.Store
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	held   map[string]string // conversation → message id, for leases out here
	leased atomic.Int64
}

// tracker checks the properties across replicas: per conversation, one
// lease at a time and acks in enqueue order.
type tracker struct {
	mu      sync.Mutex
	want    map[string][]string // conversation → ids in enqueue order
	out     map[string]string   // conversation → id leased now
	acked   map[string][]string // conversation → ids acked, in ack order
	retried map[string]int      // id → retries seen through
	left    int
	done    chan struct{}
	fails   []string
}

func newTracker() *tracker {
	return &tracker{want: map[string][]string{}, out: map[string]string{}, acked: map[string][]string{},
		retried: map[string]int{}, done: make(chan struct{})}
}

func (tr *tracker) failf(format string, args ...any) {
	tr.fails = append(tr.fails, fmt.Sprintf(format, args...))
}

func (r *replica) run(t *testing.T, tr *tracker, workers int, seed uint64) {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.held = map[string]string{}
	for w := range workers {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for {
				l, err := r.store.Next(ctx)
				if err != nil {
					return
				}
				r.leased.Add(1)
				m := l.Message()
				conv := m.Route + "/" + m.ConversationKey
				tr.mu.Lock()
				if other, busy := tr.out[conv]; busy {
					tr.failf("%s leased %s while %s of the same conversation was out", r.name, m.ID, other)
				}
				tr.out[conv] = m.ID
				if m.Attempts < tr.retried[m.ID] {
					tr.failf("%s: %s has %d attempts, want at least %d", r.name, m.ID, m.Attempts, tr.retried[m.ID])
				}
				tr.mu.Unlock()
				r.mu.Lock()
				r.held[conv] = m.ID
				r.mu.Unlock()

				time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond) // the request

				if ctx.Err() != nil { // this replica died mid-request: no ack
					return
				}
				retry := rng.IntN(8) == 0
				tr.mu.Lock()
				delete(tr.out, conv) // the request is over before the lease ends
				if !retry {
					// Counted before the ack: once the server has it, the
					// conversation's next message may be acked elsewhere
					// before Ack returns here.
					if !slices.Contains(tr.acked[conv], m.ID) {
						tr.left--
						if tr.left == 0 {
							close(tr.done)
						}
					}
					tr.acked[conv] = append(tr.acked[conv], m.ID)
				}
				tr.mu.Unlock()
				r.mu.Lock()
				delete(r.held, conv)
				r.mu.Unlock()
				if retry {
					err = l.Retry(context.Background(), time.Now().Add(20*time.Millisecond), queue.Failure{Status: 503, Reason: "server_error"})
					if err == nil {
						tr.mu.Lock()
						tr.retried[m.ID]++
						tr.mu.Unlock()
					}
				} else {
					err = l.Ack(context.Background())
				}
				if err != nil && ctx.Err() == nil {
					t.Errorf("%s: ending lease of %s: %v", r.name, m.ID, err)
				}
			}
		}()
	}
}

// die stops the replica the way a crash does: its connection goes, its
// leases are neither acked nor released.
func (r *replica) die(tr *tracker) {
	r.cancel()
	r.store.KillConn()
	r.wg.Wait()
	// The dead replica's requests are over; NATS hands its messages to the
	// other replica after AckWait, long after this.
	r.mu.Lock()
	tr.mu.Lock()
	for conv, id := range r.held {
		if tr.out[conv] == id {
			delete(tr.out, conv)
		}
	}
	tr.mu.Unlock()
	r.mu.Unlock()
}

// inOrder reports whether got is want, allowing a message to repeat right
// after itself (acked by a replica that died before its ack was confirmed,
// then again by another: at least once).
func inOrder(got, want []string) bool {
	var dedup []string
	for _, id := range got {
		if len(dedup) == 0 || dedup[len(dedup)-1] != id {
			dedup = append(dedup, id)
		}
	}
	return slices.Equal(dedup, want)
}

// TestTwoReplicasOrder runs two stores on one server, consuming many
// conversations concurrently with random latencies and retries, and kills
// one of them mid-run. Each conversation is acked in enqueue order, never
// has two leases out at once, and nothing is lost.
func TestTwoReplicasOrder(t *testing.T) {
	_, url := natstest.RunServer(t)
	small := func(o *natsq.Options) { o.Partitions = 6 }
	a, b := open(t, url, small), open(t, url, small)

	const convs, per = 24, 10
	tr := newTracker()
	var batches [][]queue.Message
	for i := range per {
		for c := range convs {
			m := newMsg(fmt.Sprintf("route-%d", c%3), fmt.Sprintf("repo/%d", c))
			m.Prompt = fmt.Sprint(i)
			conv := m.Route + "/" + m.ConversationKey
			tr.want[conv] = append(tr.want[conv], m.ID)
			batches = append(batches, []queue.Message{m})
		}
	}
	tr.left = convs * per
	// Half enqueued through each replica, as a load balancer would spread
	// webhooks; per conversation the order is the enqueue order.
	for i, batch := range batches {
		s := a
		if i%2 == 1 {
			s = b
		}
		enqueue(t, s, batch...)
	}

	ra := &replica{name: "A", store: a}
	rb := &replica{name: "B", store: b}
	ra.run(t, tr, 3, 1)
	rb.run(t, tr, 3, 2)

	// Kill A once about a third is acked.
	deadline := time.Now().Add(patience)
	for {
		tr.mu.Lock()
		left := tr.left
		tr.mu.Unlock()
		if left <= convs*per*2/3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	ra.mu.Lock()
	heldAtDeath := len(ra.held)
	ra.mu.Unlock()
	ra.die(tr)
	t.Logf("A died holding %d leases after %d leases; B leased %d so far", heldAtDeath, ra.leased.Load(), rb.leased.Load())

	select {
	case <-tr.done:
	case <-time.After(patience):
		tr.mu.Lock()
		t.Errorf("%d messages not acked", tr.left)
		tr.mu.Unlock()
	}
	rb.cancel()
	rb.wg.Wait()

	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, f := range tr.fails {
		t.Error(f)
	}
	for conv, want := range tr.want {
		if got := tr.acked[conv]; !inOrder(got, want) {
			t.Errorf("%s acked %v, want %v", conv, got, want)
		}
	}
}

// TestAbandonedLeaseRedelivered: a replica that dies holding a lease does
// not lose the message; the other replica takes the partition over once
// the dead one's claim expires and gets it, with the attempts recorded so
// far, then the conversation's next message.
func TestAbandonedLeaseRedelivered(t *testing.T) {
	_, url := natstest.RunServer(t)
	a, b := open(t, url), open(t, url)
	m1, m2 := newMsg("r", "k"), newMsg("r", "k")
	enqueue(t, a, m1, m2)

	l, owner := nextAny(t, a, b)
	if l.Message().ID != m1.ID {
		t.Fatalf("next: %s, want %s", l.Message().ID, m1.ID)
	}
	if err := l.Retry(waitCtx(t), time.Now(), queue.Failure{Status: 502, Message: "bad gateway", Reason: "server_error"}); err != nil {
		t.Fatalf("retry: %v", err)
	}
	l, err := owner.Next(waitCtx(t))
	if err != nil || l.Message().ID != m1.ID || l.Message().Attempts != 1 {
		t.Fatalf("next after retry: %+v %v", l.Message(), err)
	}
	owner.KillConn()
	survivor := other(owner, a, b)

	l, err = survivor.Next(waitCtx(t))
	if err != nil {
		t.Fatalf("next on the other replica: %v", err)
	}
	got := l.Message()
	if got.ID != m1.ID || got.Attempts != 1 || got.LastStatus != 502 || got.LastError != "bad gateway" {
		t.Fatalf("redelivered %+v, want %s with 1 attempt", got, m1.ID)
	}
	if err := l.Ack(waitCtx(t)); err != nil {
		t.Fatalf("ack: %v", err)
	}
	l, err = survivor.Next(waitCtx(t))
	if err != nil || l.Message().ID != m2.ID || l.Message().Attempts != 0 {
		t.Fatalf("next: %+v %v, want %s", l.Message(), err, m2.ID)
	}
}

// TestLongLeaseKept: a lease held several OwnerTTLs, with no call on it,
// stays with its store: neither that store nor another replica gets the
// message again while it is out.
func TestLongLeaseKept(t *testing.T) {
	_, url := natstest.RunServer(t)
	a, b := open(t, url), open(t, url)
	enqueue(t, a, newMsg("r", "k"))
	l, _ := nextAny(t, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for name, s := range map[string]*natsq.Store{"A": a, "B": b} {
		wg.Go(func() {
			if other, err := s.Next(ctx); err == nil {
				t.Errorf("%s leased %s again while it was out", name, other.Message().ID)
			} else if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("next on %s: %v", name, err)
			}
		})
	}
	wg.Wait()
	if err := l.Ack(waitCtx(t)); err != nil {
		t.Fatalf("ack after %v: %v", 5*time.Second, err)
	}
}

// TestNoHeadOfLine: with one partition, shared by every conversation, a
// conversation whose turn is out for long, or backing off, delays only
// itself.
func TestNoHeadOfLine(t *testing.T) {
	_, url := natstest.RunServer(t)
	one := func(o *natsq.Options) { o.Partitions = 1 }
	a, b := open(t, url, one), open(t, url, one)
	long, backoff, free := newMsg("r", "long"), newMsg("r", "backoff"), newMsg("r", "free")
	long2, backoff2 := newMsg("r", "long"), newMsg("r", "backoff")
	enqueue(t, a, long, backoff, free, long2, backoff2)

	leased := map[string]queue.Lease{}
	var owner *natsq.Store
	for range 3 {
		l, s := nextAny(t, a, b)
		owner = s
		leased[l.Message().ID] = l
	}
	for _, m := range []queue.Message{long, backoff, free} {
		if leased[m.ID] == nil {
			t.Fatalf("leased %v, want the heads of the three conversations", slices.Collect(maps.Keys(leased)))
		}
	}
	// "long" stays out; "backoff" retries in a minute; "free" goes on.
	if err := leased[backoff.ID].Retry(waitCtx(t), time.Now().Add(time.Minute), queue.Failure{Status: 503, Reason: "server_error"}); err != nil {
		t.Fatal(err)
	}
	if err := leased[free.ID].Ack(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	later := newMsg("r", "free")
	enqueue(t, b, later)
	l, err := owner.Next(waitCtx(t))
	if err != nil || l.Message().ID != later.ID {
		t.Fatalf("next: %v %v, want %s past the long turn and the backoff", l, err, later.ID)
	}
	if err := l.Ack(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	// The long turn and the backoff still hold their own conversations.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if l, err := owner.Next(ctx); err == nil {
		t.Fatalf("leased %s while its conversation was out or backing off", l.Message().ID)
	}
	waitStats(t, owner, queue.Stats{Inflight: 1, Delayed: 3})
	if err := leased[long.ID].Ack(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	if l, err := owner.Next(waitCtx(t)); err != nil || l.Message().ID != long2.ID {
		t.Fatalf("next after the long turn: %v %v, want %s", l, err, long2.ID)
	}
}

// waitStats waits until s's Stats are want (other owners report theirs
// with their claim refreshes).
func waitStats(t testing.TB, s *natsq.Store, want queue.Stats) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		st, err := s.Stats(waitCtx(t))
		if err == nil && st == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v %v, want %+v", st, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTakeoverKeepsOrder: with one partition, the replica owning it dies
// holding a turn; the other takes the partition over and sends the
// conversation from that turn on, in order.
func TestTakeoverKeepsOrder(t *testing.T) {
	_, url := natstest.RunServer(t)
	one := func(o *natsq.Options) { o.Partitions = 1; o.OwnerTTL = 600 * time.Millisecond }
	a, b := open(t, url, one), open(t, url, one)
	var want []string
	for range 6 {
		m := newMsg("r", "k")
		want = append(want, m.ID)
		enqueue(t, a, m)
	}
	l, owner := nextAny(t, a, b)
	if err := l.Ack(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	got := []string{l.Message().ID}
	l, err := owner.Next(waitCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, l.Message().ID) // sent, never acked: it comes again
	owner.KillConn()
	survivor := other(owner, a, b)
	for len(got) < len(want)+1 {
		l, err := survivor.Next(waitCtx(t))
		if err != nil {
			t.Fatalf("after the takeover, got %v: %v", got, err)
		}
		got = append(got, l.Message().ID)
		if err := l.Ack(waitCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if !inOrder(got, want) {
		t.Fatalf("sent %v, want %v (the abandoned one possibly twice)", got, want)
	}
}

// TestFairShare: replicas split the partitions evenly, and a replica that
// leaves hands its share to the others.
func TestFairShare(t *testing.T) {
	_, url := natstest.RunServer(t)
	six := func(o *natsq.Options) { o.Partitions = 6; o.OwnerTTL = 600 * time.Millisecond }
	stores := []*natsq.Store{open(t, url, six), open(t, url, six), open(t, url, six)}
	shares := func(want ...int) {
		t.Helper()
		deadline := time.Now().Add(patience)
		for {
			var got []int
			all := map[int]bool{}
			for _, s := range stores {
				o := s.Owned()
				got = append(got, len(o))
				for _, p := range o {
					all[p] = true
				}
			}
			if slices.Equal(got, want) && len(all) == len(got)*want[0] {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("partitions owned %v, want %v", got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	shares(2, 2, 2)
	if err := stores[2].Close(); err != nil {
		t.Fatal(err)
	}
	stores = stores[:2]
	shares(3, 3)
}

// TestNATSRestart shuts the server down while events arrive and starts it
// again on the same store dir: enqueues fail with ErrUnavailable meanwhile,
// the store recovers by itself, and every enqueue that succeeded is
// delivered.
func TestNATSRestart(t *testing.T) {
	srv, url := natstest.RunServer(t)
	s := open(t, url)

	var (
		mu        sync.Mutex
		accepted  = map[string]bool{}
		received  = map[string]bool{}
		outageErr atomic.Int64
		badErr    error
	)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // ingest
		defer wg.Done()
		for ctx.Err() == nil {
			m := newMsg("r", fmt.Sprintf("repo/%d", ids.Load()%5))
			_, err := s.Enqueue(ctx, queue.Batch{DedupeKey: "delivery:" + m.ID, DedupeTTL: time.Hour, Messages: []queue.Message{m}})
			mu.Lock()
			switch {
			case err == nil:
				accepted[m.ID] = true
			case errors.Is(err, queue.ErrUnavailable):
				outageErr.Add(1)
			case ctx.Err() == nil && badErr == nil:
				badErr = err
			}
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	go func() { // dispatch
		defer wg.Done()
		for {
			l, err := s.Next(ctx)
			if err != nil {
				return
			}
			mu.Lock()
			received[l.Message().ID] = true
			mu.Unlock()
			_ = l.Ack(ctx) // may fail during the outage: then redelivered
		}
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(patience)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	waitFor("enqueues before the outage", func() bool { return count() >= 20 })
	natstest.Shutdown(srv)
	waitFor("an enqueue refused during the outage", func() bool { return outageErr.Load() > 0 })
	if err := s.Ping(waitCtx(t)); !errors.Is(err, queue.ErrUnavailable) {
		t.Errorf("ping during the outage: %v, want ErrUnavailable", err)
	}
	before := count()
	natstest.Restart(t, srv)
	waitFor("ping after the restart", func() bool { return s.Ping(waitCtx(t)) == nil })
	waitFor("enqueues after the restart", func() bool { return count() >= before+20 })
	stop()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if badErr != nil {
		t.Errorf("an enqueue failed with %v, want only ErrUnavailable", badErr)
	}
	// Drain what the dispatcher had not reached yet.
	for missing(accepted, received) > 0 {
		l, err := s.Next(waitCtx(t))
		if err != nil {
			t.Fatalf("%d accepted messages never delivered: %v", missing(accepted, received), err)
		}
		received[l.Message().ID] = true
		if err := l.Ack(waitCtx(t)); err != nil {
			t.Fatalf("ack: %v", err)
		}
	}
}

func missing(accepted, received map[string]bool) int {
	n := 0
	for id := range accepted {
		if !received[id] {
			n++
		}
	}
	return n
}

// TestAcrossReplicas: chat compare-and-set, dedupe marks and dead letters
// are shared, whichever replica is asked.
func TestAcrossReplicas(t *testing.T) {
	_, url := natstest.RunServer(t)
	a, b := open(t, url), open(t, url)
	ctx := waitCtx(t)

	t.Run("chat CAS", func(t *testing.T) {
		now := time.Now().UTC()
		// Both replicas saw no chat and both got a chat id back: one wins.
		if err := a.PutChat(ctx, "r", "k", queue.ChatState{ChatID: "from-a", StartedAt: now}); err != nil {
			t.Fatalf("a: %v", err)
		}
		if err := b.PutChat(ctx, "r", "k", queue.ChatState{ChatID: "from-b", StartedAt: now}); !errors.Is(err, queue.ErrConflict) {
			t.Fatalf("b: %v, want ErrConflict", err)
		}
		st, err := b.GetChat(ctx, "r", "k")
		if err != nil || st.ChatID != "from-a" {
			t.Fatalf("b reads %+v %v", st, err)
		}
		st.Messages++
		if err := b.PutChat(ctx, "r", "k", st); err != nil {
			t.Fatalf("b updates: %v", err)
		}
		stale, _ := a.GetChat(ctx, "r", "k")
		if err := a.DeleteChat(ctx, "r", "k"); err != nil {
			t.Fatal(err)
		}
		if err := b.PutChat(ctx, "r", "k", stale); !errors.Is(err, queue.ErrConflict) {
			t.Fatalf("update of a chat deleted by the other replica: %v, want ErrConflict", err)
		}
		if err := b.PutChat(ctx, "r", "", queue.ChatState{ChatID: "empty-key"}); err != nil {
			t.Fatal(err)
		}
		chats, err := a.ListChats(ctx)
		if err != nil || len(chats) != 1 || chats[0].Route != "r" || chats[0].ConversationKey != "" || chats[0].ChatID != "empty-key" || chats[0].Revision == 0 {
			t.Fatalf("list chats: %+v %v", chats, err)
		}
	})

	t.Run("dedupe", func(t *testing.T) {
		m1, m2 := newMsg("r", "d"), newMsg("r", "d")
		if dup, err := a.Enqueue(ctx, queue.Batch{DedupeKey: "gh:1", DedupeTTL: time.Hour, Messages: []queue.Message{m1}}); err != nil || dup {
			t.Fatalf("a: %v %v", dup, err)
		}
		if dup, err := b.Enqueue(ctx, queue.Batch{DedupeKey: "gh:1", DedupeTTL: time.Hour, Messages: []queue.Message{m2}}); err != nil || !dup {
			t.Fatalf("b: dup %v %v, want a duplicate", dup, err)
		}
		l, _ := nextAny(t, a, b)
		if l.Message().ID != m1.ID {
			t.Fatalf("next: %s, want %s", l.Message().ID, m1.ID)
		}
		// Dead on its owner, listed, replayed and dropped through A.
		if err := l.Dead(ctx, queue.Failure{Status: 400, Code: "invalid", Message: "no", Reason: "bad_request"}); err != nil {
			t.Fatal(err)
		}
		dl, err := a.GetDead(ctx, m1.Delivery)
		if err != nil || dl.ID != m1.ID || dl.Attempts != 1 || dl.LastError != "invalid: no" {
			t.Fatalf("get dead via a: %+v %v", dl, err)
		}
		if n, err := a.ReplayDead(ctx, m1.ID); err != nil || n != 1 {
			t.Fatalf("replay via a: %d %v", n, err)
		}
		l, _ = nextAny(t, a, b)
		if l.Message().ID != m1.ID || l.Message().Attempts != 0 {
			t.Fatalf("replayed: %+v", l.Message())
		}
		if err := l.Dead(ctx, queue.Failure{Status: 400, Reason: "bad_request"}); err != nil {
			t.Fatal(err)
		}
		// Dead twice: the second death is a new dead letter, not deduped.
		if dls, err := b.ListDead(ctx, "r"); err != nil || len(dls) != 1 {
			t.Fatalf("list dead: %d %v", len(dls), err)
		}
		if n, err := b.DropDead(ctx, m1.ID); err != nil || n != 1 {
			t.Fatalf("drop: %d %v", n, err)
		}
	})
}

// TestOpenUnreachable: no server, no store, and the error says so.
func TestOpenUnreachable(t *testing.T) {
	srv, url := natstest.RunServer(t)
	natstest.Shutdown(srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := natsq.Open(ctx, natsq.Options{URLs: []string{url}}); !errors.Is(err, queue.ErrUnavailable) {
		t.Fatalf("open: %v, want ErrUnavailable", err)
	}
}

// TestFewerPartitionsDrains: lowering P leaves messages in the old high
// partitions; a store opened with the smaller P still delivers them.
func TestFewerPartitionsDrains(t *testing.T) {
	_, url := natstest.RunServer(t)
	big := open(t, url, func(o *natsq.Options) { o.Partitions = 8 })
	want := map[string]bool{}
	for i := range 16 {
		m := newMsg("r", fmt.Sprintf("repo/%d", i))
		enqueue(t, big, m)
		want[m.ID] = true
	}
	if err := big.Close(); err != nil {
		t.Fatal(err)
	}
	small := open(t, url, func(o *natsq.Options) { o.Partitions = 2 })
	for len(want) > 0 {
		l, err := small.Next(waitCtx(t))
		if err != nil {
			t.Fatalf("%d messages not delivered: %v", len(want), err)
		}
		delete(want, l.Message().ID)
		if err := l.Ack(waitCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDedupeExpires: a dedupe mark lasts its batch's TTL, not the bucket's.
func TestDedupeExpires(t *testing.T) {
	_, url := natstest.RunServer(t)
	s := open(t, url)
	ctx := waitCtx(t)
	enq := func(key string, ttl time.Duration) bool {
		t.Helper()
		dup, err := s.Enqueue(ctx, queue.Batch{DedupeKey: key, DedupeTTL: ttl, Messages: []queue.Message{newMsg("r", key)}})
		if err != nil {
			t.Fatalf("enqueue: %v", err)
		}
		return dup
	}
	if enq("short", time.Second) || enq("long", time.Hour) {
		t.Fatal("first delivery reported as a duplicate")
	}
	if !enq("short", time.Second) {
		t.Fatal("immediate redelivery not a duplicate")
	}
	start := time.Now()
	for enq("short", time.Second) {
		if time.Since(start) > patience {
			t.Fatal("a one-second dedupe mark never expired")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if time.Since(start) < 500*time.Millisecond {
		t.Fatalf("mark expired after %v, before its TTL", time.Since(start))
	}
	if !enq("long", time.Hour) {
		t.Fatal("the one-hour mark expired with the short one")
	}
}

// TestOldSubjectsDrained: messages a release before per-conversation
// subjects stored on its partition's own subject are still delivered, in
// order with the conversation's newer messages.
func TestOldSubjectsDrained(t *testing.T) {
	_, url := natstest.RunServer(t)
	first := open(t, url)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	old := newMsg("r", "k")
	old.EnqueuedAt = time.Now()
	data, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	subj := fmt.Sprintf("RELAYD.msgs.%d", natsq.PartitionOf("r", "k", natsq.DefaultPartitions))
	if _, err := js.Publish(waitCtx(t), subj, data); err != nil {
		t.Fatal(err)
	}
	s := open(t, url)
	newer := newMsg("r", "k")
	enqueue(t, s, newer)
	for _, want := range []string{old.ID, newer.ID} {
		l, err := s.Next(waitCtx(t))
		if err != nil || l.Message().ID != want {
			t.Fatalf("next: %v %v, want %s", l, err, want)
		}
		if err := l.Ack(waitCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStalledOwnerStopsSending: a replica that cannot refresh its claim
// (stalled, or cut off from NATS) stops handing out its partition's turns
// before another replica may take the partition over, so no conversation
// is sent by two replicas at once; once it is back it finds the claim
// taken and lets the partition go.
func TestStalledOwnerStopsSending(t *testing.T) {
	_, url := natstest.RunServer(t)
	one := func(o *natsq.Options) { o.Partitions = 1; o.OwnerTTL = 600 * time.Millisecond }
	a, b := open(t, url, one), open(t, url, one)
	m1, m2 := newMsg("r", "k"), newMsg("r", "j")
	enqueue(t, a, m1, m2)
	l, stalled := nextAny(t, a, b)
	first := l.Message().ID
	stalled.PauseClaims(true)
	survivor := other(stalled, a, b)
	// Nobody takes the partition over yet: the stalled replica, whose
	// claim has not been refreshed for its whole lifetime, still holds the
	// other message, and must not hand it out.
	survivor.PauseClaims(true)
	time.Sleep(700 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if l, err := stalled.Next(ctx); err == nil {
		t.Fatalf("the stalled replica handed out %s with its claim lapsed (first was %s)", l.Message().ID, first)
	}
	survivor.PauseClaims(false)
	// The survivor takes the partition over and sends both again.
	got := map[string]bool{}
	for len(got) < 2 {
		l, err := survivor.Next(waitCtx(t))
		if err != nil {
			t.Fatalf("survivor got %v: %v", got, err)
		}
		got[l.Message().ID] = true
		if err := l.Ack(waitCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	stalled.PauseClaims(false)
	deadline := time.Now().Add(patience)
	for len(stalled.Owned()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the stalled replica still owns %v", stalled.Owned())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := survivor.Owned(); len(got) != 1 {
		t.Fatalf("survivor owns %v, want the partition", got)
	}
}

// TestResyncKeepsTurns: reading a partition again (after a reconnect)
// keeps the turns out and what is held: nothing is sent twice, and other
// conversations go on meanwhile.
func TestResyncKeepsTurns(t *testing.T) {
	_, url := natstest.RunServer(t)
	s := open(t, url, func(o *natsq.Options) { o.Partitions = 1 })
	a1, a2, b1 := newMsg("r", "a"), newMsg("r", "a"), newMsg("r", "b")
	enqueue(t, s, a1, b1, a2)
	leases := map[string]queue.Lease{}
	for range 2 {
		l, err := s.Next(waitCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		leases[l.Message().ID] = l
	}
	if leases[a1.ID] == nil || leases[b1.ID] == nil {
		t.Fatalf("leased %v, want %s and %s", slices.Collect(maps.Keys(leases)), a1.ID, b1.ID)
	}
	if err := leases[b1.ID].Ack(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	s.Resync()
	b2 := newMsg("r", "b")
	enqueue(t, s, b2)
	if l, err := s.Next(waitCtx(t)); err != nil || l.Message().ID != b2.ID {
		t.Fatalf("next during the turn of a: %v %v, want %s", l, err, b2.ID)
	} else if err := l.Ack(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := leases[a1.ID].Ack(waitCtx(t)); err != nil {
		t.Fatalf("ack of a turn out across the resync: %v", err)
	}
	if l, err := s.Next(waitCtx(t)); err != nil || l.Message().ID != a2.ID {
		t.Fatalf("next: %v %v, want %s", l, err, a2.ID)
	} else if err := l.Ack(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if l, err := s.Next(ctx); err == nil {
		t.Fatalf("%s sent again after the resync", l.Message().ID)
	}
	// Everything was acked: a store opened now finds nothing.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, url, func(o *natsq.Options) { o.Partitions = 1 })
	ctx2, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	if l, err := s2.Next(ctx2); err == nil {
		t.Fatalf("%s left in the stream", l.Message().ID)
	}
}
