package daemon_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/relayd/relayd/internal/history"
	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/queue/natsq/natstest"
	ghfake "github.com/relayd/relayd/internal/reply/fake"
)

// A CI failure's turn is answered by the agent, and the answer becomes a
// comment on the commit or pull request of the run, on either backend;
// the event's page shows the reply.
func TestReplyEndToEnd(t *testing.T) {
	t.Run("bbolt", func(t *testing.T) { testReplyEndToEnd(t, false) })
	t.Run("nats", func(t *testing.T) { testReplyEndToEnd(t, true) })
}

func testReplyEndToEnd(t *testing.T, onNATS bool) {
	const answer = "The failure is a flaky test in auth_test.go."
	f := fake.New(fake.Options{Keys: []string{testKey}, Reply: func(string, string) string { return answer }})
	api := httptest.NewServer(f)
	defer api.Close()
	gh := ghfake.NewGitHub(ghfake.GitHubOptions{Open: true})
	ghSrv := httptest.NewServer(gh)
	defer ghSrv.Close()
	cfg := writeConfig(t, t.TempDir(), api.URL, `    reply:
      - type: github_comment
        token: ghp_e2eReplyToken0000000000000000000000
        api_url: `+ghSrv.URL+`
    reply_template: "Agent says: {{ .reply }}"
`)
	if onNATS {
		_, url := natstest.RunServer(t)
		data, _ := os.ReadFile(cfg)
		i := strings.Index(string(data), "storage:")
		j := strings.Index(string(data), "operator:")
		nats := "storage:\n  backend: nats\n  nats: {url: \"" + url + "\", stream: RPL, partitions: 2}\n"
		if err := os.WriteFile(cfg, []byte(string(data[:i])+nats+string(data[j:])), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h := startDaemon(t, cfg)
	// A route with reply sinks shows its dead replies at zero from the
	// first scrape, so an alert on their increase sees the first one.
	for _, series := range []string{
		`relayd_dead_letters_total{reason="auth",route="ci-failures"} 0`,
		`relayd_replies_total{outcome="dead",route="ci-failures",sink="github_comment"} 0`,
	} {
		if m := h.get("/metrics"); !strings.Contains(m, series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
	if a := h.post("workflow_run", "d-1", workflowRun(t, "octo/one", "failure")); a.Status != http.StatusAccepted {
		t.Fatalf("post: %+v", a)
	}
	waitFor(t, "the comment", func() bool { return len(gh.Comments()) == 1 })
	c := gh.Comments()[0]
	if c.Repo != "octo/one" || c.Body != "Agent says: "+answer || (c.Number == 0 && c.SHA == "") {
		t.Fatalf("comment = %+v", c)
	}
	var rec history.Record
	waitFor(t, "the reply on the event's page", func() bool {
		return getJSON(t, h.admin+"/admin/events/d-1", &rec) == http.StatusOK && len(rec.Routes) == 1 &&
			len(rec.Routes[0].Replies) == 1 && rec.Routes[0].Replies[0].Outcome == history.ReplySent
	})
	if r := rec.Routes[0].Replies[0]; r.Sink != "github_comment" || !strings.HasPrefix(r.Target, "octo/one") {
		t.Fatalf("reply outcome = %+v", r)
	}
	if n := len(delivered(f)); n != 1 {
		t.Fatalf("%d turns delivered, want 1", n)
	}
}
