package console_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

type client struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newClient(t *testing.T, base string) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

func (c *client) do(method, path string, form url.Values, hdr http.Header) (*http.Response, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, c.base+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token in the page")
	}
	return m[1]
}

// Every page is escaped and carries the strict headers.
func TestPagesEscapeAndHeaders(t *testing.T) {
	r := startRelay(t, "")
	evil := r.seed("")
	rec, _ := r.event(evil, "")
	c := newClient(t, r.admin)
	for _, path := range []string{"/ui/", "/ui/events/" + rec.ID, "/ui/events/" + url.PathEscape(evil), "/ui/dead", "/ui/chats",
		"/ui/dry-run", "/ui/events/no-such-event"} {
		resp, body := c.do("GET", path, nil, nil)
		want := http.StatusOK
		if strings.Contains(path, "no-such") {
			want = http.StatusNotFound
		}
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
		for k, v := range map[string]string{
			"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
		} {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("GET %s: %s = %q, want %q", path, k, got, v)
			}
		}
		for _, raw := range []string{"<script>window", "<img src=x", `href="javascript:`} {
			if strings.Contains(body, raw) {
				t.Errorf("GET %s: the payload %q is in the page unescaped", path, raw)
			}
		}
	}
	_, page := c.do("GET", "/ui/events/"+rec.ID, nil, nil)
	for _, want := range []string{"&lt;script&gt;window.pwned=1", "delivered", "rerun after the fix", "ci-failures"} {
		if !strings.Contains(page, want) {
			t.Errorf("event page lacks %q", want)
		}
	}
	// A CSRF token from the page is needed to replay; without one the
	// request is refused and nothing is sent.
	before := delivered(r.fake)
	if resp, _ := c.do("POST", "/ui/replay", url.Values{"id": {rec.ID}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("replay without CSRF: %d, want 403", resp.StatusCode)
	}
	tok := csrfOf(t, page)
	if resp, _ := c.do("POST", "/ui/replay", url.Values{"id": {rec.ID}, "csrf": {tok}}, http.Header{"Origin": {"http://evil.example"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("replay from another origin: %d, want 403", resp.StatusCode)
	}
	resp, _ := c.do("POST", "/ui/replay", url.Values{"id": {rec.ID}, "csrf": {tok}}, nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), ".replay-1") {
		t.Fatalf("replay: %d to %q, want 303 to the .replay-1 delivery", resp.StatusCode, resp.Header.Get("Location"))
	}
	waitFor(t, "the replay's delivery", func() bool { return delivered(r.fake) == before+1 })
	// The list pages by `before`.
	_, first := c.do("GET", "/ui/?limit=3", nil, nil)
	next := regexp.MustCompile(`href="/ui/\?([^"]*before=[^"]+)" id="older"`).FindStringSubmatch(first)
	if next == nil {
		t.Fatal("no Older link on a full page")
	}
	if resp, body := c.do("GET", "/ui/?"+strings.ReplaceAll(next[1], "&amp;", "&"), nil, nil); resp.StatusCode != 200 || !strings.Contains(body, "data-id=") {
		t.Errorf("older page: %d", resp.StatusCode)
	}
}

func TestLoginSessionAndCSRF(t *testing.T) {
	r := startRelay(t, "  admin_token: "+adminToken)
	r.post("workflow_run", "d-1", workflowRun(t, "octo/api", "failure"), nil)
	rec := r.waitDelivered("d-1", adminToken)
	c := newClient(t, r.admin)

	if resp, _ := c.do("GET", "/ui/", nil, nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" {
		t.Fatalf("no session: %d to %q, want 303 to /ui/login", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := c.do("GET", "/ui/events.json", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("feed without session: %d, want 401", resp.StatusCode)
	}
	if resp, _ := c.do("POST", "/ui/replay", url.Values{"id": {rec.ID}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("replay without session: %d, want 403", resp.StatusCode)
	}
	if resp, _ := c.do("POST", "/ui/login", url.Values{"token": {"wrong"}}, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong token: %d, want 401", resp.StatusCode)
	}
	resp, _ := c.do("POST", "/ui/login", url.Values{"token": {adminToken}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	ck := resp.Cookies()
	if len(ck) != 1 || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode || ck[0].Path != "/ui/" {
		t.Fatalf("session cookie %+v, want one HttpOnly SameSite=Strict cookie on /ui/", ck)
	}
	resp, page := c.do("GET", "/ui/events/"+rec.ID, nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Log out") {
		t.Fatalf("event page after login: %d", resp.StatusCode)
	}
	tok := csrfOf(t, page)
	for name, form := range map[string]url.Values{
		"no token":    {"id": {rec.ID}},
		"wrong token": {"id": {rec.ID}, "csrf": {tok[:len(tok)-2] + "xx"}},
	} {
		if resp, _ := c.do("POST", "/ui/replay", form, nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("replay, %s: %d, want 403", name, resp.StatusCode)
		}
	}
	if resp, _ := c.do("POST", "/ui/chats/reset", url.Values{"route": {"ci-failures"}, "key": {"octo/api"}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("reset without CSRF: %d, want 403", resp.StatusCode)
	}
	if resp, _ := c.do("POST", "/ui/replay", url.Values{"id": {rec.ID}}, http.Header{"X-Csrf-Token": {tok}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("replay with the CSRF header: %d, want 303", resp.StatusCode)
	}
	// Another browser's session token is not this one's.
	other := newClient(t, r.admin)
	other.do("POST", "/ui/login", url.Values{"token": {adminToken}}, nil)
	_, otherPage := other.do("GET", "/ui/chats", nil, nil)
	if csrfOf(t, otherPage) == tok {
		t.Error("two sessions share a CSRF token")
	}
	if resp, _ := c.do("POST", "/ui/logout", url.Values{"csrf": {tok}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("logout: %d", resp.StatusCode)
	}
	if resp, _ := c.do("GET", "/ui/", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after logout: %d, want 303 to the login", resp.StatusCode)
	}
	// Guessing the token is slowed down.
	limited := false
	for i := 0; i < 30 && !limited; i++ {
		resp, _ := c.do("POST", "/ui/login", url.Values{"token": {"guess"}}, nil)
		limited = resp.StatusCode == http.StatusTooManyRequests
	}
	if !limited {
		t.Error("30 wrong tokens in a row were all answered: no limit on guessing")
	}
}
