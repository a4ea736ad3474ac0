package reply

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/relayd/relayd/internal/verify"
)

const defaultTimeout = 30 * time.Second

// NewSink compiles one sink. Errors name the sub-field ("url: required for
// type slack") and never quote a token, secret or URL.
func NewSink(s Spec, o Options) (Sink, error) {
	c := sinkClient(o.Client)
	now := o.Now
	if now == nil {
		now = time.Now
	}
	ua := o.UserAgent
	if ua == "" {
		ua = "relayd"
	}
	base := base{client: c, now: now, userAgent: ua}
	switch s.Type {
	case TypeGitHub:
		if err := unused(s, "url", "secret"); err != nil {
			return nil, err
		}
		if err := secretValue("token", s.Token, s.Type); err != nil {
			return nil, err
		}
		api := s.APIURL
		if api == "" {
			api = DefaultGitHubAPI
		}
		u, err := endpoint("api_url", api, true)
		if err != nil {
			return nil, err
		}
		if u.RawQuery != "" {
			return nil, errors.New("api_url: must not have a query")
		}
		return &githubSink{base: base, api: strings.TrimRight(u.String(), "/"), auth: "Bearer " + s.Token}, nil
	case TypeSlack:
		if err := unused(s, "token", "api_url", "secret"); err != nil {
			return nil, err
		}
		if s.URL == "" {
			return nil, errors.New("url: required for type slack")
		}
		u, err := endpoint("url", s.URL, true)
		if err != nil {
			return nil, err
		}
		return &slackSink{base: base, url: u.String()}, nil
	case TypeWebhook:
		if err := unused(s, "token", "api_url"); err != nil {
			return nil, err
		}
		if s.URL == "" {
			return nil, errors.New("url: required for type webhook")
		}
		u, err := endpoint("url", s.URL, false)
		if err != nil {
			return nil, err
		}
		if err := secretValue("secret", s.Secret, s.Type); err != nil {
			return nil, err
		}
		spec := verify.Spec{Type: "standard-webhooks", Secrets: []string{s.Secret}}
		if _, err := verify.New(spec); err != nil {
			if inner := errors.Unwrap(err); inner != nil {
				err = inner // verify names it secrets[0]; here it is one secret
			}
			return nil, fmt.Errorf("secret: %w", err)
		}
		return &webhookSink{base: base, url: u.String(), spec: spec}, nil
	case "":
		return nil, fmt.Errorf("type: required (%s)", strings.Join(Types, ", "))
	}
	return nil, fmt.Errorf("type: %q is not one of %s", s.Type, strings.Join(Types, ", "))
}

// sinkClient copies c (or a default) so that it never follows a redirect:
// a token or a signed reply must not travel to another host, and a POST
// turned into a GET would be lost silently.
func sinkClient(c *http.Client) *http.Client {
	var out http.Client
	if c != nil {
		out = *c
	} else {
		out.Timeout = defaultTimeout
	}
	out.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &out
}

func unused(s Spec, fields ...string) error {
	set := map[string]bool{"token": s.Token != "", "api_url": s.APIURL != "", "url": s.URL != "", "secret": s.Secret != ""}
	for _, f := range fields {
		if set[f] {
			return fmt.Errorf("%s: not used by type %s", f, s.Type)
		}
	}
	return nil
}

func secretValue(field, v, typ string) error {
	switch {
	case v == "":
		return fmt.Errorf("%s: required for type %s", field, typ)
	case strings.ContainsFunc(v, func(r rune) bool { return r < 0x21 || r == 0x7f }):
		return fmt.Errorf("%s: contains whitespace or control characters", field)
	}
	return nil
}

// endpoint checks an absolute http(s) URL. With credential set, the sink
// sends a credential there (a token, or the URL is one), so plain http is
// allowed only to this machine.
func endpoint(field, raw string, credential bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("%s: must be an absolute http or https URL", field)
	}
	if u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("%s: must not carry credentials or a fragment", field)
	}
	if credential && u.Scheme == "http" && !loopback(u.Hostname()) {
		return nil, fmt.Errorf("%s: must be https (plain http only to localhost)", field)
	}
	return u, nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type base struct {
	client    *http.Client
	now       func() time.Time
	userAgent string
}

