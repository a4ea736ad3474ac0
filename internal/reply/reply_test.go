package reply_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/relayd/relayd/internal/reply"
	"github.com/relayd/relayd/internal/reply/fake"
)

// turn is a coalesced turn of four events about two pull requests and a
// commit, as the dispatcher would hand it over.
func turn(t *testing.T) reply.Reply {
	commit := reply.Target{Repo: "octo-org/octo-repo", SHA: runSHA}
	return reply.Reply{
		Route: "ci-failures", Conversation: "Codertocat/Hello-World", ChatID: "chat_9",
		Text: "The failure is a flaky test in auth_test.go; here is a fix.",
		Events: []reply.Event{
			{Source: "github", Event: "pull_request", Delivery: "d1", Body: sample(t, "pull_request", "opened")},
			{Source: "github", Event: "check_run", Delivery: "d2", Body: sample(t, "check_run", "completed")},
			// Found at ingest; the body is no longer at hand.
			{Source: "github", Event: "workflow_run", Delivery: "d3", Target: &commit},
			{Source: "github", Event: "issues", Delivery: "d4", Body: sample(t, "issues", "opened")},
		},
	}
}

type fixture struct {
	gh    *fake.GitHub
	slack *fake.Slack
	hook  *recorder
	specs []reply.Spec
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{hook: &recorder{}}
	f.gh = fake.NewGitHub(fake.GitHubOptions{Tokens: []string{ghToken}, Open: true, Now: now})
	f.slack = fake.NewSlack(fake.SlackOptions{})
	gs, ss, hs := httptest.NewServer(f.gh), httptest.NewServer(f.slack), httptest.NewServer(f.hook)
	t.Cleanup(gs.Close)
	t.Cleanup(ss.Close)
	t.Cleanup(hs.Close)
	f.specs = []reply.Spec{
		{Type: reply.TypeGitHub, Token: ghToken, APIURL: gs.URL},
		{Type: reply.TypeSlack, URL: ss.URL + f.slack.Path()},
		{Type: reply.TypeWebhook, URL: hs.URL, Secret: hookSecret},
	}
	return f
}

