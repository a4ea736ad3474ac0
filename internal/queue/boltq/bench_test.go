package boltq

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/queue"
)

// benchPrompt is the size of a typical rendered CI-failure prompt.
var benchPrompt = strings.Repeat("CI failed on relayd/relayd (main). Run: https://github.com/relayd/relayd/actions/runs/1. ", 12)

func benchMsg(id string, conv int) queue.Message {
	return queue.Message{
		ID: id, Route: "ci-failures", ConversationKey: fmt.Sprint("relayd/repo-", conv),
		Prompt: benchPrompt, Source: "github", Delivery: id, Event: "workflow_run",
	}
}

// BenchmarkEnqueueParallel: 8 or 64 concurrent ingest requests, one
// message and one dedupe mark each, fsync'd in the write-ahead log, on a
// real file. ns/op is wall time per enqueue across all of them;
// enqueues/s = 1e9 / ns/op. msgs/write is the log's group size, msgs/commit
// the committer's (it applies to bbolt behind the log).
func BenchmarkEnqueueParallel(b *testing.B) {
	for _, conns := range []int{8, 64} {
		b.Run(fmt.Sprint("conns=", conns), func(b *testing.B) {
			s, _ := openTemp(b, Options{DedupeSweepInterval: -1})
			var n atomic.Int64
			commits, writes := s.commits.Load(), s.logWrites.Load()
			b.SetParallelism((conns + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					i := n.Add(1)
					id := fmt.Sprint("m", i)
					if _, err := s.Enqueue(ctx, queue.Batch{DedupeKey: id, Messages: []queue.Message{benchMsg(id, int(i%100))}}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			settle(b, s)
			if c := s.commits.Load() - commits; c > 0 {
				b.ReportMetric(float64(n.Load())/float64(c), "msgs/commit")
			}
			if w := s.logWrites.Load() - writes; w > 0 {
				b.ReportMetric(float64(n.Load())/float64(w), "msgs/write")
			}
			b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "enqueues/s")
		})
	}
}

// BenchmarkEnqueueSerial is one caller: one fsync per enqueue, the floor
// group commit improves on.
func BenchmarkEnqueueSerial(b *testing.B) {
	s, _ := openTemp(b, Options{DedupeSweepInterval: -1})
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprint("m", i)
		if _, err := s.Enqueue(ctx, queue.Batch{DedupeKey: id, Messages: []queue.Message{benchMsg(id, i%100)}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNextAck drains a pre-filled queue of 1,000 conversations with 64
// workers, each ack fsync'd (shared by group commit).
func BenchmarkNextAck(b *testing.B) {
	s, _ := openTemp(b, Options{DedupeSweepInterval: -1})
	ctx := context.Background()
	const batch = 1000
	for i := 0; i < b.N; i += batch {
		var msgs []queue.Message
		for j := i; j < min(i+batch, b.N); j++ {
			msgs = append(msgs, benchMsg(fmt.Sprint("m", j), j%1000))
		}
		if _, err := s.Enqueue(ctx, queue.Batch{Messages: msgs}); err != nil {
			b.Fatal(err)
		}
	}
	var left atomic.Int64
	left.Store(int64(b.N))
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
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
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkDeliveredEnd is BenchmarkNextAck with the chat record a
// delivery stores: PutChat then Ack (two commits waited on in turn) against
// AckWithChat (one).
func BenchmarkDeliveredEnd(b *testing.B) {
	for _, combined := range []bool{false, true} {
		name := "PutChat+Ack"
		if combined {
			name = "AckWithChat"
		}
		b.Run(name, func(b *testing.B) {
			s, _ := openTemp(b, Options{DedupeSweepInterval: -1})
			ctx := context.Background()
			const batch = 1000
			for i := 0; i < b.N; i += batch {
				var msgs []queue.Message
				for j := i; j < min(i+batch, b.N); j++ {
					msgs = append(msgs, benchMsg(fmt.Sprint("m", j), j%1000))
				}
				if _, err := s.Enqueue(ctx, queue.Batch{Messages: msgs}); err != nil {
					b.Fatal(err)
				}
			}
			var left atomic.Int64
			left.Store(int64(b.N))
			commits := s.commits.Load()
			b.ResetTimer()
			var wg sync.WaitGroup
			for range 64 {
				wg.Go(func() {
					for left.Add(-1) >= 0 {
						l, err := s.Next(ctx)
						if err != nil {
							b.Error(err)
							return
						}
						m := l.Message()
						st, err := s.GetChat(ctx, m.Route, m.ConversationKey)
						if err != nil {
							b.Error(err)
							return
						}
						st.ChatID, st.Messages = "chat-"+m.ConversationKey, st.Messages+1
						if combined {
							err = l.(*lease).AckWithChat(ctx, m.Route, m.ConversationKey, st)
						} else if err = s.PutChat(ctx, m.Route, m.ConversationKey, st); err == nil {
							err = l.Ack(ctx)
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(s.commits.Load()-commits)/float64(b.N), "commits/msg")
		})
	}
}

func BenchmarkEncodeMessage(b *testing.B) {
	m := benchMsg("0198c5e2-7f0c-7a3e-9d7e-2f4a1b3c5d6e", 1)
	m.EnqueuedAt = time.Now()
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = encodeMessage(buf[:0], &m)
	}
}

// BenchmarkAppendFrame encodes a log frame of a 1,000-message batch into
// a fresh buffer, as a group's first write does.
func BenchmarkAppendFrame(b *testing.B) {
	e := walEntry{lsn: 1}
	for i := range 1000 {
		m := benchMsg(fmt.Sprintf("0198c5e2-7f0c-7a3e-9d7e-%012d", i), i)
		m.EnqueuedAt = time.Now()
		e.msgs = append(e.msgs, m)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = appendFrame(nil, &e)
	}
}

func BenchmarkDecodeMessage(b *testing.B) {
	m := benchMsg("0198c5e2-7f0c-7a3e-9d7e-2f4a1b3c5d6e", 1)
	m.EnqueuedAt = time.Now()
	v := encodeMessage(nil, &m)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeMessage(v); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLargeQueueMemory fills a store with a million messages in a thousand
// conversations, reopens it, and checks that the in-memory index stays
// small. It takes minutes and a gigabyte of disk: set RELAYD_BIG_QUEUE=1.
func TestLargeQueueMemory(t *testing.T) {
	if os.Getenv("RELAYD_BIG_QUEUE") == "" {
		t.Skip("set RELAYD_BIG_QUEUE=1 to run the one-million-message test")
	}
	const total, convs, batch = 1_000_000, 1000, 5000
	s, path := openTemp(t, Options{DedupeSweepInterval: -1})
	ctx := context.Background()
	start := time.Now()
	for i := 0; i < total; i += batch {
		msgs := make([]queue.Message, 0, batch)
		for j := i; j < i+batch; j++ {
			msgs = append(msgs, benchMsg(fmt.Sprint("m", j), j%convs))
		}
		if _, err := s.Enqueue(ctx, queue.Batch{DedupeKey: fmt.Sprint("d", i), Messages: msgs}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("filled %d messages in %v; %s", total, time.Since(start), procStatus())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	t.Logf("closed: %s", procStatus())
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	start = time.Now()
	s = openAt(t, path, Options{DedupeSweepInterval: -1})
	t.Logf("reopened in %v", time.Since(start))
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc)
	fi, _ := os.Stat(path)
	t.Logf("file %d MiB; live heap %d KiB; %s", fi.Size()>>20, heap>>10, procStatus())
	if heap > 32<<20 {
		t.Errorf("live heap %d MiB with %d messages in %d conversations", heap>>20, total, convs)
	}
	if st := mustStats(t, s); st.Ready+st.Delayed != total || st.Ready != convs {
		t.Fatalf("stats %+v", st)
	}
	// Enqueue stays fast with a deep queue.
	start = time.Now()
	for i := range 200 {
		id := fmt.Sprint("late", i)
		if _, err := s.Enqueue(ctx, queue.Batch{DedupeKey: id, Messages: []queue.Message{benchMsg(id, i%convs)}}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("200 serial enqueues on a deep queue: %v each", time.Since(start)/200)
}

// procStatus reports the resident set split into anonymous memory and
// mapped file pages (bbolt's mmap).
func procStatus() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ""
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS") || strings.HasPrefix(line, "RssAnon") || strings.HasPrefix(line, "RssFile") {
			out = append(out, strings.Join(strings.Fields(line), " "))
		}
	}
	return strings.Join(out, ", ")
}
