package reply_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/reply"
	"github.com/relayd/relayd/internal/reply/fake"
	"github.com/relayd/relayd/internal/verify"
)

const (
	ghToken     = "ghp_replyTestToken0123456789abcdefABCDEF"
	hookSecret  = "whsec_cmVwbHktdGVzdC1zZWNyZXQtMTIzNDU2Nzg="
	prRepo      = "Codertocat/Hello-World"
	testCommit  = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
	fixedSecond = 1_800_000_000
)

var clock = time.Unix(fixedSecond, 0)

func now() time.Time { return clock }

// sink compiles one sink of a route.
func sink(t *testing.T, s reply.Spec) reply.Sink {
	t.Helper()
	sk, err := reply.NewSink(s, reply.Options{Now: now})
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	return sk
}

func githubServer(t *testing.T, o fake.GitHubOptions) (*fake.GitHub, *httptest.Server) {
	t.Helper()
	if o.Tokens == nil {
		o.Tokens = []string{ghToken}
	}
	if o.Now == nil {
		o.Now = now
	}
	g := fake.NewGitHub(o)
	g.AddIssue(prRepo, 2)
	g.AddCommit(prRepo, testCommit)
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv
}

func issuePost(text string) reply.Post {
	return reply.Post{ID: "rpl_1", Route: "r", Type: reply.TypeGitHub, Target: &reply.Target{Repo: prRepo, Number: 2}, Text: text}
}

// replyError asserts err is a *reply.Error of the given class.
func replyError(t *testing.T, err error, status int, reason string, retry bool, wait time.Duration) *reply.Error {
	t.Helper()
	var e *reply.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *reply.Error", err, err)
	}
	if e.Status != status || e.Reason != reason || e.Retryable != retry || e.RetryAfter != wait {
		t.Errorf("error = %+v (%v)\nwant status %d reason %s retryable %v after %s", e, e, status, reason, retry, wait)
	}
	if r, w := reply.Classify(err); r != retry || w != wait {
		t.Errorf("Classify = %v, %s", r, w)
	}
	return e
}

func noSecrets(t *testing.T, err error, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if err != nil && strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains a secret", err)
		}
	}
}

func TestGitHubCommentOnIssueAndCommit(t *testing.T) {
	g, srv := githubServer(t, fake.GitHubOptions{})
	sk := sink(t, reply.Spec{Type: reply.TypeGitHub, Token: ghToken, APIURL: srv.URL})
	ctx := context.Background()
	if err := sk.Send(ctx, issuePost("The failure is a flaky test in auth_test.go.")); err != nil {
		t.Fatalf("issue comment: %v", err)
	}
	commit := reply.Post{Type: reply.TypeGitHub, Target: &reply.Target{Repo: prRepo, SHA: testCommit}, Text: "On this commit."}
	if err := sk.Send(ctx, commit); err != nil {
		t.Fatalf("commit comment: %v", err)
	}
	got := g.Comments()
	if len(got) != 2 {
		t.Fatalf("comments = %+v", got)
	}
	if c := got[0]; c.Repo != prRepo || c.Number != 2 || c.Body != "The failure is a flaky test in auth_test.go." || c.Scheme != "Bearer" {
		t.Errorf("issue comment = %+v", c)
	}
	if c := got[1]; c.Repo != prRepo || c.SHA != testCommit || c.Number != 0 || c.Body != "On this commit." {
		t.Errorf("commit comment = %+v", c)
	}
}

func TestGitHubEnterpriseAPIURL(t *testing.T) {
	g, srv := githubServer(t, fake.GitHubOptions{PathPrefix: "/api/v3"})
	for _, api := range []string{srv.URL + "/api/v3", srv.URL + "/api/v3/"} {
		sk := sink(t, reply.Spec{Type: reply.TypeGitHub, Token: ghToken, APIURL: api})
		if err := sk.Send(context.Background(), issuePost("hello")); err != nil {
			t.Fatalf("%s: %v", api, err)
		}
	}
	if n := len(g.Comments()); n != 2 {
		t.Errorf("comments = %d, want 2", n)
	}
	// Without the prefix the Enterprise server has nothing there.
	sk := sink(t, reply.Spec{Type: reply.TypeGitHub, Token: ghToken, APIURL: srv.URL})
	replyError(t, sk.Send(context.Background(), issuePost("x")), 404, reply.ReasonNotFound, false, 0)
}

