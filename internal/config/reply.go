package config

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
)

// Reply sink types (package reply sends them).
const (
	ReplyGitHub  = "github_comment"
	ReplySlack   = "slack"
	ReplyWebhook = "webhook"
)

// replyFiles reads the _file twins of route p's reply sinks.
func (l *loader) replyFiles(p string, r *Route) {
	for j := range r.Reply {
		rs := &r.Reply[j]
		f := index(p+".reply", j)
		l.secretFile(f+".token", &rs.Token, rs.TokenFile)
		l.secretFile(f+".url", &rs.URL, rs.URLFile)
		l.secretFile(f+".secret", &rs.Secret, rs.SecretFile)
	}
}

// validateReply checks route p's reply sinks: the fields each type needs,
// no field it does not read, URLs that a credential may travel to. Messages
// never quote a token, secret or URL.
func (l *loader) validateReply(p string, r *Route) {
	if len(r.Reply) == 0 && l.written(p+".reply_template") {
		l.errorf(p+".reply_template", "set, but the route has no reply sinks")
	}
	if strings.TrimSpace(r.ReplyTemplate) == "" && l.written(p+".reply_template") {
		l.errorf(p+".reply_template", "empty (leave it out for the reply as it is)")
	}
	for j := range r.Reply {
		rs := &r.Reply[j]
		f := index(p+".reply", j)
		set := map[string]bool{
			"token": rs.Token != "" || l.written(f+".token"), "api_url": l.written(f + ".api_url"),
			"url": rs.URL != "" || l.written(f+".url"), "secret": rs.Secret != "" || l.written(f+".secret"),
		}
		var needs, may []string // required fields, and optional ones
		switch rs.Type {
		case ReplyGitHub:
			needs, may = []string{"token"}, []string{"api_url"}
			l.replyURL(f+".api_url", rs.APIURL, true)
		case ReplySlack:
			needs = []string{"url"}
			if rs.URL != "" {
				l.replyURL(f+".url", string(rs.URL), true)
			}
		case ReplyWebhook:
			needs = []string{"url", "secret"}
			if rs.URL != "" {
				l.replyURL(f+".url", string(rs.URL), false)
			}
			if rs.Secret != "" {
				l.whsec(f+".secret", string(rs.Secret))
			}
		case "":
			l.errorf(f+".type", "required (github_comment, slack or webhook)")
			continue
		default:
			l.errorf(f+".type", "must be github_comment, slack or webhook, got %q", rs.Type)
			continue
		}
		for _, k := range []string{"token", "api_url", "url", "secret"} {
			switch {
			case slices.Contains(needs, k):
				l.replySecret(f+"."+k, k, rs)
			case set[k] && !slices.Contains(may, k):
				// The type is no secret, though the field may be one.
				l.add(f+"."+k, fmt.Errorf("not used by type %s", rs.Type))
			}
		}
	}
}

// replySecret checks a required secret field of a reply sink.
func (l *loader) replySecret(field, k string, rs *ReplySink) {
	v := map[string]Secret{"token": rs.Token, "url": rs.URL, "secret": rs.Secret}[k]
	switch {
	case v == "" && l.written(field):
		l.errorf(field, "empty (is the variable it names set?)")
	case v == "":
		l.errorf(field, "required for type %s (set %s or %s_file)", rs.Type, k, k)
	case strings.ContainsFunc(string(v), func(r rune) bool { return r < 0x21 || r == 0x7f }):
		l.errorf(field, "contains whitespace or control characters")
	}
}

// replyURL checks an absolute http(s) URL. When credential is set, a token
// is sent there or the URL is one, so plain http is refused except to this
// machine.
func (l *loader) replyURL(field, v string, credential bool) {
	u, err := url.Parse(v)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
		l.errorf(field, "must be an absolute http or https URL")
	case u.User != nil || u.Fragment != "":
		l.errorf(field, "must not carry credentials or a fragment")
	case credential && u.Scheme == "http" && !isLoopback(u.Hostname()):
		l.errorf(field, "must be https (plain http only to localhost)")
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// whsec checks a Standard Webhooks secret: "whsec_" and base64 key bytes
// (any other text is used as the key itself, as by verify).
func (l *loader) whsec(field, v string) {
	b64, ok := strings.CutPrefix(v, "whsec_")
	if !ok {
		return
	}
	if k, err := base64.StdEncoding.DecodeString(b64); err != nil || len(k) == 0 {
		l.errorf(field, "whsec_ secret is not valid base64")
	}
}
