package reliability

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"
)

// TestCrashLoop kills relayd with SIGKILL five times at random moments
// while webhooks arrive and the fake Operator answers with random latency,
// restarting it on the same bbolt file each time. Every delivery answered
// 202 must reach the API; duplicates may only come from requests cut by a
// kill. Each worker holds at most one request in flight and one delivered
// message whose ack is still committing, so there can be at most twice
// operator.concurrency per kill.
func TestCrashLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds relayd and kills it repeatedly")
	}
	const (
		kills       = 5
		concurrency = 8
		senders     = 6
	)
	api := newOperator(t)
	api.SetLatency(0, 30*time.Millisecond)
	cfg := writeConfig(t, settings{db: filepath.Join(t.TempDir(), "data", "relayd.db"), apiURL: api.URL, concurrency: concurrency})

	d := start(t, cfg)
	s := newSender(512)
	s.target(d)
	ctx, stop := context.WithCancel(context.Background())
	wait := s.run(ctx, senders, 20, "crash", 0)

	var inflightAtKills []int64
	for i := range kills {
		time.Sleep(time.Duration(300+rand.IntN(1200)) * time.Millisecond)
		inflightAtKills = append(inflightAtKills, s.inflight.Load())
		d.kill()
		d = start(t, cfg)
		s.target(d)
		t.Logf("kill %d: %d webhooks in flight; %s", i+1, inflightAtKills[i], s.summary())
	}
	time.Sleep(500 * time.Millisecond)
	stop()
	wait()

	accepted := s.acceptedIDs()
	if len(accepted) == 0 {
		t.Fatalf("nothing was accepted: %s", s.summary())
	}
	eventually(t, 90*time.Second, "every accepted delivery to reach the API", func() (bool, string) {
		m := missing(accepted, api.deliveries())
		return len(m) == 0, fmt.Sprintf("%d of %d missing, e.g. %v", len(m), len(accepted), first(m, 5))
	})
	eventually(t, 30*time.Second, "the queue to drain", func() (bool, string) {
		n, err := d.pending()
		return err == nil && n == 0, fmt.Sprintf("pending %d, %v", n, err)
	})
	d.stop()

	dups := 0
	for _, n := range api.deliveries() {
		dups += n - 1
	}
	t.Logf("%s; %d duplicates over %d kills (webhooks in flight at the kills: %v)", s.summary(), dups, kills, inflightAtKills)
	if limit := 2 * concurrency * kills; dups > limit {
		t.Errorf("%d duplicate deliveries, more than the %d messages that can be in flight at %d kills", dups, limit, kills)
	}
	if n := api.Overlaps(); n != 0 {
		t.Errorf("the API saw %d overlapping requests within one conversation", n)
	}
}

func first(ids []string, n int) []string { return ids[:min(n, len(ids))] }
