package config

import (
	"slices"
	"strings"
	"testing"
)

func TestAdminHosts(t *testing.T) {
	c := mustParse(t, "server:\n  admin_hosts: [relayd-admin.internal, Admin.Example.COM., 10.0.0.5, '[::1]', '2001:db8::1', my_host]\n"+minimal, nil)
	want := []string{"relayd-admin.internal", "Admin.Example.COM.", "10.0.0.5", "[::1]", "2001:db8::1", "my_host"}
	if !slices.Equal(c.Server.AdminHosts, want) {
		t.Errorf("admin_hosts = %q, want %q", c.Server.AdminHosts, want)
	}
	if c := mustParse(t, minimal, nil); len(c.Server.AdminHosts) != 0 {
		t.Errorf("default admin_hosts = %q, want none", c.Server.AdminHosts)
	}
}

func TestAdminHostsErrors(t *testing.T) {
	const secretish = "hostvalue-from-env"
	tests := []struct {
		name, hosts string
		vars        map[string]string
		bad         []int // indexes named in the error
	}{
		{"with port", "[ok.example, 'admin.example:9090']", nil, []int{1}},
		{"with scheme", "['http://admin.example']", nil, []int{0}},
		{"with path", "['admin.example/x']", nil, []int{0}},
		{"wildcard", "['*.example.com']", nil, []int{0}},
		{"empty", "['', ok]", nil, []int{0}},
		{"empty label", "['a..b']", nil, []int{0}},
		{"label too long", "['" + strings.Repeat("a", 64) + ".example']", nil, []int{0}},
		{"leading hyphen", "['-a.example']", nil, []int{0}},
		{"half bracketed", "['[::1']", nil, []int{0}},
		{"bracketed port", "['[::1]:9090']", nil, []int{0}},
		{"from env", "[ok, '${ADMIN_HOST}']", map[string]string{"ADMIN_HOST": secretish + ":1"}, []int{1}},
		{"not a list", "admin.example", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte("server:\n  admin_hosts: "+tt.hosts+"\n"+minimal), t.TempDir(), env(tt.vars))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), "server.admin_hosts") {
				t.Errorf("error does not name server.admin_hosts: %v", err)
			}
			for _, i := range tt.bad {
				if !strings.Contains(err.Error(), index("server.admin_hosts", i)+" (line 2): not a host name") {
					t.Errorf("error does not name entry %d: %v", i, err)
				}
			}
			if n := strings.Count(err.Error(), "\n") + 1; tt.bad != nil && n != len(tt.bad) {
				t.Errorf("%d errors, want %d: %v", n, len(tt.bad), err)
			}
			if strings.Contains(err.Error(), secretish) {
				t.Errorf("error shows the value: %v", err)
			}
		})
	}
}
