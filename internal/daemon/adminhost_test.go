package daemon_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/relayd/relayd/internal/operator/fake"
)

// adminConfig writes the test config with the admin listener on addr and
// serverExtra added to the server block.
func adminConfig(t *testing.T, apiURL, addr, serverExtra string) string {
	t.Helper()
	cfg := writeConfig(t, t.TempDir(), apiURL, "")
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(data), `  admin_listen: "127.0.0.1:0"`+"\n", `  admin_listen: "`+addr+`"`+"\n"+serverExtra, 1)
	if err := os.WriteFile(cfg, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// getHost does a GET to the admin listener over 127.0.0.1 with the Host
// header set to host ("" keeps the address), as a browser that resolved
// host to loopback would; it returns the status and the error code, if any.
func getHost(t *testing.T, h *harness, host, path, token string) (int, string) {
	t.Helper()
	_, port, err := net.SplitHostPort(h.d.AdminAddr())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:"+port+path, nil)
	if host != "" {
		req.Host = strings.ReplaceAll(host, "PORT", port)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Error.Code
}

type hostCase struct {
	host, path string
	want       int
}

func checkHosts(t *testing.T, h *harness, token string, cases []hostCase) {
	t.Helper()
	for _, c := range cases {
		code, errCode := getHost(t, h, c.host, c.path, token)
		if code != c.want {
			t.Errorf("GET %s with Host %q = %d, want %d", c.path, c.host, code, c.want)
		}
		if c.want == http.StatusMisdirectedRequest && errCode != "misdirected_request" {
			t.Errorf("GET %s with Host %q: error code %q, want misdirected_request", c.path, c.host, errCode)
		}
	}
}

// On loopback without a token the admin listener answers only loopback
// literals, localhost and server.admin_hosts (which follow a reload): a
// DNS-rebinding page cannot reach it, Prometheus via 127.0.0.1 still can.
func TestAdminHostCheckOnLoopback(t *testing.T) {
	api := httptest.NewServer(fake.New(fake.Options{Keys: []string{testKey}}))
	defer api.Close()
	cfg := adminConfig(t, api.URL, "127.0.0.1:0", "")
	h := startDaemon(t, cfg)
	checkHosts(t, h, "", []hostCase{
		{"", "/metrics", http.StatusOK}, // what a Prometheus scrape of 127.0.0.1:PORT sends
		{"", "/healthz", http.StatusOK},
		{"", "/readyz", http.StatusOK},
		{"127.0.0.1:PORT", "/metrics", http.StatusOK},
		{"localhost:PORT", "/admin/dlq", http.StatusOK},
		{"[::1]:PORT", "/healthz", http.StatusOK},
		{"rebind.evil.example:PORT", "/admin/dlq", http.StatusMisdirectedRequest},
		{"rebind.evil.example:PORT", "/admin/config", http.StatusMisdirectedRequest},
		{"rebind.evil.example:PORT", "/metrics", http.StatusMisdirectedRequest},
		{"relayd.internal:PORT", "/admin/dlq", http.StatusMisdirectedRequest},
		{"10.0.0.5:PORT", "/healthz", http.StatusMisdirectedRequest},
	})
	code, _ := getHost(t, h, "rebind.evil.example:PORT", "/admin/reload", "")
	if code == http.StatusOK {
		t.Errorf("a rebinding page could reload")
	}

	data, _ := os.ReadFile(cfg)
	withHosts := strings.Replace(string(data), "  shutdown_timeout: 5s\n", "  shutdown_timeout: 5s\n  admin_hosts: [relayd.internal]\n", 1)
	if err := os.WriteFile(cfg, []byte(withHosts), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.d.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	checkHosts(t, h, "", []hostCase{
		{"relayd.internal:PORT", "/admin/dlq", http.StatusOK},
		{"127.0.0.1:PORT", "/metrics", http.StatusOK},
		{"rebind.evil.example:PORT", "/admin/dlq", http.StatusMisdirectedRequest},
	})
}

// With a token on loopback, or on a non-loopback listener, the token is the
// protection and any Host is answered, unless server.admin_hosts is set:
// then names must be listed, while IP literals (probes and scrapes by pod
// IP) and localhost still pass.
func TestAdminHostCheckWithTokenOrWide(t *testing.T) {
	api := httptest.NewServer(fake.New(fake.Options{Keys: []string{testKey}}))
	defer api.Close()
	const token = "s3cret-admin"
	t.Run("loopback with token", func(t *testing.T) {
		h := startDaemon(t, adminConfig(t, api.URL, "127.0.0.1:0", "  admin_token: "+token+"\n"))
		checkHosts(t, h, token, []hostCase{
			{"proxy.example:PORT", "/admin/dlq", http.StatusOK},
			{"proxy.example:PORT", "/metrics", http.StatusOK},
		})
		if code, _ := getHost(t, h, "proxy.example:PORT", "/admin/dlq", ""); code != http.StatusUnauthorized {
			t.Errorf("without the token = %d, want 401", code)
		}
	})
	t.Run("wildcard without hosts", func(t *testing.T) {
		h := startDaemon(t, adminConfig(t, api.URL, "0.0.0.0:0", ""))
		checkHosts(t, h, "", []hostCase{
			{"anything.example:PORT", "/admin/dlq", http.StatusOK},
			{"", "/metrics", http.StatusOK},
		})
	})
	t.Run("wildcard with hosts", func(t *testing.T) {
		h := startDaemon(t, adminConfig(t, api.URL, "0.0.0.0:0", "  admin_token: "+token+"\n  admin_hosts: [relayd.internal]\n"))
		checkHosts(t, h, token, []hostCase{
			{"relayd.internal:PORT", "/admin/dlq", http.StatusOK},
			{"10.0.0.5:PORT", "/healthz", http.StatusOK}, // a kubelet probe by pod IP
			{"10.0.0.5:PORT", "/metrics", http.StatusOK}, // a PodMonitor scrape
			{"", "/metrics", http.StatusOK},
			{"localhost:PORT", "/readyz", http.StatusOK},
			{"anything.example:PORT", "/admin/dlq", http.StatusMisdirectedRequest},
			{"anything.example:PORT", "/metrics", http.StatusMisdirectedRequest},
		})
	})
}
