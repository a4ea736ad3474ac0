package daemon_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/prompt"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/queue/natsq/natstest"
)

// A CI matrix failing: the events of one repository that are due together
// reach the agent as one turn rendered by the batch template.
func TestEndToEndCoalescedTurn(t *testing.T) {
	f := fake.New(fake.Options{Keys: []string{testKey}})
	f.SetDown(true) // the turns wait (and are retried) until every event is in
	api := httptest.NewServer(f)
	defer api.Close()
	dir := t.TempDir()
	cfg := writeConfig(t, dir, api.URL, `    coalesce: {max_events: 20}
    turn_limit: {turns: 5, per: 1h}
    batch_template: |
      {{ len .events }} failures on {{ .conversation }} ({{ .route }}):
      {{ range .events }}* {{ .delivery }}
      {{ end }}
`)
	h := startDaemon(t, cfg)
	const n = 5
	for i := range n {
		if a := h.post("workflow_run", fmt.Sprintf("m-%d", i), workflowRun(t, "acme/app", "failure")); a.Status != http.StatusAccepted {
			t.Fatalf("event %d: %+v", i, a)
		}
	}
	waitFor(t, "the events to wait in their conversation", func() bool {
		chats := h.chats()
		return len(chats) == 1 && chats[0].Waiting != nil && *chats[0].Waiting == n
	})
	f.SetDown(false)
	waitFor(t, "a delivery", func() bool { return len(delivered(f)) >= 1 })
	waitFor(t, "the queue to drain", func() bool {
		chats := h.chats()
		return len(chats) == 1 && chats[0].Waiting != nil && *chats[0].Waiting == 0
	})
	got := delivered(f)
	if len(got) != 1 {
		t.Fatalf("%d turns delivered, want one", len(got))
	}
	// The turn starts the chat: the preamble comes once, before the whole turn.
	want := prompt.DefaultPreamble + "\n\n5 failures on acme/app (ci-failures):\n* m-0\n* m-1\n* m-2\n* m-3\n* m-4\n\n"
	if got[0].Text != want {
		t.Fatalf("turn text\n%q\nwant\n%q", got[0].Text, want)
	}
	if c := h.chats()[0]; len(c.Turns) != 1 || c.LimitedUntil != nil {
		t.Errorf("chat %+v, want one turn recorded and no hold", c)
	}
	metrics := h.get("/metrics")
	for _, line := range []string{
		`relayd_turns_total{route="ci-failures"} 1`,
		`relayd_turn_events_sum{route="ci-failures"} 5`,
	} {
		if !strings.Contains(metrics, line) {
			t.Errorf("metrics lack %s", line)
		}
	}
}

// On JetStream, a turn gathered by reading ahead of the partition's head
// leaves out what is superseded: a check that changed state four times is
// sent once, in its newest state.
func TestNATSSupersededInTurn(t *testing.T) {
	_, url := natstest.RunServer(t)
	f := fake.New(fake.Options{Keys: []string{testKey}})
	f.SetDown(true)
	api := httptest.NewServer(f)
	defer api.Close()
	cfg := natsConfig(t, t.TempDir(), api.URL, url)
	appendFile(t, cfg, `    coalesce: {max_events: 20}
    supersede: '"same"'
`)
	h := startDaemon(t, cfg)
	const n = 4
	for i := range n {
		if a := h.post("workflow_run", fmt.Sprintf("n-%d", i), workflowRun(t, "acme/app", "failure")); a.Status != http.StatusAccepted {
			t.Fatalf("event %d: %+v", i, a)
		}
	}
	// Two failed attempts that began after the last event was stored: the
	// second's turn was formed with every event in.
	posted := time.Now()
	waitFor(t, "two attempts after the events were stored", func() bool {
		k := 0
		for _, r := range f.Requests() {
			if r.Start.After(posted) {
				k++
			}
		}
		return k >= 2
	})
	f.SetDown(false)
	waitFor(t, "a delivery", func() bool { return len(delivered(f)) >= 1 })
	waitFor(t, "the superseded events to be counted", func() bool {
		return strings.Contains(h.get("/metrics"), fmt.Sprintf(`relayd_messages_superseded_total{route="ci-failures"} %d`, n-1))
	})
	got := delivered(f)
	if len(got) != 1 || !strings.Contains(got[0].Text, "CI failed on acme/app") || strings.Contains(got[0].Text, "events:") {
		t.Fatalf("delivered %+v, want the newest event alone", got)
	}
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) get(path string) string {
	h.t.Helper()
	resp, err := http.Get(h.admin + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String()
}

func (h *harness) chats() []queue.Chat {
	h.t.Helper()
	var out struct {
		Chats []queue.Chat `json:"chats"`
	}
	if err := json.Unmarshal([]byte(h.get("/admin/chats")), &out); err != nil {
		h.t.Fatal(err)
	}
	return out.Chats
}
