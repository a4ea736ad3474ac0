package daemon_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/relayd/relayd/internal/history"
	"github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/queue/natsq/natstest"
)

func postJSON(t *testing.T, url string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	resp, err := http.Post(url, "application/json", rd)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatalf("%s: %v: %s", url, err, data)
		}
	}
	return resp.StatusCode
}

func TestHistoryAdminAPI(t *testing.T) {
	t.Run("bbolt", func(t *testing.T) { testHistoryAdminAPI(t, false) })
	t.Run("nats", func(t *testing.T) { testHistoryAdminAPI(t, true) })
}

func testHistoryAdminAPI(t *testing.T, onNATS bool) {
	f := fake.New(fake.Options{Keys: []string{testKey}})
	api := httptest.NewServer(f)
	defer api.Close()
	cfg := writeConfig(t, t.TempDir(), api.URL, "")
	if onNATS {
		_, url := natstest.RunServer(t)
		data, _ := os.ReadFile(cfg)
		i := strings.Index(string(data), "storage:")
		j := strings.Index(string(data), "operator:")
		nats := "storage:\n  backend: nats\n  nats: {url: \"" + url + "\", stream: HIST, partitions: 2}\n"
		if err := os.WriteFile(cfg, []byte(string(data[:i])+nats+string(data[j:])), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h := startDaemon(t, cfg)

	if a := h.post("workflow_run", "d-1", workflowRun(t, "octo/one", "failure")); a.Status != http.StatusAccepted {
		t.Fatalf("post: %+v", a)
	}
	if a := h.post("workflow_run", "d-2", workflowRun(t, "octo/one", "success")); a.Status != http.StatusOK {
		t.Fatalf("post filtered: %+v", a)
	}
	waitFor(t, "delivery", func() bool { return len(delivered(f)) == 1 })

	// The event's page: the turn sent, the agent's reply, the chat.
	var rec history.Record
	waitFor(t, "the delivered outcome", func() bool {
		return getJSON(t, h.admin+"/admin/events/d-1", &rec) == http.StatusOK &&
			len(rec.Routes) == 1 && rec.Routes[0].Outcome == history.Delivered
	})
	ro := rec.Routes[0]
	if ro.Reply == "" || ro.ChatID != delivered(f)[0].AssignedChatID || !strings.Contains(ro.Turn, "CI failed on octo/one") || rec.Body == "" {
		t.Fatalf("record %+v", rec)
	}

	var page history.Page
	waitFor(t, "both events listed", func() bool {
		return getJSON(t, h.admin+"/admin/events", &page) == http.StatusOK && len(page.Events) == 2
	})
	// bbolt lists by arrival; JetStream by last activity, which d-1's
	// delivery may have moved ahead.
	if !onNATS && page.Events[0].Delivery != "d-2" {
		t.Fatalf("newest first: %+v", page.Events)
	}
	if getJSON(t, h.admin+"/admin/events?outcome=filtered", &page); len(page.Events) != 1 || page.Events[0].Delivery != "d-2" {
		t.Fatalf("filtered: %+v", page.Events)
	}
	if code := getJSON(t, h.admin+"/admin/events/nope", &rec); code != http.StatusNotFound {
		t.Fatalf("missing event: %d", code)
	}

	// Replay: a new delivery past dedupe, delivered again.
	code, body := postJSON(t, h.admin+"/admin/events/d-1/replay", nil)
	if code != http.StatusAccepted || !strings.Contains(string(body), `"delivery":"d-1.replay-1"`) {
		t.Fatalf("replay: %d %s", code, body)
	}
	waitFor(t, "the replay's delivery", func() bool { return len(delivered(f)) == 2 })
	if code, body = postJSON(t, h.admin+"/admin/events/d-1/replay", nil); !strings.Contains(string(body), "d-1.replay-2") {
		t.Fatalf("second replay: %d %s", code, body)
	}

	// Dry run with an edited template and filter: nothing sent.
	code, body = postJSON(t, h.admin+"/admin/dry-run", map[string]any{
		"route": "ci-failures", "template": "edited {{ .body.repository.full_name }}", "filter": "true", "events": []string{"d-1", "d-2"}})
	var dr struct {
		Results []history.Trial `json:"results"`
	}
	if err := json.Unmarshal(body, &dr); code != http.StatusOK || err != nil || len(dr.Results) != 2 {
		t.Fatalf("dry run: %d %s", code, body)
	}
	for _, tr := range dr.Results {
		if !tr.Matched || !strings.Contains(tr.Turn, "edited octo/one") {
			t.Fatalf("trial %+v", tr)
		}
	}
	code, body = postJSON(t, h.admin+"/admin/dry-run", map[string]any{"route": "ci-failures", "last": 10})
	if err := json.Unmarshal(body, &dr); code != http.StatusOK || err != nil || len(dr.Results) < 2 {
		t.Fatalf("dry run of the last events: %d %s", code, body)
	}
	matched := 0
	for _, tr := range dr.Results {
		if tr.Matched {
			matched++
		}
	}
	if matched == 0 || matched == len(dr.Results) {
		t.Fatalf("the route's own filter should take some and not others: %+v", dr.Results)
	}
	if code, _ := postJSON(t, h.admin+"/admin/dry-run", map[string]any{"route": "nope", "last": 1}); code != http.StatusNotFound {
		t.Fatalf("unknown route: %d", code)
	}
	if n := len(delivered(f)); n > 3 {
		t.Fatalf("a dry run sent something: %d deliveries", n)
	}
}
