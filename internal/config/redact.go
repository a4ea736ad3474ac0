package config

import (
	"slices"
	"strings"
)

// RedactedText is the text that replaces every secret in Redacted's copy.
const RedactedText = "REDACTED"

// Redacted returns a deep copy of c with every secret replaced by
// "REDACTED": operator.api_key, server.admin_token, each source's secrets,
// and credentials inside URLs. Empty secrets stay empty, so a dump still
// shows which are unset. It is what `relayd check` prints and the admin API
// serves; the original is never changed.
func (c *Config) Redacted() *Config {
	if c == nil {
		return nil
	}
	r := *c
	r.Server.AdminToken = redact(c.Server.AdminToken)
	r.Operator.APIKey = redact(c.Operator.APIKey)
	r.Operator.BaseURL = redactURL(c.Operator.BaseURL)

	n := &r.Storage.NATS
	if c.Storage.NATS.URL != "" {
		parts := strings.Split(c.Storage.NATS.URL, ",")
		for i, p := range parts {
			parts[i] = redactURL(strings.TrimSpace(p))
		}
		n.URL = strings.Join(parts, ",")
	}
	n.URLs = cloneMap(c.Storage.NATS.URLs, redactURL)

	r.Sources = slices.Clone(c.Sources)
	for i := range r.Sources {
		s := &r.Sources[i]
		s.AllowCIDRs = slices.Clone(s.AllowCIDRs)
		if s.Verify != nil {
			v := *s.Verify
			v.Secrets = cloneMap(v.Secrets, redact)
			s.Verify = &v
		}
	}
	r.Routes = slices.Clone(c.Routes)
	for i := range r.Routes {
		rt := &r.Routes[i]
		if rt.RateLimit != nil {
			rl := *rt.RateLimit
			rt.RateLimit = &rl
		}
		if rt.ConversationReset != nil {
			cr := *rt.ConversationReset
			rt.ConversationReset = &cr
		}
		if rt.Coalesce != nil {
			co := *rt.Coalesce
			rt.Coalesce = &co
		}
		if rt.TurnLimit != nil {
			tl := *rt.TurnLimit
			rt.TurnLimit = &tl
		}
	}
	return &r
}

func redact(s string) string {
	if s == "" {
		return ""
	}
	return RedactedText
}

func cloneMap(in []string, f func(string) string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = f(s)
	}
	return out
}