func TestGitHubErrors(t *testing.T) {
	reset := clock.Add(90 * time.Second)
	tests := []struct {
		name   string
		token  string
		setup  func(*fake.GitHub)
		post   reply.Post
		status int
		reason string
		retry  bool
		wait   time.Duration
	}{
		{"bad token", "ghp_wrongToken", nil, issuePost("x"), 401, reply.ReasonAuth, false, 0},
		{"missing pull request", ghToken, nil,
			reply.Post{Type: reply.TypeGitHub, Target: &reply.Target{Repo: prRepo, Number: 99}, Text: "x"}, 404, reply.ReasonNotFound, false, 0},
		{"unknown repository", ghToken, nil,
			reply.Post{Type: reply.TypeGitHub, Target: &reply.Target{Repo: "o/nope", Number: 2}, Text: "x"}, 404, reply.ReasonNotFound, false, 0},
		{"empty body", ghToken, nil, issuePost(""), 422, reply.ReasonInvalid, false, 0},
		{"unknown commit", ghToken, nil,
			reply.Post{Type: reply.TypeGitHub, Target: &reply.Target{Repo: prRepo, SHA: runSHA}, Text: "x"}, 422, reply.ReasonInvalid, false, 0},
		// x-ratelimit-reset is 90s ahead; one second more for clock skew.
		{"primary rate limit", ghToken, func(g *fake.GitHub) { g.ExhaustRateLimit(reset) }, issuePost("x"), 403, reply.ReasonRateLimited, true, 91 * time.Second},
		{"primary rate limit, 429", ghToken, func(g *fake.GitHub) {
			f := fake.GitHubRateLimited(reset)
			f.Status = 429
			g.FailNext(1, f)
		}, issuePost("x"), 429, reply.ReasonRateLimited, true, 91 * time.Second},
		{"secondary rate limit with retry-after", ghToken, func(g *fake.GitHub) { g.FailNext(1, fake.GitHubSecondaryLimit(403, 30*time.Second)) },
			issuePost("x"), 403, reply.ReasonRateLimited, true, 30 * time.Second},
		{"secondary rate limit naming no time", ghToken, func(g *fake.GitHub) { g.FailNext(1, fake.GitHubSecondaryLimit(403, 0)) },
			issuePost("x"), 403, reply.ReasonRateLimited, true, time.Minute},
		{"429 naming no time", ghToken, func(g *fake.GitHub) { g.FailNext(1, fake.GitHubSecondaryLimit(429, 0)) },
			issuePost("x"), 429, reply.ReasonRateLimited, true, time.Minute},
		{"forbidden", ghToken, func(g *fake.GitHub) {
			g.FailNext(1, fake.Fault{Status: 403, Body: `{"message":"Resource not accessible by integration"}`})
		}, issuePost("x"), 403, reply.ReasonAuth, false, 0},
		{"issues disabled", ghToken, func(g *fake.GitHub) {
			g.FailNext(1, fake.Fault{Status: 410, Body: `{"message":"Issues are disabled for this repo"}`})
		}, issuePost("x"), 410, reply.ReasonGone, false, 0},
		{"server error", ghToken, func(g *fake.GitHub) { g.FailNext(1, fake.GitHubServerError(502)) }, issuePost("x"), 502, reply.ReasonServerError, true, 0},
		{"unavailable with retry-after", ghToken, func(g *fake.GitHub) {
			g.FailNext(1, fake.Fault{Status: 503, Header: map[string]string{"Retry-After": "12"}})
		}, issuePost("x"), 503, reply.ReasonServerError, true, 12 * time.Second},
		{"no target", ghToken, nil, reply.Post{Type: reply.TypeGitHub, Text: "x"}, 0, reply.ReasonBadPost, false, 0},
		{"unsafe target", ghToken, nil,
			reply.Post{Type: reply.TypeGitHub, Target: &reply.Target{Repo: "o/r/../../x", Number: 1}, Text: "x"}, 0, reply.ReasonBadPost, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, srv := githubServer(t, fake.GitHubOptions{})
			if tt.setup != nil {
				tt.setup(g)
			}
			sk := sink(t, reply.Spec{Type: reply.TypeGitHub, Token: tt.token, APIURL: srv.URL})
			err := sk.Send(context.Background(), tt.post)
			replyError(t, err, tt.status, tt.reason, tt.retry, tt.wait)
			noSecrets(t, err, tt.token)
			if n := len(g.Comments()); n != 0 {
				t.Errorf("%d comments created", n)
			}
		})
	}
}