func TestPlanAndSendACoalescedTurn(t *testing.T) {
	f := newFixture(t)
	r, err := reply.Compile("ci-failures", f.specs, "", reply.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	rep := turn(t)
	posts, err := r.Plan(rep)
	if err != nil {
		t.Fatal(err)
	}
	// One comment per distinct target (#2 twice in the turn), then Slack
	// and the webhook once each.
	type key struct {
		sink   int
		typ    string
		target string
	}
	var got []key
	ids := map[string]bool{}
	for _, p := range posts {
		k := key{sink: p.Sink, typ: p.Type}
		if p.Target != nil {
			k.target = p.Target.String()
		}
		got = append(got, k)
		if ids[p.ID] || !strings.HasPrefix(p.ID, "rpl_") {
			t.Errorf("post id %q repeated or malformed", p.ID)
		}
		ids[p.ID] = true
		if p.Text != rep.Text || p.Route != "ci-failures" || p.ChatID != "chat_9" || !reflect.DeepEqual(p.Deliveries, []string{"d1", "d2", "d3", "d4"}) {
			t.Errorf("post = %+v", p)
		}
	}
	want := []key{
		{0, reply.TypeGitHub, "Codertocat/Hello-World#2"},
		{0, reply.TypeGitHub, "octo-org/octo-repo@" + runSHA},
		{0, reply.TypeGitHub, "Codertocat/Hello-World#1"},
		{1, reply.TypeSlack, ""},
		{2, reply.TypeWebhook, ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("posts = %+v\nwant %+v", got, want)
	}
	// Planned again (after a restart, say), the posts keep their ids.
	again, _ := r.Plan(rep)
	for i := range again {
		if again[i].ID != posts[i].ID {
			t.Errorf("post %d id %q then %q", i, posts[i].ID, again[i].ID)
		}
	}
	for _, p := range posts {
		if err := r.Send(context.Background(), p); err != nil {
			t.Errorf("send %s %v: %v", p.Type, p.Target, err)
		}
	}
	comments := f.gh.Comments()
	if len(comments) != 3 || comments[0].Number != 2 || comments[1].SHA != runSHA || comments[2].Number != 1 {
		t.Errorf("comments = %+v", comments)
	}
	if m := f.slack.Messages(); len(m) != 1 || m[0].Text != rep.Text {
		t.Errorf("slack = %+v", m)
	}
	if len(f.hook.reqs) != 1 || f.hook.reqs[0].Header.Get("Webhook-Id") != posts[4].ID {
		t.Errorf("webhook requests = %d", len(f.hook.reqs))
	}
}

func TestReplyTemplate(t *testing.T) {
	f := newFixture(t)
	tmpl := `{{ .route }}/{{ .conversation }} ({{ .chat_id }}, {{ len .events }} events, first {{ (index .events 0).delivery }}` +
		` on {{ (index .events 0).body.repository.full_name }}{{ if .partial }}, partial{{ end }}{{ .missing.deeper }}):` + "\n{{ .reply }}"
	r, err := reply.Compile("ci-failures", f.specs[1:2], tmpl, reply.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rep := turn(t)
	posts, err := r.Plan(rep)
	if err != nil || len(posts) != 1 {
		t.Fatalf("Plan = %+v, %v", posts, err)
	}
	want := "ci-failures/Codertocat/Hello-World (chat_9, 4 events, first d1 on Codertocat/Hello-World):\n" + rep.Text
	if posts[0].Text != want {
		t.Errorf("text = %q\nwant %q", posts[0].Text, want)
	}

	rep.Partial = true
	posts, _ = r.Plan(rep)
	want = "ci-failures/Codertocat/Hello-World (chat_9, 4 events, first d1 on Codertocat/Hello-World, partial):\n" +
		rep.Text + "\n\n" + reply.PartialMarker
	if len(posts) != 1 || posts[0].Text != want || !posts[0].Partial {
		t.Errorf("partial text = %q\nwant %q", posts[0].Text, want)
	}
}

func TestPlanSendsNothing(t *testing.T) {
	f := newFixture(t)
	r, err := reply.Compile("r", f.specs, "", reply.Options{})
	if err != nil {
		t.Fatal(err)
	}
	blank := turn(t)
	blank.Text = " \n"
	if posts, err := r.Plan(blank); err != nil || len(posts) != 0 {
		t.Errorf("blank reply planned %+v, %v", posts, err)
	}
	// A turn about nothing GitHub knows gets no comment; the others still post.
	push := reply.Reply{Route: "r", Text: "ok", Events: []reply.Event{{Delivery: "d", Body: sample(t, "push", "")}}}
	posts, err := r.Plan(push)
	if err != nil || len(posts) != 2 || posts[0].Type != reply.TypeSlack || posts[1].Type != reply.TypeWebhook {
		t.Errorf("push turn planned %+v, %v", posts, err)
	}
	none, err := reply.Compile("r", nil, "", reply.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if posts, err := none.Plan(turn(t)); err != nil || posts != nil {
		t.Errorf("no sinks planned %+v, %v", posts, err)
	}
}

func TestSendChecksThePostsSink(t *testing.T) {
	f := newFixture(t)
	r, err := reply.Compile("r", f.specs, "", reply.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []reply.Post{
		{Sink: 5, Type: reply.TypeSlack, Text: "x"},
		{Sink: -1, Type: reply.TypeSlack, Text: "x"},
		{Sink: 0, Type: reply.TypeSlack, Text: "x"}, // reply[0] is github_comment now
	} {
		replyError(t, r.Send(context.Background(), p), 0, reply.ReasonBadPost, false, 0)
	}
	if len(f.slack.Messages())+len(f.gh.Comments()) != 0 {
		t.Error("a mismatched post was sent")
	}
}

func TestLongRepliesFitGitHub(t *testing.T) {
	f := newFixture(t)
	r, err := reply.Compile("r", f.specs[:1], "", reply.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rep := reply.Reply{Route: "r", Text: strings.Repeat("é", 40000), Partial: true, // 80000 bytes
		Events: []reply.Event{{Target: &reply.Target{Repo: "o/r", Number: 1}}}}
	posts, err := r.Plan(rep)
	if err != nil || len(posts) != 1 {
		t.Fatalf("Plan = %+v, %v", posts, err)
	}
	text := posts[0].Text
	if len(text) > 65536 || !utf8.ValidString(text) || !strings.HasSuffix(text, reply.PartialMarker) || !strings.Contains(text, " bytes cut]") {
		t.Errorf("text of %d bytes ends %q", len(text), text[len(text)-120:])
	}
	if err := r.Send(context.Background(), posts[0]); err != nil {
		t.Fatalf("GitHub refused the cut reply: %v", err)
	}
}

func TestCompileErrors(t *testing.T) {
	gh := func(s reply.Spec) reply.Spec { s.Type = reply.TypeGitHub; return s }
	tests := []struct {
		name  string
		specs []reply.Spec
		tmpl  string
		want  string
	}{
		{"no type", []reply.Spec{{}}, "", "reply[0].type: required"},
		{"unknown type", []reply.Spec{{Type: "email"}}, "", `reply[0].type: "email" is not one of github_comment, slack, webhook`},
		{"slack without url", []reply.Spec{gh(reply.Spec{Token: "t"}), {Type: reply.TypeSlack}}, "", "reply[1].url: required for type slack"},
		{"webhook without url", []reply.Spec{{Type: reply.TypeWebhook, Secret: hookSecret}}, "", "reply[0].url: required for type webhook"},
		{"webhook without secret", []reply.Spec{{Type: reply.TypeWebhook, URL: "https://h/x"}}, "", "reply[0].secret: required for type webhook"},
		{"webhook secret not base64", []reply.Spec{{Type: reply.TypeWebhook, URL: "https://h/x", Secret: "whsec_!!!notbase64"}}, "", "reply[0].secret: whsec_ secret is not valid base64"},
		{"github without token", []reply.Spec{gh(reply.Spec{})}, "", "reply[0].token: required for type github_comment"},
		{"token with a newline", []reply.Spec{gh(reply.Spec{Token: "ghp_abc\n"})}, "", "reply[0].token: contains whitespace"},
		{"api_url over http", []reply.Spec{gh(reply.Spec{Token: "t", APIURL: "http://ghe.example.com/api/v3"})}, "", "reply[0].api_url: must be https"},
		{"api_url relative", []reply.Spec{gh(reply.Spec{Token: "t", APIURL: "ghe.example.com"})}, "", "reply[0].api_url: must be an absolute http or https URL"},
		{"api_url with credentials", []reply.Spec{gh(reply.Spec{Token: "t", APIURL: "https://u:pw@ghe.example.com"})}, "", "reply[0].api_url: must not carry credentials"},
		{"slack over http", []reply.Spec{{Type: reply.TypeSlack, URL: "http://hooks.slack.com/services/T/B/secretpart"}}, "", "reply[0].url: must be https"},
		{"token on slack", []reply.Spec{{Type: reply.TypeSlack, URL: "https://hooks.slack.com/x", Token: "t"}}, "", "reply[0].token: not used by type slack"},
		{"secret on github", []reply.Spec{gh(reply.Spec{Token: "t", Secret: hookSecret})}, "", "reply[0].secret: not used by type github_comment"},
		{"template syntax", []reply.Spec{{Type: reply.TypeSlack, URL: "https://hooks.slack.com/x"}}, "{{ .reply ", "reply_template: line 1"},
		{"template without sinks", nil, "{{ .reply }}", "reply_template: set, but the route has no reply sinks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := reply.Compile("r", tt.specs, tt.tmpl, reply.Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
			noSecrets(t, err, "secretpart", "pw@", "notbase64", "ghp_abc")
		})
	}
	// Every bad sink is reported at once.
	_, err := reply.Compile("r", []reply.Spec{{Type: reply.TypeSlack}, {Type: reply.TypeWebhook}}, "", reply.Options{})
	if err == nil || !strings.Contains(err.Error(), "reply[0].url") || !strings.Contains(err.Error(), "reply[1].url") {
		t.Errorf("error = %v", err)
	}
	// Plain http is fine to this machine (fakes, mock-github).
	if _, err := reply.Compile("r", []reply.Spec{gh(reply.Spec{Token: "t", APIURL: "http://127.0.0.1:8098"})}, "", reply.Options{}); err != nil {
		t.Errorf("loopback api_url: %v", err)
	}
}

func TestClassifyOtherErrors(t *testing.T) {
	if retry, wait := reply.Classify(errors.New("boom")); retry || wait != 0 {
		t.Errorf("Classify(plain error) = %v, %s", retry, wait)
	}
	if retry, _ := reply.Classify(nil); retry {
		t.Error("Classify(nil) retries")
	}
}
