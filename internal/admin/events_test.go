package admin_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/relayd/relayd/internal/admin"
)

// A backend that keeps no history says so rather than answering empty.
func TestEventsWithoutHistory(t *testing.T) {
	srv := httptest.NewServer(admin.New(admin.Options{Token: func() string { return "tok" }}))
	defer srv.Close()
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/admin/events"},
		{http.MethodGet, "/admin/events/d-1"},
		{http.MethodPost, "/admin/events/d-1/replay"},
		{http.MethodPost, "/admin/dry-run"},
	} {
		code, body := do(t, tc.method, srv.URL+tc.path)
		if code != http.StatusNotImplemented || !strings.Contains(body["error"].(map[string]any)["message"].(string), "bbolt") {
			t.Errorf("%s %s: %d %v", tc.method, tc.path, code, body)
		}
	}
	// The token still guards them.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/admin/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without the token: %d", resp.StatusCode)
	}
}