func TestGitHubRateLimitCountsRequests(t *testing.T) {
	g, srv := githubServer(t, fake.GitHubOptions{RateLimit: 2})
	sk := sink(t, reply.Spec{Type: reply.TypeGitHub, Token: ghToken, APIURL: srv.URL})
	for i := range 2 {
		if err := sk.Send(context.Background(), issuePost("x")); err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
	}
	// The fake's window resets an hour after its first request.
	replyError(t, sk.Send(context.Background(), issuePost("x")), 403, reply.ReasonRateLimited, true, time.Hour+time.Second)
	if n := len(g.Comments()); n != 2 {
		t.Errorf("comments = %d, want 2", n)
	}
}

func TestGitHubTokenScheme(t *testing.T) {
	_, srv := githubServer(t, fake.GitHubOptions{})
	for _, tt := range []struct {
		auth string
		want int
	}{
		{"Bearer " + ghToken, 201},
		{"token " + ghToken, 201},
		{"", 401},
		{"Basic " + ghToken, 401},
		{"Bearer nope", 401},
	} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/repos/"+prRepo+"/issues/2/comments", strings.NewReader(`{"body":"hi"}`))
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%q: status %d, want %d", tt.auth, resp.StatusCode, tt.want)
		}
		if tt.want == 201 && (out["body"] != "hi" || out["html_url"] == nil || resp.Header.Get("Location") == "" ||
			resp.Header.Get("X-RateLimit-Remaining") == "") {
			t.Errorf("%q: created %v, headers %v", tt.auth, out, resp.Header)
		}
	}
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	var mu sync.Mutex
	var leaked []string
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		leaked = append(leaked, r.Header.Get("Authorization"))
		mu.Unlock()
	}))
	defer elsewhere.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	sk := sink(t, reply.Spec{Type: reply.TypeGitHub, Token: ghToken, APIURL: redirect.URL})
	replyError(t, sk.Send(context.Background(), issuePost("x")), 307, reply.ReasonRejected, false, 0)
	mu.Lock()
	defer mu.Unlock()
	if len(leaked) > 0 {
		t.Errorf("the redirect was followed: %q", leaked)
	}
}

func TestNetworkErrorsAreRetryable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	secretPath := "/services/T1/B1/secretPathToken"
	for _, s := range []reply.Spec{
		{Type: reply.TypeGitHub, Token: ghToken, APIURL: u},
		{Type: reply.TypeSlack, URL: u + secretPath},
		{Type: reply.TypeWebhook, URL: u + secretPath + "?token=q", Secret: hookSecret},
	} {
		err := sink(t, s).Send(context.Background(), issuePost("x"))
		replyError(t, err, 0, reply.ReasonNetwork, true, 0)
		noSecrets(t, err, ghToken, "secretPathToken", "token=q", hookSecret)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := sink(t, reply.Spec{Type: reply.TypeSlack, URL: u + secretPath}).Send(ctx, issuePost("x"))
	replyError(t, err, 0, reply.ReasonCanceled, true, 0)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("%v is not context.Canceled", err)
	}
}

func slackServer(t *testing.T) (*fake.Slack, string) {
	t.Helper()
	s := fake.NewSlack(fake.SlackOptions{})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.URL + s.Path()
}

func TestSlack(t *testing.T) {
	s, u := slackServer(t)
	sk := sink(t, reply.Spec{Type: reply.TypeSlack, URL: u})
	if err := sk.Send(context.Background(), reply.Post{Type: reply.TypeSlack, Text: "Fix: <b> & <!channel>"}); err != nil {
		t.Fatal(err)
	}
	got := s.Messages()
	// Slack gives <, > and & meaning; the agent's text must not ping a channel.
	if len(got) != 1 || got[0].Text != "Fix: &lt;b&gt; &amp; &lt;!channel&gt;" {
		t.Errorf("messages = %+v", got)
	}
}

