package admin_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relayd/relayd/internal/admin"
)

func TestHostPolicyAllows(t *testing.T) {
	var (
		loopback      = admin.HostPolicy{Loopback: true}
		loopbackToken = admin.HostPolicy{Loopback: true, Token: true}
		loopbackHosts = admin.HostPolicy{Loopback: true, Token: true, Hosts: []string{"relayd.internal", "Admin.Example.", "[fd00::7]"}}
		loopbackName  = admin.HostPolicy{Loopback: true, Listen: "relayd.local"}
		tokenName     = admin.HostPolicy{Loopback: true, Token: true, Listen: "relayd.local"}
		wide          = admin.HostPolicy{}
		wideHosts     = admin.HostPolicy{Token: true, Hosts: []string{"relayd.internal"}}
	)
	tests := []struct {
		name   string
		policy admin.HostPolicy
		host   string
		want   bool
	}{
		// Loopback, no token: only loopback literals, localhost and names listed.
		{"loopback ip", loopback, "127.0.0.1:9090", true},
		{"loopback ip without port", loopback, "127.0.0.1", true},
		{"loopback range", loopback, "127.1.2.3:9090", true},
		{"loopback v6", loopback, "[::1]:9090", true},
		{"loopback v6 without port", loopback, "[::1]", true},
		{"v4-mapped loopback", loopback, "[::ffff:127.0.0.1]:9090", true},
		{"localhost", loopback, "localhost:9090", true},
		{"localhost any case, trailing dot", loopback, "LocalHost.:9090", true},
		{"no Host (HTTP/1.0)", loopback, "", true},
		{"rebinding name", loopback, "evil.example:9090", false},
		{"rebinding name without port", loopback, "evil.example", false},
		{"subdomain of localhost", loopback, "a.localhost:9090", false},
		{"localhost lookalike", loopback, "localhost.evil.example:9090", false},
		{"other ip literal", loopback, "10.0.0.5:9090", false},
		{"empty host with port", loopback, ":9090", false},
		// The name in the listen address is answered; it does not turn the check on.
		{"listen name", loopbackName, "relayd.local:9090", true},
		{"listen name, case", loopbackName, "Relayd.Local:9090", true},
		{"listen name: other name", loopbackName, "evil.example:9090", false},
		{"listen name with token", tokenName, "evil.example:9090", true},
		// A token protects a loopback listener unless names are listed.
		{"token: any name", loopbackToken, "evil.example:9090", true},
		{"listed name", loopbackHosts, "relayd.internal:9090", true},
		{"listed name, case and dot", loopbackHosts, "admin.example:9090", true},
		{"listed bracketed v6", loopbackHosts, "[fd00::7]:9090", true},
		{"listed: loopback still", loopbackHosts, "127.0.0.1:9090", true},
		{"listed: other name", loopbackHosts, "evil.example:9090", false},
		{"listed: suffix of a listed name", loopbackHosts, "x.relayd.internal:9090", false},
		// Non-loopback: nothing checked without names; with names, any IP literal.
		{"wide: any name", wide, "evil.example:9090", true},
		{"wide listed: pod ip", wideHosts, "10.0.0.5:9090", true},
		{"wide listed: v6 literal", wideHosts, "[2001:db8::5]:9090", true},
		{"wide listed: name", wideHosts, "relayd.internal", true},
		{"wide listed: localhost", wideHosts, "localhost:9090", true},
		{"wide listed: other name", wideHosts, "evil.example:9090", false},
	}
	for _, tt := range tests {
		if got := tt.policy.Allows(tt.host); got != tt.want {
			t.Errorf("%s: %+v.Allows(%q) = %v, want %v", tt.name, tt.policy, tt.host, got, tt.want)
		}
	}
}

// A refused Host gets 421 with the usual error body on every path, known
// or not, before routing and before the token check.
func TestHostRefusedBeforeRouting(t *testing.T) {
	srv := httptest.NewServer(admin.New(admin.Options{
		Gatherer: prometheus.NewRegistry(),
		Token:    func() string { return "tok" },
		Hosts:    func() admin.HostPolicy { return admin.HostPolicy{Loopback: true, Hosts: []string{"ok.example"}} },
	}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		host, path string
		want       int
	}{
		{"evil.example", "/admin/dlq", http.StatusMisdirectedRequest},
		{"evil.example", "/metrics", http.StatusMisdirectedRequest},
		{"evil.example", "/no/such/path", http.StatusMisdirectedRequest},
		{"ok.example", "/healthz", http.StatusOK},
		{"ok.example", "/admin/dlq", http.StatusUnauthorized},
	} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
		req.Host = tc.host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.host, tc.path, resp.StatusCode, tc.want)
		}
		if tc.want == http.StatusMisdirectedRequest && (err != nil || body.Error.Code != "misdirected_request" || body.Error.Message == "") {
			t.Errorf("%s %s: body %+v (%v), want a misdirected_request error", tc.host, tc.path, body, err)
		}
	}
}
