package natsq_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/queue/natsq/natstest"
)

// BenchmarkEnqueue measures one webhook's store: a dedupe mark and one
// message, acknowledged by JetStream.
func BenchmarkEnqueue(b *testing.B) {
	_, url := natstest.RunServer(b)
	s := open(b, url)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m := newMsg("r", "repo/x")
			if _, err := s.Enqueue(ctx, queue.Batch{DedupeKey: m.ID, Messages: []queue.Message{m}}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkDeliver measures lease and ack of queued messages across 64
// conversations with 8 workers.
func BenchmarkDeliver(b *testing.B) {
	_, url := natstest.RunServer(b)
	s := open(b, url)
	ctx := context.Background()
	for i := range b.N {
		enqueue(b, s, newMsg("r", fmt.Sprintf("repo/%d", i%64)))
	}
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	work := make(chan struct{}, b.N)
	for range b.N {
		work <- struct{}{}
	}
	close(work)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				l, err := s.Next(ctx)
				if err != nil {
					b.Error(err)
					return
				}
				if err := l.Ack(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
