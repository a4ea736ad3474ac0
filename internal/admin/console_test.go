package admin_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relayd/relayd/internal/admin"
)

// The console is mounted under /ui/ behind the Host check, not behind the
// bearer token: it has its own login.
func TestConsoleMounted(t *testing.T) {
	var got []string
	ui := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.Path)
		w.WriteHeader(http.StatusTeapot)
	})
	srv := httptest.NewServer(admin.New(admin.Options{
		Gatherer: prometheus.NewRegistry(), Token: func() string { return "tok" }, Console: ui,
		Hosts: func() admin.HostPolicy { return admin.HostPolicy{Loopback: true} },
	}))
	defer srv.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct {
		method, path, host string
		want               int
	}{
		{"GET", "/ui/", "", http.StatusTeapot},
		{"GET", "/ui/events/abc", "", http.StatusTeapot},
		{"POST", "/ui/replay", "", http.StatusTeapot},
		{"GET", "/ui", "", http.StatusMovedPermanently},
		{"GET", "/ui/", "evil.example:9090", http.StatusMisdirectedRequest},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
		if tt.host != "" {
			req.Host = tt.host
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s (Host %q): %d, want %d", tt.method, tt.path, tt.host, resp.StatusCode, tt.want)
		}
	}
	if len(got) != 3 || got[0] != "GET /ui/" || got[1] != "GET /ui/events/abc" || got[2] != "POST /ui/replay" {
		t.Errorf("the console saw %q", got)
	}
}
