package daemon_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/queue/natsq/natstest"
	"github.com/relayd/relayd/internal/xtest"
)

// natsConfig is baseConfig on the JetStream backend.
func natsConfig(t *testing.T, dir, operatorURL, natsURL string) string {
	t.Helper()
	path := writeConfig(t, dir, operatorURL, "")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(data), "storage:\n  path: "+filepath.Join(dir, "data", "relayd.db")+"\n",
		"storage:\n  backend: nats\n  nats: {url: \""+natsURL+"\", stream: RELAYDTEST, partitions: 8}\n", 1)
	if cfg == string(data) {
		t.Fatal("natsConfig: storage section not found")
	}
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Two replicas on one JetStream share the queue and the conversation
// memory; one stops in the middle and the other finishes the work, each
// conversation in order and one request at a time.
func TestNATSReplicas(t *testing.T) {
	_, url := natstest.RunServer(t)
	f := fake.New(fake.Options{Keys: []string{testKey}})
	f.SetLatency(0, 10*time.Millisecond)
	api := httptest.NewServer(f)
	defer api.Close()
	cfg := natsConfig(t, t.TempDir(), api.URL, url)
	a := startDaemon(t, cfg)
	b := startDaemon(t, cfg)

	const convs, per = 6, 6
	sent, aStopped := 0, false
	for i := range per {
		for c := range convs {
			h := a
			if (i+c)%2 == 1 || aStopped {
				h = b
			}
			body := workflowRun(t, fmt.Sprintf("nats/c%d", c), "failure")
			var doc map[string]any
			_ = json.Unmarshal(body, &doc)
			doc["workflow_run"].(map[string]any)["head_branch"] = fmt.Sprintf("seq-%02d", i)
			body, _ = json.Marshal(doc)
			if r := h.post("workflow_run", fmt.Sprintf("n-%d-%d", c, i), body); r.Status != http.StatusAccepted {
				t.Fatalf("event %d/%d: %+v", c, i, r)
			}
			sent++
		}
		if i == per/2 {
			a.stop() // one replica leaves; the other takes over its partitions
			aStopped = true
		}
	}
	waitFor(t, "all messages delivered by the remaining replica", func() bool { return len(delivered(f)) >= sent })
	// B counts the conversations A started too.
	want := fmt.Sprintf(`relayd_conversations{route="ci-failures"} %d`, convs)
	waitFor(t, "replica B's metrics counting every conversation", func() bool {
		_, text := get(t, b.admin+"/metrics", "")
		return strings.Contains(text, want)
	})
	b.stop()

	if n := f.Overlaps(); n != 0 {
		t.Errorf("%d overlapping requests in one chat across replicas", n)
	}
	byRepo := map[string][]string{}
	chats := map[string]map[string]bool{}
	for _, r := range delivered(f) {
		repo := strings.TrimPrefix(strings.SplitN(xtest.Prompt(r.Text), " (", 2)[0], "CI failed on ")
		seq := strings.SplitN(strings.SplitN(xtest.Prompt(r.Text), "(", 2)[1], ")", 2)[0]
		byRepo[repo] = append(byRepo[repo], seq)
		if chats[repo] == nil {
			chats[repo] = map[string]bool{}
		}
		chats[repo][r.AssignedChatID] = true
	}
	for repo, seqs := range byRepo {
		for i, s := range seqs {
			if want := fmt.Sprintf("seq-%02d", i); s != want {
				t.Errorf("%s: message %d was %s, want %s (order %v)", repo, i, s, want, seqs)
				break
			}
		}
		if len(chats[repo]) != 1 {
			t.Errorf("%s spread over %d chats; replicas must share one conversation memory", repo, len(chats[repo]))
		}
	}
}

