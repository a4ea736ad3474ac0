package verify

import (
	"encoding/base64"
	"net/http"
	"testing"
)

func TestBasic(t *testing.T) {
	c := Spec{Type: "basic", Username: "relay", Secrets: []string{"old-password", "hook password"}}
	v := mustNew(t, c)
	basic := func(cred string) http.Header {
		return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(cred))}}
	}
	cases := []struct {
		name   string
		header http.Header
		reason string
	}{
		{"current password", basic("relay:hook password"), ""},
		{"rotated-out password still listed", basic("relay:old-password"), ""},
		{"password with a colon", nil, ""}, // filled below
		{"lower-case scheme", http.Header{"Authorization": {"basic " + base64.StdEncoding.EncodeToString([]byte("relay:old-password"))}}, ""},

		{"wrong password", basic("relay:hook passwor"), ReasonMismatch},
		{"wrong user", basic("Relay:hook password"), ReasonMismatch},
		{"user and password swapped", basic("hook password:relay"), ReasonMismatch},
		{"empty password", basic("relay:"), ReasonMismatch},
		{"password only", basic(":hook password"), ReasonMismatch},
		{"password with a suffix", basic("relay:hook password\x00"), ReasonMismatch},
		{"no colon", basic("relayhook password"), ReasonMalformed},
		{"not base64", http.Header{"Authorization": {"Basic relay:hook password"}}, ReasonMalformed},
		{"bearer", http.Header{"Authorization": {"Bearer hook password"}}, ReasonMalformed},
		{"no header", http.Header{}, ReasonMissing},
	}
	withColon := mustNew(t, Spec{Type: "basic", Username: "relay", Secrets: []string{"pa:ss"}})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vv, h := v, tc.header
			if h == nil {
				vv, h = withColon, basic("relay:pa:ss")
			}
			_, err := vv.Verify(&Request{Header: h})
			if got := reasonOf(err); got != tc.reason {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.reason)
			}
			checkOutcome(t, err, "hook password", "old-password")
		})
	}
	h := mustSign(t, c, nil, clock)
	if want := basic("relay:old-password").Get("Authorization"); h.Get("Authorization") != want {
		t.Fatalf("Sign = %q, want %q", h.Get("Authorization"), want)
	}
	if got := v.(*basicVerifier).Headers(); len(got) != 1 || got[0] != "Authorization" {
		t.Fatalf("Headers = %v", got)
	}
}

// TestBasicConfig: the user name itself is the config loader's to check.
func TestBasicConfig(t *testing.T) {
	for _, c := range []struct {
		c    Spec
		want string
	}{
		{Spec{Type: "basic", Username: "relay"}, "secrets: at least one secret is required"},
		{Spec{Type: "basic", Username: "relay", Secrets: []string{"p"}, Header: "X-A"}, "header: not used by type basic"},
		{Spec{Type: "bearer", Username: "relay", Secrets: []string{"p"}}, "username: not used by type bearer"},
	} {
		if _, err := New(c.c); err == nil || err.Error() != c.want {
			t.Errorf("New(%+v) = %v, want %s", c.c, err, c.want)
		}
	}
}
