package ingest_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Duplicates and ingest durations are counted by source; a rejected
// request's log line names the remote address; events that match no route
// and unparseable bodies stay below info.
func TestIngestObservability(t *testing.T) {
	r := newRig(t, "100")
	body := []byte(`{"ref":"refs/heads/main","repository":{"full_name":"octo/repo"}}`)
	h := signed(t, "github", []string{ghSecret}, body, "")
	h.Set("X-GitHub-Event", "push")
	h.Set("X-GitHub-Delivery", "obs-1")
	for i, want := range []int{http.StatusAccepted, http.StatusOK} {
		if rep := r.do(t, "POST", "/hooks/github", h, bytes.NewReader(body)); rep.status != want {
			t.Fatalf("post %d: %d %s", i+1, rep.status, rep.raw)
		}
	}
	if got := testutil.ToFloat64(r.m.Duplicates.WithLabelValues("github")); got != 1 {
		t.Errorf("relayd_duplicates_total{github} = %v, want 1", got)
	}
	if got := testutil.CollectAndCount(r.m.IngestDuration); got != 1 {
		t.Errorf("relayd_ingest_duration_seconds has %d series, want 1 (github)", got)
	}

	bad := http.Header{"X-Github-Event": {"push"}, "X-Hub-Signature-256": {"sha256=00"}}
	if rep := r.do(t, "POST", "/hooks/github", bad, bytes.NewReader(body)); rep.status != http.StatusUnauthorized {
		t.Fatalf("bad signature: %d", rep.status)
	}
	var rejected string
	for _, line := range strings.Split(r.logs.String(), "\n") {
		if strings.Contains(line, `"webhook rejected"`) {
			rejected = line
		}
	}
	if !strings.Contains(rejected, `"remote":"127.0.0.1:`) {
		t.Errorf("rejection log line lacks the remote address: %q", rejected)
	}

	// No route (the events route filters on ce.source) and a 400: not at info.
	ce := http.Header{"Content-Type": {"application/cloudevents+json"}}
	if rep := r.do(t, "POST", "/hooks/ce", ce, strings.NewReader(`{"specversion":"1.0","id":"x","source":"/other","type":"t"}`)); rep.status != http.StatusOK {
		t.Fatalf("unrouted event: %d %s", rep.status, rep.raw)
	}
	if rep := r.do(t, "POST", "/hooks/ce", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(`{`)); rep.status != http.StatusBadRequest {
		t.Fatalf("broken JSON: %d %s", rep.status, rep.raw)
	}
	for _, line := range strings.Split(r.logs.String(), "\n") {
		if strings.Contains(line, `"source":"events"`) {
			t.Errorf("logged at info or above: %s", line)
		}
	}
}