// Two replicas on one JetStream keep operator.rate_limit together: the
// Operator sees at most per_second requests a second from both.
func TestNATSReplicasShareRateLimit(t *testing.T) {
	_, url := natstest.RunServer(t)
	f := fake.New(fake.Options{Keys: []string{testKey}})
	api := httptest.NewServer(f)
	defer api.Close()
	path := natsConfig(t, t.TempDir(), api.URL, url)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	limited := strings.Replace(string(data), "rate_limit: {per_second: 1000, burst: 1000}", "rate_limit: {per_second: 10, burst: 1}", 1)
	if limited == string(data) {
		t.Fatal("operator.rate_limit not found in the config")
	}
	if err := os.WriteFile(path, []byte(limited), 0o600); err != nil {
		t.Fatal(err)
	}
	a, b := startDaemon(t, path), startDaemon(t, path)
	const n = 20
	for i := range n {
		h := []*harness{a, b}[i%2]
		if r := h.post("workflow_run", fmt.Sprintf("rl-%d", i), workflowRun(t, fmt.Sprintf("rl/c%d", i), "failure")); r.Status != http.StatusAccepted {
			t.Fatalf("event %d: %+v", i, r)
		}
	}
	waitFor(t, "every event delivered", func() bool { return len(delivered(f)) >= n })
	var at []time.Time
	for _, r := range f.Requests() {
		at = append(at, r.Start)
	}
	slices.SortFunc(at, func(x, y time.Time) int { return x.Compare(y) })
	// A request may reach the Operator a little after its slot, next to the
	// one after it: slack for that, and no more.
	const slack = 400 * time.Millisecond
	for i := range at {
		for j := i; j < len(at); j++ {
			w := at[j].Sub(at[i])
			if m, allowed := j-i+1, 1+10*(w+slack).Seconds(); float64(m) > allowed {
				t.Fatalf("%d requests within %v, want at most %.1f at 10/s with a burst of 1", m, w, allowed)
			}
		}
	}
	if span, want := at[len(at)-1].Sub(at[0]), time.Duration(n-1)*100*time.Millisecond-slack; span < want {
		t.Errorf("%d requests took %v, want at least %v", n, span, want)
	}
}

// While NATS is down ingest answers 503 with Retry-After and /readyz
// fails; when it is back, relayd recovers by itself and loses nothing.
func TestNATSOutage(t *testing.T) {
	srv, url := natstest.RunServer(t)
	f := fake.New(fake.Options{Keys: []string{testKey}})
	api := httptest.NewServer(f)
	defer api.Close()
	h := startDaemon(t, natsConfig(t, t.TempDir(), api.URL, url))

	accepted := 0
	if r := h.post("workflow_run", "out-0", workflowRun(t, "nats/out", "failure")); r.Status != http.StatusAccepted {
		t.Fatalf("before the outage: %+v", r)
	}
	accepted++

	srv.Shutdown()
	srv.WaitForShutdown()
	waitFor(t, "503 during the outage", func() bool {
		return h.post("workflow_run", fmt.Sprintf("out-down-%d", time.Now().UnixNano()), workflowRun(t, "nats/out", "failure")).Status == http.StatusServiceUnavailable
	})
	if code, _ := get(t, h.admin+"/readyz", ""); code != http.StatusServiceUnavailable {
		t.Errorf("readyz during the outage = %d, want 503", code)
	}

	natstest.Restart(t, srv)
	waitFor(t, "ingest recovers", func() bool {
		r := h.post("workflow_run", fmt.Sprintf("out-up-%d", accepted), workflowRun(t, "nats/out", "failure"))
		if r.Status == http.StatusAccepted {
			accepted++
			return true
		}
		return false
	})
	for i := range 5 {
		if r := h.post("workflow_run", fmt.Sprintf("out-after-%d", i), workflowRun(t, "nats/out", "failure")); r.Status != http.StatusAccepted {
			t.Fatalf("after the outage: %+v", r)
		}
		accepted++
	}
	waitFor(t, "every accepted event delivered", func() bool { return len(delivered(f)) >= accepted })
	waitFor(t, "ready again", func() bool {
		code, _ := get(t, h.admin+"/readyz", "")
		return code == http.StatusOK
	})
}
