package dispatch_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/history"
	"github.com/relayd/relayd/internal/metrics"
	opfake "github.com/relayd/relayd/internal/operator/fake"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/queue/boltq"
	"github.com/relayd/relayd/internal/reply"
	"github.com/relayd/relayd/internal/reply/fake"
	"github.com/relayd/relayd/internal/verify"
)

const (
	ghToken   = "ghp_dispatchReplyTestToken000000000000"
	diagnosis = "The failure is a flaky test in auth_test.go; here is a fix."
	replyRepo = "acme/app"
)

// replyHarness is a harness whose Operator answers with diagnosis and
// whose route "ci" replies to the sinks given.
func replyHarness(t *testing.T, specs ...reply.Spec) *harness {
	t.Helper()
	h := newHarness(t)
	h.fake = opfake.New(opfake.Options{Reply: func(string, string) string { return diagnosis }})
	h.srv.Config.Handler = h.fake
	h.opts.History = h.store
	r, err := reply.Compile("ci", specs, "", reply.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h.settings.Routes = map[string]dispatch.RouteSettings{"ci": {Replier: r}}
	return h
}

func newGitHub(t *testing.T) (*fake.GitHub, reply.Spec) {
	gh := fake.NewGitHub(fake.GitHubOptions{Tokens: []string{ghToken}})
	srv := httptest.NewServer(gh)
	t.Cleanup(srv.Close)
	return gh, reply.Spec{Type: reply.TypeGitHub, Token: ghToken, APIURL: srv.URL}
}

func newSlack(t *testing.T) (*fake.Slack, reply.Spec) {
	sl := fake.NewSlack(fake.SlackOptions{})
	srv := httptest.NewServer(sl)
	t.Cleanup(srv.Close)
	return sl, reply.Spec{Type: reply.TypeSlack, URL: srv.URL + sl.Path()}
}

// prMsg is an event of route ci about pull request n of replyRepo.
func prMsg(conv string, n int64) queue.Message {
	m := newMsg("ci", conv, "CI failed on PR")
	m.ReplyRepo, m.ReplyNumber = replyRepo, n
	return m
}

func (h *harness) replies(sink, outcome string) float64 {
	return testutil.ToFloat64(h.m.Replies.WithLabelValues("ci", sink, outcome))
}

func (h *harness) deadReplies() []queue.DeadLetter {
	var out []queue.DeadLetter
	for _, d := range h.dead() {
		if d.IsReply() {
			out = append(out, d)
		}
	}
	return out
}

func TestReplyGitHubComment(t *testing.T) {
	gh, spec := newGitHub(t)
	gh.AddIssue(replyRepo, 7)
	h := replyHarness(t, spec)
	m := prMsg("a", 7)
	h.enqueueRecorded(m)
	h.start()
	h.waitFor("a comment", func() bool { return len(gh.Comments()) == 1 })
	h.settled()
	c := gh.Comments()[0]
	if c.Repo != replyRepo || c.Number != 7 || c.Body != diagnosis {
		t.Fatalf("comment = %+v", c)
	}
	if n := len(h.chatRequests()); n != 1 {
		t.Errorf("%d chat requests, want 1", n)
	}
	if got := h.replies(reply.TypeGitHub, "sent"); got != 1 {
		t.Errorf("replies sent = %v, want 1", got)
	}
	got := h.outcome(m.Delivery)
	if len(got.Replies) != 1 || got.Replies[0].Outcome != history.ReplySent || got.Replies[0].Target != "acme/app#7" ||
		got.Replies[0].Sink != reply.TypeGitHub || got.Outcome != history.Delivered {
		t.Errorf("history = %+v", got)
	}
}

// A primary rate limit (403, x-ratelimit-remaining 0) is waited out until
// x-ratelimit-reset, then the comment goes.
func TestReplyGitHubRateLimitRetried(t *testing.T) {
	gh, spec := newGitHub(t)
	gh.AddIssue(replyRepo, 7)
	reset := time.Now().Truncate(time.Second).Add(time.Second)
	gh.FailNext(1, fake.GitHubRateLimited(reset))
	h := replyHarness(t, spec)
	h.enqueue(prMsg("a", 7))
	h.start()
	h.waitFor("a comment", func() bool { return len(gh.Comments()) == 1 })
	h.settled()
	if c := gh.Comments()[0]; c.CreatedAt.Before(reset) {
		t.Errorf("comment created at %v, before the reset %v", c.CreatedAt, reset)
	}
	if h.replies(reply.TypeGitHub, "retry") != 1 || h.replies(reply.TypeGitHub, "sent") != 1 {
		t.Errorf("replies retry %v sent %v, want 1 and 1", h.replies(reply.TypeGitHub, "retry"), h.replies(reply.TypeGitHub, "sent"))
	}
	if n := len(h.chatRequests()); n != 1 {
		t.Errorf("%d chat requests, want 1: the turn is not sent again", n)
	}
}

// A missing pull request is a permanent 404: the reply is dead-lettered
// with kind reply, the turn is not sent again, and a replay once the pull
// request exists posts it.
func TestReplyGitHubMissingPRDead(t *testing.T) {
	gh, spec := newGitHub(t)
	h := replyHarness(t, spec)
	m := prMsg("a", 9)
	h.enqueueRecorded(m)
	h.start()
	h.waitFor("a dead reply", func() bool { return len(h.deadReplies()) == 1 })
	h.settled()
	dl := h.deadReplies()[0]
	if dl.Failure.Status != 404 || dl.Failure.Reason != reply.ReasonNotFound || dl.Route != "ci" || dl.Delivery != m.Delivery {
		t.Errorf("dead letter = %+v", dl)
	}
	if n := len(h.dead()); n != 1 {
		t.Errorf("%d dead letters, want only the reply", n)
	}
	if n := len(h.chatRequests()); n != 1 {
		t.Errorf("%d chat requests, want 1: a failing sink never sends the turn again", n)
	}
	if got := h.replies(reply.TypeGitHub, "dead"); got != 1 {
		t.Errorf("replies dead = %v, want 1", got)
	}
	if got := h.outcome(m.Delivery); got.Outcome != history.Delivered || len(got.Replies) != 1 ||
		got.Replies[0].Outcome != history.ReplyDead || got.Replies[0].Error == "" {
		t.Errorf("history = %+v", got)
	}

	gh.AddIssue(replyRepo, 9)
	if n, err := h.store.ReplayDead(context.Background(), dl.ID); err != nil || n != 1 {
		t.Fatalf("replay: %d, %v", n, err)
	}
	h.waitFor("the replayed comment", func() bool { return len(gh.Comments()) == 1 })
	h.settled()
	if n := len(h.chatRequests()); n != 1 {
		t.Errorf("%d chat requests after the replay, want 1", n)
	}
}

func TestReplySlack(t *testing.T) {
	sl, spec := newSlack(t)
	h := replyHarness(t, spec)
	h.settings.Retry.MaxAttempts = 5
	h.start()

	// 200 ok.
	h.enqueue(newMsg("ci", "a", "one"))
	h.waitFor("a Slack message", func() bool { return len(sl.Messages()) == 1 })
	if got := sl.Messages()[0].Text; got != diagnosis {
		t.Errorf("slack text = %q", got)
	}

	// 429 with Retry-After: retried after it.
	sl.FailNext(1, fake.SlackRateLimited(time.Second))
	h.enqueue(newMsg("ci", "b", "two"))
	h.waitFor("a second Slack message", func() bool { return len(sl.Messages()) == 2 })
	if got := h.replies(reply.TypeSlack, "retry"); got != 1 {
		t.Errorf("slack retries = %v, want 1", got)
	}

	// 404 no_service: dead at once.
	sl.Remove()
	h.enqueue(newMsg("ci", "c", "three"))
	h.waitFor("a dead reply", func() bool { return len(h.deadReplies()) == 1 })
	h.settled()
	if dl := h.deadReplies()[0]; dl.Failure.Status != 404 || dl.Failure.Code != "no_service" || dl.Attempts != 1 {
		t.Errorf("dead letter = %+v", dl)
	}
	if h.replies(reply.TypeSlack, "sent") != 2 || h.replies(reply.TypeSlack, "dead") != 1 {
		t.Errorf("slack sent %v dead %v, want 2 and 1", h.replies(reply.TypeSlack, "sent"), h.replies(reply.TypeSlack, "dead"))
	}
	if n := len(h.chatRequests()); n != 3 {
		t.Errorf("%d chat requests, want 3", n)
	}
}

// The webhook sink's requests verify with the standard-webhooks verifier
// relayd itself uses for incoming webhooks.
func TestReplyWebhookSigned(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	v, err := verify.New(verify.Spec{Type: "standard-webhooks", Secrets: []string{secret}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if _, err := v.Verify(&verify.Request{Header: r.Header, Body: body}); err != nil {
			t.Errorf("signature: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var p map[string]any
		if err := json.Unmarshal(body, &p); err != nil {
			t.Errorf("body: %v", err)
		}
		mu.Lock()
		got = append(got, p)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	h := replyHarness(t, reply.Spec{Type: reply.TypeWebhook, URL: srv.URL, Secret: secret})
	m := newMsg("ci", "a", "one")
	h.enqueue(m)
	h.start()
	h.waitFor("a webhook", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	h.settled()
	mu.Lock()
	p := got[0]
	mu.Unlock()
	if p["reply"] != diagnosis || p["route"] != "ci" || p["conversation"] != "a" {
		t.Errorf("webhook body = %v", p)
	}
	if d, _ := p["deliveries"].([]any); len(d) != 1 || d[0] != m.Delivery {
		t.Errorf("deliveries = %v, want [%s]", p["deliveries"], m.Delivery)
	}
}

// A coalesced turn about two pull requests comments once on each.
func TestReplyCoalescedTurnTwoTargets(t *testing.T) {
	gh, spec := newGitHub(t)
	gh.AddIssue(replyRepo, 1)
	gh.AddIssue(replyRepo, 2)
	h := replyHarness(t, spec)
	h.turns = func(string) queue.TurnPolicy { return queue.TurnPolicy{MaxEvents: 5} }
	_ = h.store.Close()
	h.openStore()
	h.enqueue(prMsg("a", 1), prMsg("a", 2), prMsg("a", 1))
	h.start()
	h.waitFor("two comments", func() bool { return len(gh.Comments()) == 2 })
	h.settled()
	if n := len(h.chatRequests()); n != 1 {
		t.Fatalf("%d chat requests, want one turn", n)
	}
	seen := map[int64]bool{}
	for _, c := range gh.Comments() {
		seen[c.Number] = true
	}
	if !seen[1] || !seen[2] {
		t.Errorf("comments on %v, want PRs 1 and 2", seen)
	}
}

// A reply stored with the turn's ack is posted after a restart, and the
// turn is not sent again.
func TestReplyDurableAcrossRestart(t *testing.T) {
	gh, spec := newGitHub(t)
	gh.AddIssue(replyRepo, 7)
	gh.FailNext(1000, fake.Fault{Status: 503, Header: map[string]string{"Retry-After": "1"}, Body: `{"message":"Server Error"}`})
	h := replyHarness(t, spec)
	h.enqueue(prMsg("a", 7))
	h.start()
	h.waitFor("a failed reply", func() bool { return h.replies(reply.TypeGitHub, "retry") >= 1 })
	h.restart()
	gh.ClearFaults()
	h.start()
	h.waitFor("the comment", func() bool { return len(gh.Comments()) == 1 })
	h.settled()
	if n := len(h.chatRequests()); n != 1 {
		t.Errorf("%d chat requests, want 1", n)
	}
	if !strings.Contains(gh.Comments()[0].Body, "flaky test") {
		t.Errorf("comment = %+v", gh.Comments()[0])
	}
}

var _ dispatch.Enqueuer = (*boltq.Store)(nil)

// A turn whose answer was cut off replies with what arrived, marked, and
// is not sent again.
func TestReplyPartialTurnMarked(t *testing.T) {
	sl, spec := newSlack(t)
	h := replyHarness(t, spec)
	h.fake.FailNext(1, opfake.Fault{Turn: &opfake.Turn{CutAfter: 5}})
	h.enqueue(newMsg("ci", "a", "one"))
	h.start()
	h.waitFor("a Slack message", func() bool { return len(sl.Messages()) == 1 })
	h.settled()
	got := sl.Messages()[0].Text
	if !strings.HasSuffix(got, reply.PartialMarker) || !strings.HasPrefix(diagnosis, strings.TrimSpace(strings.TrimSuffix(got, reply.PartialMarker))) {
		t.Errorf("slack text = %q, want a start of the diagnosis and the partial marker", got)
	}
	if n := len(h.chatRequests()); n != 1 {
		t.Errorf("%d chat requests, want 1", n)
	}
}

// Once GitHub says the token is rate limited until a reset, the sink's
// other posts wait for the reset too instead of being refused one by one.
func TestReplyRateLimitHoldsTheSink(t *testing.T) {
	gh, spec := newGitHub(t)
	gh.AddIssue(replyRepo, 1)
	gh.AddIssue(replyRepo, 2)
	reset := time.Now().Truncate(time.Second).Add(2 * time.Second)
	gh.ExhaustRateLimit(reset)
	h := replyHarness(t, spec)
	h.settings.Concurrency = 1
	h.enqueue(prMsg("a", 1), prMsg("b", 2))
	h.start()
	h.waitFor("two comments", func() bool { return len(gh.Comments()) == 2 })
	h.settled()
	if got := h.replies(reply.TypeGitHub, "retry"); got != 1 {
		t.Errorf("replies retry = %v, want 1: the second post waits for the reset without trying", got)
	}
	for _, c := range gh.Comments() {
		if c.CreatedAt.Before(reset) {
			t.Errorf("comment on #%d created at %v, before the reset %v", c.Number, c.CreatedAt, reset)
		}
	}
}

// A reply post that dies is a dead letter like any message: counted in
// relayd_dead_letters_total under its route, with the sink's permanent
// reason, or max_attempts when its attempts ran out; and in
// relayd_replies_total as dead. The turn it answers stays delivered.
func TestReplyDeadLettersCounted(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(gh *fake.GitHub, h *harness)
		reason string
	}{
		{"permanent 404", func(*fake.GitHub, *harness) {}, reply.ReasonNotFound},
		{"5xx past max_attempts", func(gh *fake.GitHub, h *harness) {
			gh.AddIssue(replyRepo, 9)
			gh.FailNext(2, fake.GitHubServerError(http.StatusBadGateway))
			h.settings.Retry.MaxAttempts = 2
		}, metrics.ReasonMaxAttempts},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gh, spec := newGitHub(t)
			h := replyHarness(t, spec)
			tc.setup(gh, h)
			h.enqueue(prMsg("a", 9))
			h.start()
			h.waitFor("a dead reply", func() bool { return len(h.deadReplies()) == 1 })
			h.settled()
			if got := h.deadCount("ci", tc.reason); got != 1 {
				t.Errorf("relayd_dead_letters_total{ci,%s} = %v, want 1", tc.reason, got)
			}
			if got := testutil.CollectAndCount(h.m.DeadLetters); got != 1 {
				t.Errorf("relayd_dead_letters_total has %d series, want 1", got)
			}
			if got := h.replies(reply.TypeGitHub, "dead"); got != 1 {
				t.Errorf("relayd_replies_total{ci,github_comment,dead} = %v, want 1", got)
			}
			if got := h.attempts("ci", "dead"); got != 0 {
				t.Errorf("dispatch attempts dead = %v, want 0: the turn was delivered", got)
			}
		})
	}
}
