package reliability

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/xtest"
)

// TestCrashLoop kills relayd with SIGKILL five times at random moments
// while webhooks arrive and the fake Operator answers with random latency,
// restarting it on the same bbolt file each time. Every delivery answered
// 202 must reach the API; duplicates may only come from requests cut by a
// kill. Each worker holds at most one turn that is sent and not acked (its
// request in flight, or its ack committing) and at most dispatch.MaxTails
// acks commit in the background, so a kill sends at most
// operator.concurrency + dispatch.MaxTails turns again. An instant API
// with many conversations keeps the workers' acks committing rather than
// their requests in flight, the case that bound is about.
func TestCrashLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds relayd and kills it repeatedly")
	}
	for _, tc := range []struct {
		name       string
		latencyMax time.Duration
		senders    int
		repos      int
	}{
		{name: "slow API", latencyMax: 30 * time.Millisecond, senders: 6, repos: 20},
		{name: "instant API", senders: 12, repos: 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			crashLoop(t, tc.latencyMax, tc.senders, tc.repos)
		})
	}
}

func crashLoop(t *testing.T, latencyMax time.Duration, senders, repos int) {
	const (
		kills       = 5
		concurrency = 8
	)
	api := newOperator(t)
	api.SetLatency(0, latencyMax)
	cfg := writeConfig(t, settings{db: filepath.Join(t.TempDir(), "data", "relayd.db"), apiURL: api.URL, concurrency: concurrency})

	d := start(t, cfg)
	s := newSender(512)
	s.target(d)
	ctx, stop := context.WithCancel(context.Background())
	wait := s.run(ctx, senders, repos, "crash", 0)

	var (
		inflightAtKills []int64
		killAt          []time.Time
	)
	for i := range kills {
		time.Sleep(time.Duration(300+rand.IntN(1200)) * time.Millisecond)
		inflightAtKills = append(inflightAtKills, s.inflight.Load())
		killAt = append(killAt, time.Now())
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
	resent, before := resentByKill(api.Requests(), killAt)
	atAPI := inflightAtAPI(api.Requests(), killAt)
	limit := concurrency + dispatch.MaxTails
	for i := range kills {
		t.Logf("kill %d: %d turns sent again; the API had %d requests in flight", i+1, resent[i], atAPI[i])
		if resent[i] > limit {
			t.Errorf("kill %d: %d turns sent again, more than operator.concurrency (%d) + dispatch.MaxTails (%d)", i+1, resent[i], concurrency, dispatch.MaxTails)
		}
	}
	if before > 0 {
		t.Errorf("%d turns were sent twice before the first kill", before)
	}
	if n := api.Overlaps(); n != 0 {
		t.Errorf("the API saw %d overlapping requests within one conversation", n)
	}
}

// resentByKill counts the taken requests that repeat an earlier one of the
// same delivery, by the last kill sent before the repeat began. A request
// the killed process wrote may still be read by the API after the kill,
// so the times cannot tell which process sent a request; a repeat with no
// kill before it is counted in before.
func resentByKill(rs []fake.Request, killAt []time.Time) (resent []int, before int) {
	resent = make([]int, len(killAt))
	seen := map[string]bool{}
	for _, r := range rs {
		if (r.Status < 200 || r.Status > 299) && r.Status != http.StatusConflict {
			continue
		}
		id, ok := deliveryOf(xtest.Prompt(r.Text))
		if !ok {
			continue
		}
		if !seen[id] {
			seen[id] = true
			continue
		}
		k := -1
		for i, at := range killAt {
			if at.Before(r.Start) {
				k = i
			}
		}
		if k < 0 {
			before++
			continue
		}
		resent[k]++
	}
	return resent, before
}

// inflightAtAPI counts, for each kill, the requests the API had begun and
// not answered when the kill was sent.
func inflightAtAPI(rs []fake.Request, killAt []time.Time) []int {
	n := make([]int, len(killAt))
	for _, r := range rs {
		for i, at := range killAt {
			if r.Start.Before(at) && (r.End.IsZero() || r.End.After(at)) {
				n[i]++
			}
		}
	}
	return n
}

func first(ids []string, n int) []string { return ids[:min(n, len(ids))] }