func TestSlackErrors(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(*fake.Slack)
		path   string // instead of the webhook's
		status int
		reason string
		code   string
		retry  bool
		wait   time.Duration
	}{
		{"rate limited", func(s *fake.Slack) { s.FailNext(1, fake.SlackRateLimited(7*time.Second)) }, "", 429, reply.ReasonRateLimited, "rate_limited", true, 7 * time.Second},
		{"webhook removed", func(s *fake.Slack) { s.Remove() }, "", 404, reply.ReasonNotFound, "no_service", false, 0},
		{"wrong webhook", nil, "/services/T0/B0/wrong", 404, reply.ReasonNotFound, "no_service", false, 0},
		{"invalid payload", func(s *fake.Slack) { s.FailNext(1, fake.SlackError(400, "invalid_payload")) }, "", 400, reply.ReasonInvalid, "invalid_payload", false, 0},
		{"channel archived", func(s *fake.Slack) { s.FailNext(1, fake.SlackError(410, "channel_is_archived")) }, "", 410, reply.ReasonGone, "channel_is_archived", false, 0},
		{"action prohibited", func(s *fake.Slack) { s.FailNext(1, fake.SlackError(403, "action_prohibited")) }, "", 403, reply.ReasonAuth, "action_prohibited", false, 0},
		{"server error", func(s *fake.Slack) { s.FailNext(1, fake.SlackError(500, "rollup_error")) }, "", 500, reply.ReasonServerError, "rollup_error", true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, u := slackServer(t)
			if tt.setup != nil {
				tt.setup(s)
			}
			if tt.path != "" {
				u = strings.TrimSuffix(u, s.Path()) + tt.path
			}
			err := sink(t, reply.Spec{Type: reply.TypeSlack, URL: u}).Send(context.Background(), reply.Post{Type: reply.TypeSlack, Text: "x"})
			e := replyError(t, err, tt.status, tt.reason, tt.retry, tt.wait)
			if e.Code != tt.code {
				t.Errorf("code = %q, want %q", e.Code, tt.code)
			}
			noSecrets(t, err, "XXXXXXXXXXXXXXXXXXXXXXXX", "wrong")
			if n := len(s.Messages()); n != 0 {
				t.Errorf("%d messages posted", n)
			}
		})
	}
}

// recorder is a webhook receiver that keeps what it gets and answers as told.
type recorder struct {
	mu     sync.Mutex
	reqs   []*verify.Request
	status []int
	header map[string]string
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, &verify.Request{Header: r.Header.Clone(), Body: body, Now: clock})
	status := 204
	if len(rc.status) > 0 {
		status, rc.status = rc.status[0], rc.status[1:]
	}
	rc.mu.Unlock()
	for k, v := range rc.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(status)
}

