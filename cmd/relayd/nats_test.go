package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/queue/natsq/natstest"
	"github.com/relayd/relayd/internal/xtest"
)

// Two relayd processes share one JetStream; one is SIGKILLed in the middle.
// Every accepted event is delivered, each conversation in order.
func TestTwoReplicaProcessesOnNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	_, natsURL := natstest.RunServer(t)
	f := fake.New(fake.Options{Keys: []string{cliKey}})
	f.SetLatency(0, 20*time.Millisecond)
	api := httptest.NewServer(f)
	defer api.Close()
	dir := t.TempDir()
	cfg := writeCLIConfig(t, dir, api.URL)
	data, _ := os.ReadFile(cfg)
	natsCfg := strings.Replace(string(data), "storage:\n  path: "+filepath.Join(dir, "data", "relayd.db")+"\n",
		"storage:\n  backend: nats\n  nats: {url: \""+natsURL+"\", stream: TWOPROC, partitions: 4}\n", 1)
	if err := os.WriteFile(cfg, []byte(natsCfg), 0o600); err != nil {
		t.Fatal(err)
	}

	a, b := startServe(t, cfg), startServe(t, cfg)
	const convs, per = 4, 10
	accepted := map[string]bool{}
	killed := false
	for i := range per {
		for c := range convs {
			target := a
			if c%2 == 1 || killed {
				target = b
			}
			d := fmt.Sprintf("k-%d-%02d", c, i)
			if code := target.push(t, d, fmt.Sprintf("two/c%d", c)); code != http.StatusAccepted {
				t.Fatalf("%s answered %d", d, code)
			}
			accepted[d] = true
		}
		if i == per/2 {
			a.cmd.Process.Signal(syscall.SIGKILL)
			a.cmd.Wait()
			killed = true
		}
	}
	// A request cut by the kill comes back after the consumer's AckWait.
	deadline := time.Now().Add(120 * time.Second)
	for {
		got := map[string]bool{}
		for _, r := range f.Requests() {
			// A 409 is a re-send of a message the API had taken from a
			// request the kill cut mid-answer: delivered, as relayd counts it.
			if r.Status >= 200 && r.Status < 300 || r.Status == http.StatusConflict {
				got[strings.Fields(xtest.Prompt(r.Text))[1]] = true
			}
		}
		if len(got) >= len(accepted) {
			break
		}
		if time.Now().After(deadline) {
			var missing []string
			for d := range accepted {
				if !got[d] {
					missing = append(missing, d)
				}
			}
			t.Logf("the surviving replica's log:\n%s", b.Logs())
			t.Fatalf("%d of %d accepted events delivered; missing %v", len(got), len(accepted), missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	b.cmd.Wait()
	if n := f.Overlaps(); n != 0 {
		t.Errorf("%d overlapping requests in one chat across the replicas", n)
	}

	// First deliveries of each conversation are in order; a repeat can only
	// be the request the kill cut, sent again with the same idempotency key.
	seen := map[string]bool{}
	last := map[string]string{}
	for _, r := range f.Requests() {
		if r.Status < 200 || r.Status >= 300 {
			continue
		}
		fields := strings.Fields(xtest.Prompt(r.Text)) // push <delivery> to <repo>
		d, repo := fields[1], fields[3]
		if seen[d] {
			continue
		}
		seen[d] = true
		if d < last[repo] {
			t.Errorf("%s: %s delivered after %s", repo, d, last[repo])
		}
		last[repo] = d
	}
}