// do posts body and returns the answer, or an *Error when none arrived.
func (b base) do(ctx context.Context, sink, u string, body []byte, h http.Header) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return answer{}, &Error{Sink: sink, Reason: ReasonBadPost, Msg: "cannot build the request"}
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", b.userAgent)
	resp, err := b.client.Do(req)
	if err != nil {
		return answer{}, transportError(sink, err)
	}
	defer resp.Body.Close()
	return readAnswer(resp), nil
}

type githubSink struct {
	base
	api  string // without a trailing slash
	auth string // "Bearer <token>"; never printed
}

func (s *githubSink) Type() string { return TypeGitHub }

// Send creates an issue comment (issues and pull requests share them) or a
// commit comment.
func (s *githubSink) Send(ctx context.Context, p Post) error {
	if p.Target == nil || !p.Target.Valid() {
		return &Error{Sink: TypeGitHub, Reason: ReasonBadPost, Msg: "no valid target (repository and issue number or commit)"}
	}
	body, err := json.Marshal(map[string]string{"body": p.Text})
	if err != nil {
		return &Error{Sink: TypeGitHub, Reason: ReasonBadPost, Msg: err.Error()}
	}
	h := http.Header{}
	h.Set("Authorization", s.auth)
	h.Set("Accept", "application/vnd.github+json")
	h.Set("X-GitHub-Api-Version", "2022-11-28")
	a, err := s.do(ctx, TypeGitHub, s.api+p.Target.path(), body, h)
	if err != nil {
		return err
	}
	if e := classifyGitHub(a, s.now()); e != nil {
		e.Msg = p.Target.String() + ": " + e.Msg
		return e
	}
	return nil
}

type slackSink struct {
	base
	url string // the incoming webhook URL: a credential, never printed
}

func (s *slackSink) Type() string { return TypeSlack }

func (s *slackSink) Send(ctx context.Context, p Post) error {
	body, err := json.Marshal(map[string]string{"text": slackEscape(p.Text)})
	if err != nil {
		return &Error{Sink: TypeSlack, Reason: ReasonBadPost, Msg: err.Error()}
	}
	a, err := s.do(ctx, TypeSlack, s.url, body, nil)
	if err != nil {
		return err
	}
	if e := classifySlack(a, s.now()); e != nil {
		return e
	}
	return nil
}

// slackEscape escapes the three characters Slack's mrkdwn gives meaning
// (<@U123>, <!channel>, <url|text>): the agent's text must not ping a
// channel or forge a link.
var slackEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace

type webhookSink struct {
	base
	url  string
	spec verify.Spec // standard-webhooks with the one secret
}

func (s *webhookSink) Type() string { return TypeWebhook }

// webhookBody is the generic sink's JSON.
type webhookBody struct {
	Route        string   `json:"route"`
	Conversation string   `json:"conversation"`
	ChatID       string   `json:"chat_id"`
	Deliveries   []string `json:"deliveries"`
	Reply        string   `json:"reply"`
	Partial      bool     `json:"partial"`
}

func (s *webhookSink) Send(ctx context.Context, p Post) error {
	deliveries := p.Deliveries
	if deliveries == nil {
		deliveries = []string{}
	}
	body, err := json.Marshal(webhookBody{
		Route: p.Route, Conversation: p.Conversation, ChatID: p.ChatID,
		Deliveries: deliveries, Reply: p.Text, Partial: p.Partial,
	})
	if err != nil {
		return &Error{Sink: TypeWebhook, Reason: ReasonBadPost, Msg: err.Error()}
	}
	// Signed per attempt: the timestamp is the attempt's; the id is the
	// post's, the same on every attempt, so receivers can drop repeats.
	h, err := verify.Sign(s.spec, body, s.now(), p.ID)
	if err != nil {
		return &Error{Sink: TypeWebhook, Reason: ReasonBadPost, Msg: "cannot sign the reply"}
	}
	a, err := s.do(ctx, TypeWebhook, s.url, body, h)
	if err != nil {
		return err
	}
	if e := classifyWebhook(a, s.now()); e != nil {
		return e
	}
	return nil
}