func TestWebhookIsSignedAsStandardWebhooks(t *testing.T) {
	rc := &recorder{status: []int{503, 200}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	sk := sink(t, reply.Spec{Type: reply.TypeWebhook, URL: srv.URL + "/agent-replies", Secret: hookSecret})
	p := reply.Post{
		ID: "rpl_abc", Route: "ci-failures", Type: reply.TypeWebhook, Conversation: "octo-org/octo-repo",
		ChatID: "chat_1", Deliveries: []string{"d1", "d2"}, Text: "The cause is X.", Partial: true,
	}
	replyError(t, sk.Send(context.Background(), p), 503, reply.ReasonServerError, true, 0)
	if err := sk.Send(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	v, err := verify.New(verify.Spec{Type: "standard-webhooks", Secrets: []string{hookSecret}})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := verify.New(verify.Spec{Type: "standard-webhooks", Secrets: []string{"whsec_b3RoZXItc2VjcmV0"}})
	if len(rc.reqs) != 2 {
		t.Fatalf("requests = %d", len(rc.reqs))
	}
	for i, r := range rc.reqs {
		if _, err := v.Verify(r); err != nil {
			t.Errorf("attempt %d: signature does not verify: %v", i+1, err)
		}
		if _, err := other.Verify(r); err == nil {
			t.Errorf("attempt %d verifies with another secret", i+1)
		}
		// The id is the post's on every attempt, so receivers can drop repeats.
		if id := r.Header.Get("Webhook-Id"); id != "rpl_abc" {
			t.Errorf("attempt %d: webhook-id = %q", i+1, id)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("content-type = %q", ct)
		}
	}
	var body map[string]any
	if err := json.Unmarshal(rc.reqs[1].Body, &body); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"route": "ci-failures", "conversation": "octo-org/octo-repo", "chat_id": "chat_1",
		"deliveries": []any{"d1", "d2"}, "reply": "The cause is X.", "partial": true,
	}
	if !jsonEqual(body, want) {
		t.Errorf("body = %v\nwant %v", body, want)
	}
	// A tampered body fails verification.
	tampered := *rc.reqs[1]
	tampered.Body = []byte(strings.Replace(string(tampered.Body), "X.", "Y.", 1))
	if _, err := v.Verify(&tampered); err == nil {
		t.Error("tampered body verifies")
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestWebhookErrors(t *testing.T) {
	tests := []struct {
		status int
		header map[string]string
		reason string
		retry  bool
		wait   time.Duration
	}{
		{429, map[string]string{"Retry-After": "7"}, reply.ReasonRateLimited, true, 7 * time.Second},
		{429, nil, reply.ReasonRateLimited, true, 0},
		{503, map[string]string{"Retry-After": clock.Add(20 * time.Second).UTC().Format(http.TimeFormat)}, reply.ReasonServerError, true, 20 * time.Second},
		{500, nil, reply.ReasonServerError, true, 0},
		{408, nil, reply.ReasonTimeout, true, 0},
		{400, nil, reply.ReasonRejected, false, 0},
		{401, nil, reply.ReasonRejected, false, 0},
		{404, nil, reply.ReasonRejected, false, 0},
		{410, nil, reply.ReasonRejected, false, 0},
		{301, map[string]string{"Location": "/elsewhere"}, reply.ReasonRejected, false, 0},
	}
	for _, tt := range tests {
		rc := &recorder{status: []int{tt.status}, header: tt.header}
		srv := httptest.NewServer(rc)
		sk := sink(t, reply.Spec{Type: reply.TypeWebhook, URL: srv.URL, Secret: hookSecret})
		err := sk.Send(context.Background(), reply.Post{Type: reply.TypeWebhook, Text: "x"})
		replyError(t, err, tt.status, tt.reason, tt.retry, tt.wait)
		noSecrets(t, err, hookSecret)
		srv.Close()
	}
}

func TestFakeGitHubControlOverHTTP(t *testing.T) {
	_, srv := githubServer(t, fake.GitHubOptions{})
	sk := sink(t, reply.Spec{Type: reply.TypeGitHub, Token: ghToken, APIURL: srv.URL})
	post := func(path, body string) int {
		resp, err := http.Post(srv.URL+"/_fake/"+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("faults", `{"next":1,"fault":{"status":502,"body":"{\"message\":\"Server Error\"}"}}`); code != 204 {
		t.Fatalf("POST faults: %d", code)
	}
	replyError(t, sk.Send(context.Background(), issuePost("x")), 502, reply.ReasonServerError, true, 0)
	if err := sk.Send(context.Background(), issuePost("x")); err != nil {
		t.Fatalf("after the fault: %v", err)
	}
	if code := post("rate-limit", `{"reset_in":"2m"}`); code != 204 {
		t.Fatalf("POST rate-limit: %d", code)
	}
	replyError(t, sk.Send(context.Background(), issuePost("x")), 403, reply.ReasonRateLimited, true, 2*time.Minute+time.Second)
	for _, bad := range []struct{ path, body string }{
		{"faults", `{"next":0,"fault":{"status":500}}`},
		{"faults", `{"next":1}`},
		{"rate-limit", `{"reset_in":"soon"}`},
	} {
		if code := post(bad.path, bad.body); code != 400 {
			t.Errorf("POST %s %s: %d, want 400", bad.path, bad.body, code)
		}
	}
	resp, err := http.Get(srv.URL + "/_fake/comments")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var comments []fake.Comment
	if err := json.NewDecoder(resp.Body).Decode(&comments); err != nil || len(comments) != 1 || comments[0].Number != 2 {
		t.Errorf("GET comments = %+v, %v", comments, err)
	}
}

func TestFakeSlackPayloadChecks(t *testing.T) {
	s, u := slackServer(t)
	for _, tt := range []struct {
		body, want string
		status     int
	}{
		{`not json`, "invalid_payload", 400},
		{`{"username":"x"}`, "no_text", 400},
		{`{"blocks":[{"type":"section"}]}`, "ok", 200},
	} {
		resp, err := http.Post(u, "application/json", strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || string(b) != tt.want {
			t.Errorf("%s: %d %q, want %d %q", tt.body, resp.StatusCode, b, tt.status, tt.want)
		}
	}
	if n := len(s.Messages()); n != 1 {
		t.Errorf("messages = %d, want 1", n)
	}
}
