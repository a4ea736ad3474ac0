package natsq_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/queue/natsq"
	"github.com/relayd/relayd/internal/queue/natsq/natstest"
	"github.com/relayd/relayd/internal/queue/queuetest"
)

// servers holds the embedded server of each conformance case, so that a
// reopen in the same case (the suite's restart) finds the same storage.
var servers sync.Map // *testing.T → URL

func TestConformance(t *testing.T) {
	const maxPending = 30
	// The suite's ConversationsIndependent, ReplayDead and StatsAddUp cases
	// hold several conversations' heads at once. With partitions a
	// conversation's head also holds every conversation hashed to the same
	// partition (see the package doc); check the suite's conversations land
	// in distinct partitions, so the cases test what they mean to.
	distinct := map[int]string{}
	for _, c := range [][2]string{{"r1", "repo/a"}, {"r1", "repo/b"}, {"r2", "repo/a"}, {"r2", "repo/b"}} {
		p := natsq.PartitionOf(c[0], c[1], natsq.DefaultPartitions)
		if other, ok := distinct[p]; ok {
			t.Fatalf("%s/%s shares partition %d with %s", c[0], c[1], p, other)
		}
		distinct[p] = c[0] + "/" + c[1]
	}

	queuetest.Run(t, queuetest.Harness{
		Open: func(t *testing.T) queuetest.Backend {
			url, ok := servers.Load(t)
			if !ok {
				_, u := natstest.RunServer(t)
				servers.Store(t, u)
				t.Cleanup(func() { servers.Delete(t) })
				url = u
			}
			s := open(t, url.(string), func(o *natsq.Options) { o.MaxPending = maxPending })
			return s
		},
		MaxPending: maxPending,
		Coalesces:  true,
	})
}

// open opens a Store on url with test settings (a short AckWait, so a dead
// consumer's message comes back soon) and closes it when t ends, before the
// server started earlier in t stops.
func open(t testing.TB, url string, opts ...func(*natsq.Options)) *natsq.Store {
	t.Helper()
	o := natsq.Options{
		URLs:    []string{url},
		AckWait: time.Second,
		Logger:  testLogger(t),
	}
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := natsq.Open(ctx, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
