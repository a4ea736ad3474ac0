package main

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/history"
	"github.com/relayd/relayd/internal/operator/fake"
)

func TestEventsCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	f := fake.New(fake.Options{Keys: []string{cliKey}})
	api := httptest.NewServer(f)
	defer api.Close()
	cfg := writeKindsConfig(t, api.URL)
	c := startServe(t, cfg)
	t.Setenv("OPERATOR_API_KEY", cliKey)
	t.Setenv("GITHUB_WEBHOOK_SECRET", cliSecret)

	if out, errOut, code := runCLI(t, "send", "-c", cfg, "--url", c.public, "--source", "github", "--delivery", "cli-1"); code != 0 {
		t.Fatalf("send: %s %s", out, errOut)
	}
	var page history.Page
	deadline := time.Now().Add(30 * time.Second)
	for len(page.Events) == 0 || page.Events[0].Routes[0].Outcome != history.Delivered {
		out, errOut, code := runCLI(t, "events", "list", "--route", "gh", "--admin", c.admin, "-o", "json")
		if code != 0 || json.Unmarshal([]byte(out), &page) != nil {
			t.Fatalf("events list -o json: exit %d %s %s", code, out, errOut)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no delivered event listed: %+v", page)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out, _, code := runCLI(t, "events", "list", "--admin", c.admin); code != 0 || !strings.Contains(out, "cli-1") || !strings.Contains(out, "gh=delivered") {
		t.Errorf("events list: exit %d\n%s", code, out)
	}
	out, errOut, code := runCLI(t, "events", "show", "cli-1", "--admin", c.admin)
	var rec history.Record
	if code != 0 || json.Unmarshal([]byte(out), &rec) != nil || rec.Body == "" || rec.Routes[0].Reply == "" {
		t.Errorf("events show: exit %d %s %s", code, out, errOut)
	}
	if out, errOut, code := runCLI(t, "events", "replay", "cli-1", "--admin", c.admin); code != 0 || !strings.Contains(out, "cli-1.replay-1") {
		t.Errorf("events replay: exit %d %s %s", code, out, errOut)
	}
	tpl := filepath.Join(t.TempDir(), "t.tmpl")
	if err := os.WriteFile(tpl, []byte("tried {{ .delivery }}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := runCLI(t, "dry-run", "--route", "gh", "--template-file", tpl, "--event", "cli-1", "--admin", c.admin); code != 0 || !strings.Contains(out, "tried cli-1") {
		t.Errorf("dry-run: exit %d %s %s", code, out, errOut)
	}
	if _, _, code := runCLI(t, "dry-run", "--route", "gh", "--admin", c.admin); code != 2 {
		t.Errorf("dry-run without events: exit %d, want 2", code)
	}
}

// A listing whose pages come back short follows next until it has the
// events asked for or the history ends.
func TestFillPageFollowsShortPages(t *testing.T) {
	// The history, newest first, as pages of at most two matches each,
	// some empty, the way a filtered listing reads its window.
	pages := map[string]history.Page{
		"":  {Events: []history.Record{{ID: "9"}}, Next: "8"},
		"8": {Events: []history.Record{}, Next: "5"},
		"5": {Events: []history.Record{{ID: "4"}, {ID: "3"}}, Next: "3"},
		"3": {Events: []history.Record{{ID: "1"}}},
	}
	tests := []struct {
		limit    int
		want     string
		wantNext string
		calls    int
	}{
		{1, "[9]", "8", 1},
		{3, "[9 4 3]", "3", 3},
		{10, "[9 4 3 1]", "", 4},
	}
	for _, tt := range tests {
		calls := 0
		page, err := fillPage(tt.limit, "", func(before string, n int) (history.Page, error) {
			calls++
			p := pages[before]
			if len(p.Events) > n {
				p.Events, p.Next = p.Events[:n], p.Events[n-1].ID
			}
			return p, nil
		})
		var ids []string
		for _, r := range page.Events {
			ids = append(ids, r.ID)
		}
		if err != nil || fmt.Sprint(ids) != tt.want || page.Next != tt.wantNext || calls != tt.calls {
			t.Errorf("limit %d: %v next %q in %d calls (err %v), want %s next %q in %d", tt.limit, ids, page.Next, calls, err, tt.want, tt.wantNext, tt.calls)
		}
	}
}
