package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// withReply is minimal with the route's reply settings added.
func withReply(reply string) string {
	return minimal + indent(reply, "    ")
}

func TestReplySinksLoad(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "slack-url", "https://hooks.slack.com/services/T1/B1/fromfile\n")
	c, err := Parse([]byte(withReply(`reply:
  - type: github_comment
    token: ${GITHUB_TOKEN}
  - type: github_comment
    token: ghp_other
    api_url: https://ghe.example.com/api/v3
  - type: slack
    url_file: slack-url
  - type: webhook
    url: https://ci.example.com/agent-replies
    secret: ${REPLY_SECRET}
reply_template: '{{ .reply }} ({{ .chat_id }})'
`)), dir, env(map[string]string{"GITHUB_TOKEN": "ghp_fromenv", "REPLY_SECRET": "whsec_cmVwbHktc2VjcmV0"}))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Routes[0]
	want := []ReplySink{
		{Type: "github_comment", Token: "ghp_fromenv", APIURL: DefaultGitHubAPIURL},
		{Type: "github_comment", Token: "ghp_other", APIURL: "https://ghe.example.com/api/v3"},
		{Type: "slack", URL: "https://hooks.slack.com/services/T1/B1/fromfile", URLFile: "slack-url"},
		{Type: "webhook", URL: "https://ci.example.com/agent-replies", Secret: "whsec_cmVwbHktc2VjcmV0"},
	}
	if !reflect.DeepEqual(r.Reply, want) || r.ReplyTemplate != "{{ .reply }} ({{ .chat_id }})" {
		t.Errorf("reply = %+v\ntemplate %q", r.Reply, r.ReplyTemplate)
	}

	out, _ := yaml.Marshal(c)
	for _, s := range []string{"ghp_fromenv", "ghp_other", "fromfile", "agent-replies", "cmVwbHktc2VjcmV0"} {
		if strings.Contains(string(out), s) || strings.Contains(fmt.Sprintf("%+v", c.Routes), s) {
			t.Errorf("dump contains %q:\n%s", s, out)
		}
	}
	if !strings.Contains(string(out), "https://ghe.example.com/api/v3") {
		t.Errorf("api_url is no secret, but the dump hides it:\n%s", out)
	}
}

func TestReplyErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		vars map[string]string
		want string
	}{
		{"slack without url", "reply: [{type: github_comment, token: t}, {type: slack}]",
			nil, "routes[0].reply[1].url: required for type slack (set url or url_file)"},
		{"webhook without secret", "reply: [{type: webhook, url: 'https://h/x'}]",
			nil, "routes[0].reply[0].secret: required for type webhook"},
		{"github without token", "reply: [{type: github_comment}]",
			nil, "routes[0].reply[0].token: required for type github_comment"},
		{"token from an empty variable", "reply: [{type: github_comment, token: '${T:-}'}]",
			nil, "routes[0].reply[0].token: empty (is the variable it names set?)"},
		{"token from an unset variable", "reply: [{type: github_comment, token: '${T}'}]",
			nil, "routes[0].reply[0].token: environment variable T is not set"},
		{"no type", "reply: [{url: 'https://h/x'}]", nil, "routes[0].reply[0].type: required"},
		{"unknown type", "reply: [{type: email}]", nil, `routes[0].reply[0].type: must be github_comment, slack or webhook, got "email"`},
		{"unknown key", "reply: [{type: slack, ur: 'https://h/x'}]", nil, `routes[0].reply[0]: unknown field "ur" (did you mean "url"?)`},
		{"token on slack", "reply: [{type: slack, url: 'https://h/x', token: t}]", nil, "routes[0].reply[0].token: not used by type slack"},
		{"api_url on webhook", "reply: [{type: webhook, url: 'https://h/x', secret: s, api_url: 'https://h'}]", nil,
			"routes[0].reply[0].api_url: not used by type webhook"},
		{"api_url over http", "reply: [{type: github_comment, token: t, api_url: 'http://ghe.example.com/api/v3'}]", nil,
			"routes[0].reply[0].api_url: must be https (plain http only to localhost)"},
		{"slack url over http", "reply: [{type: slack, url: 'http://hooks.slack.com/services/T/B/secretpart'}]", nil,
			"routes[0].reply[0].url: must be https"},
		{"relative url", "reply: [{type: webhook, url: '/replies', secret: s}]", nil,
			"routes[0].reply[0].url: must be an absolute http or https URL"},
		{"url with credentials", "reply: [{type: webhook, url: 'https://u:secretpart@h/x', secret: s}]", nil,
			"routes[0].reply[0].url: must not carry credentials"},
		{"bad whsec", "reply: [{type: webhook, url: 'https://h/x', secret: 'whsec_!!secretpart'}]", nil,
			"routes[0].reply[0].secret: whsec_ secret is not valid base64"},
		{"template without sinks", "reply_template: '{{ .reply }}'", nil,
			"routes[0].reply_template: set, but the route has no reply sinks"},
		{"both token and token_file", "reply: [{type: github_comment, token: t, token_file: f}]", nil,
			"routes[0].reply[0].token_file: set only one of token and token_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(withReply(tt.yaml)), t.TempDir(), env(tt.vars))
			// Errors name the route and the line: routes[0] "r1".reply[1].url (line N): msg.
			field, msg, _ := strings.Cut(tt.want, ": ")
			field = `routes[0] "r1"` + strings.TrimPrefix(field, "routes[0]") + " (line "
			if err == nil || !strings.Contains(err.Error(), field) || !strings.Contains(err.Error(), "): "+msg) {
				t.Fatalf("error = %v\nwant %s…): %s", err, field, msg)
			}
			if strings.Contains(err.Error(), "secretpart") {
				t.Errorf("error quotes a secret: %v", err)
			}
		})
	}
	// Plain http is fine to this machine (relayd mock-github).
	if _, err := Parse([]byte(withReply("reply: [{type: github_comment, token: t, api_url: 'http://127.0.0.1:8098'}]")), t.TempDir(), env(nil)); err != nil {
		t.Errorf("loopback api_url: %v", err)
	}
}
