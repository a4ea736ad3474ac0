package boltq_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/ingest"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/queue/boltq"
	"github.com/relayd/relayd/internal/queue/queuetest"
)

// The consumers own the interfaces. The checks live in this external test
// package so that boltq does not import them: their own tests can then use a
// real boltq store without an import cycle.
var (
	_ dispatch.Queue     = (*boltq.Store)(nil)
	_ dispatch.ChatStore = (*boltq.Store)(nil)
	_ ingest.Store       = (*boltq.Store)(nil)
	_ queuetest.Backend  = (*boltq.Store)(nil)
)

func TestConformance(t *testing.T) {
	const maxPending = 30
	queuetest.Run(t, queuetest.Harness{
		Open: func(t *testing.T) queuetest.Backend {
			s, err := boltq.Open(context.Background(), filepath.Join(queuetest.TempDir(t), "data", "relayd.db"), boltq.Options{MaxPending: maxPending})
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			return s
		},
		MaxPending: maxPending,
		Coalesces:  true,
	})
}

// The lease offers dispatch the one-commit delivery ending.
func TestLeaseIsChatAcker(t *testing.T) {
	s, err := boltq.Open(context.Background(), filepath.Join(t.TempDir(), "relayd.db"), boltq.Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Enqueue(ctx, queue.Batch{Messages: []queue.Message{{ID: "m1", Route: "r1"}}}); err != nil {
		t.Fatal(err)
	}
	l, err := s.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.(dispatch.ChatAcker); !ok {
		t.Fatalf("%T does not implement dispatch.ChatAcker", l)
	}
}
