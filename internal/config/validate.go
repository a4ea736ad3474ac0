package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/relayd/relayd/internal/prompt"
)

// nameRE is what source and route names may be: they become metrics labels
// and appear in admin URLs.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

const maxNameLen = 64

// reservedPaths are served by the admin listener; no source may sit under
// them, so no URL means one thing on one port and another on the other.
var reservedPaths = []string{"/admin", "/metrics", "/healthz", "/readyz"}

func (l *loader) validate() {
	l.validateServer()
	l.validateStorage()
	l.validateHistory()
	l.validateOperator()
	l.validateLog()
	l.validateSources()
	l.validateRoutes()
	l.validateRedact("redact", &l.c.Redact)
}

// validateRedact compiles each pattern as the turn's Redactor will, so a
// bad one is a load error rather than a surprise on the first turn.
func (l *loader) validateRedact(p string, r *Redact) {
	for i, pat := range r.Patterns {
		if _, err := prompt.CompilePattern(pat); err != nil {
			l.errorf(index(p+".patterns", i), "%w", err)
		}
	}
}

func (l *loader) validateServer() {
	s := &l.c.Server
	l.listenAddr("server.listen", s.Listen)
	l.listenAddr("server.admin_listen", s.AdminListen)
	if s.Listen != "" && s.Listen == s.AdminListen && !strings.HasSuffix(s.Listen, ":0") { // ":0" picks a free port each
		l.errorf("server.admin_listen", "same address as server.listen: the admin API must not share the public listener")
	}
	if s.MaxBodyBytes <= 0 {
		l.errorf("server.max_body_bytes", "must be > 0, got %d", s.MaxBodyBytes)
	} else if s.MaxInflatedBytes < s.MaxBodyBytes {
		l.errorf("server.max_inflated_bytes", "must be >= max_body_bytes (%d), got %d", s.MaxBodyBytes, s.MaxInflatedBytes)
	} else if s.MaxInflightBodyBytes < s.MaxInflatedBytes {
		// Below it, a body of the largest allowed size could be refused
		// 503 even when it is the only one being read.
		l.errorf("server.max_inflight_body_bytes", "must be >= max_inflated_bytes (%d), got %d", s.MaxInflatedBytes, s.MaxInflightBodyBytes)
	}
	if s.MaxHeaderBytes <= 0 {
		l.errorf("server.max_header_bytes", "must be > 0, got %d", s.MaxHeaderBytes)
	}
	for _, d := range []struct {
		field string
		v     Duration
	}{
		{"server.read_header_timeout", s.ReadHeaderTimeout},
		{"server.read_timeout", s.ReadTimeout},
		{"server.write_timeout", s.WriteTimeout},
		{"server.idle_timeout", s.IdleTimeout},
		{"server.shutdown_timeout", s.ShutdownTimeout},
	} {
		// Zero would mean "no timeout" to net/http: a slowloris opening.
		if d.v <= 0 {
			l.errorf(d.field, "must be > 0, got %s", d.v)
		}
	}
	l.secret("server.admin_token", string(s.AdminToken), false, false)
	if s.AdminTokenMetrics && s.AdminToken == "" && !l.written("server.admin_token") {
		l.errorf("server.admin_token_metrics", "needs admin_token or admin_token_file")
	}
	for i, h := range s.AdminHosts {
		// The value is not quoted: it may have come from the environment.
		if !validAdminHost(h) {
			l.errorf(index("server.admin_hosts", i), "not a host name or IP address (write the name alone: no scheme, port, path or wildcard)")
		}
	}
}

// hostLabelRE is one DNS label; underscores are allowed, as resolvers do.
var hostLabelRE = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$`)

// validAdminHost reports whether h can match a request's Host header: a
// DNS name (a trailing dot is allowed) or an IP address, IPv6 bracketed or
// not.
func validAdminHost(h string) bool {
	ip := h
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		ip = h[1 : len(h)-1]
	}
	if _, err := netip.ParseAddr(ip); err == nil {
		return true
	}
	name := strings.TrimSuffix(h, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if !hostLabelRE.MatchString(label) {
			return false
		}
	}
	return true
}

func (l *loader) listenAddr(field, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		l.errorf(field, "invalid address %q: want host:port or :port", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		l.errorf(field, "invalid port %q in %q", port, addr)
	}
}

// secret checks a secret that was written: it must not be empty (an unset
// variable behind ${VAR:-} must not silently disable a check) and must be
// sendable in an HTTP header. Messages never quote the value.
func (l *loader) secret(field, v string, required, allowEmpty bool) {
	switch {
	case v == "" && allowEmpty:
	case v == "" && (required || l.written(field)):
		if l.written(field) {
			l.errorf(field, "empty (is the variable it names set?)")
		} else {
			l.errorf(field, "required (set %s or %s_file)", last(field), last(field))
		}
	case strings.ContainsFunc(v, func(r rune) bool { return r < 0x21 || r == 0x7f }):
		l.errorf(field, "contains whitespace or control characters")
	}
}

func (l *loader) validateStorage() {
	st := &l.c.Storage
	switch st.Backend {
	case "bbolt":
		if st.Path == "" {
			l.errorf("storage.path", "required with backend bbolt")
		}
	case "nats":
		l.validateNATS(&st.NATS)
	default:
		l.errorf("storage.backend", "must be bbolt or nats, got %q", st.Backend)
	}
	if st.MaxPending < 0 {
		l.errorf("storage.max_pending", "must be >= 0 (0: no limit), got %d", st.MaxPending)
	}
	if st.MinFreeBytes < 0 {
		l.errorf("storage.min_free_bytes", "must be >= 0 (0: no floor), got %d", st.MinFreeBytes)
	}
	if st.DedupeTTL < 0 {
		l.errorf("storage.dedupe_ttl", "must be >= 0, got %s", st.DedupeTTL)
	}
}

func (l *loader) validateNATS(n *NATS) {
	const p = "storage.nats"
	switch {
	case n.URL != "" && len(n.URLs) > 0:
		l.errorf(p+".urls", "set only one of url and urls")
	case len(n.Servers()) == 0:
		l.errorf(p+".url", "required with backend nats (url or urls)")
	}
	field := p + ".url"
	if len(n.URLs) > 0 {
		field = p + ".urls"
	}
	for _, s := range n.Servers() {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			l.errorf(field, "invalid server URL %q", redactURL(s))
			continue
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			l.errorf(field, "server URL %q: scheme must be nats, tls, ws or wss", redactURL(s))
		}
	}
	if n.Stream == "" || strings.ContainsAny(n.Stream, " \t\r\n.*>/\\") {
		l.errorf(p+".stream", "invalid stream name %q: no spaces, '.', '*', '>' or slashes", n.Stream)
	}
	if n.Partitions < 1 || n.Partitions > 1024 {
		l.errorf(p+".partitions", "must be between 1 and 1024, got %d", n.Partitions)
	}
	if n.Replicas < 1 || n.Replicas > 5 {
		l.errorf(p+".replicas", "must be between 1 and 5 (JetStream's limit), got %d", n.Replicas)
	}
	if (n.TLS.CertFile == "") != (n.TLS.KeyFile == "") {
		l.errorf(p+".tls", "set both cert_file and key_file, or neither")
	}
	for _, f := range []struct{ field, path string }{
		{p + ".creds_file", n.CredsFile},
		{p + ".tls.ca_file", n.TLS.CAFile},
		{p + ".tls.cert_file", n.TLS.CertFile},
		{p + ".tls.key_file", n.TLS.KeyFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := l.read(f.path); err != nil {
			l.add(f.field, err)
		}
	}
}

func (l *loader) validateOperator() {
	op := &l.c.Operator
	if u, err := url.Parse(op.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		l.errorf("operator.base_url", "must be an absolute http or https URL, got %q", redactURL(op.BaseURL))
	} else if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		l.errorf("operator.base_url", "must not carry credentials, a query or a fragment")
	} else {
		// The client appends "/api/chat"; "https://host/" must not become
		// "https://host//api/chat".
		op.BaseURL = strings.TrimRight(op.BaseURL, "/")
	}
	l.secret("operator.api_key", string(op.APIKey), true, l.opts.Dev)
	if strings.ContainsFunc(op.Version, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		l.errorf("operator.version", "contains control characters")
	}
	if op.Timeout <= 0 {
		l.errorf("operator.timeout", "must be > 0, got %s", op.Timeout)
	}
	if op.Response != "stream" && op.Response != "json" {
		l.errorf("operator.response", `must be "stream" or "json", got %q`, op.Response)
	}
	if op.MaxTurn <= 0 {
		l.errorf("operator.max_turn", "must be > 0, got %s", op.MaxTurn)
	}
	if op.Concurrency < 1 {
		l.errorf("operator.concurrency", "must be >= 1, got %d", op.Concurrency)
	}
	l.rateLimit("operator.rate_limit", &op.RateLimit)
	r := &op.Retry
	if r.Initial <= 0 {
		l.errorf("operator.retry.initial", "must be > 0, got %s", r.Initial)
	} else if r.Max < r.Initial {
		l.errorf("operator.retry.max", "must be >= retry.initial (%s), got %s", r.Initial, r.Max)
	}
	if r.MaxAttempts < 1 {
		l.errorf("operator.retry.max_attempts", "must be >= 1, got %d", r.MaxAttempts)
	}
}

func (l *loader) rateLimit(p string, rl *RateLimit) {
	if !(rl.PerSecond > 0) || rl.PerSecond > 1e9 { // !(x > 0) also catches NaN
		l.errorf(p+".per_second", "must be > 0, got %v", rl.PerSecond)
	}
	if rl.Burst < 1 {
		l.errorf(p+".burst", "must be >= 1, got %d", rl.Burst)
	}
}

func (l *loader) validateLog() {
	switch l.c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		l.errorf("log.level", "must be debug, info, warn or error, got %q", l.c.Log.Level)
	}
	switch l.c.Log.Format {
	case "json", "text":
	default:
		l.errorf("log.format", "must be json or text, got %q", l.c.Log.Format)
	}
}

func (l *loader) validateSources() {
	c := l.c
	if len(c.Sources) == 0 {
		l.errorf("sources", "at least one source is required")
		return
	}
	names := map[string]int{}
	paths := map[string]int{}
	for i := range c.Sources {
		s := &c.Sources[i]
		p := index("sources", i)
		if l.name(p+".name", s.Name) {
			l.once(names, i, p+".name", s.Name, "%q already names sources[%d]")
		}
		if l.sourcePath(p+".path", s.Path) {
			l.once(paths, i, p+".path", s.Path, "%q is already the path of sources[%d]")
		}
		l.validateVerify(p+".verify", s.Verify)
		l.headerName(p+".event_header", s.EventHeader)
		l.headerName(p+".delivery_header", s.DeliveryHeader)
		switch s.Body {
		case "json", "text", "auto":
		default:
			l.errorf(p+".body", "must be json, text or auto, got %q", s.Body)
		}
		switch s.Unwrap {
		case "", "s3", "pubsub", "cloudevents":
		default:
			l.errorf(p+".unwrap", "must be s3, pubsub or cloudevents (or left out), got %q", s.Unwrap)
		}
		if s.DedupeTTL < 0 {
			l.errorf(p+".dedupe_ttl", "must be >= 0, got %s", s.DedupeTTL)
		}
		for j, cidr := range s.AllowCIDRs {
			if !validCIDR(cidr) {
				l.errorf(index(p+".allow_cidrs", j), "%q is not an IP address or CIDR", cidr)
			}
		}
	}
}

func (l *loader) validateVerify(p string, v *Verify) {
	if v == nil {
		l.errorf(p, "required (write type: none to accept unsigned webhooks)")
		return
	}
	if v.Type == "" {
		l.errorf(p+".type", "required (write none to accept unsigned webhooks)")
	}
	if v.SecretsFile == "" {
		for j, s := range v.Secrets {
			f := index(p+".secrets", j)
			switch {
			case s == "":
				l.errorf(f, "empty")
			case strings.TrimSpace(s) != s:
				// Usually the newline of a file or Kubernetes secret carried
				// into an environment variable: every signature would fail.
				l.errorf(f, "has leading or trailing whitespace")
			}
		}
	}
	if v.Tolerance < 0 {
		l.errorf(p+".tolerance", "must be >= 0, got %s", v.Tolerance)
	}
	l.validateVerifyType(p, v)
}

// validateVerifyType checks what the sns, oidc and basic types need; package
// verify checks the rest when it compiles the block.
func (l *loader) validateVerifyType(p string, v *Verify) {
	noSecrets := func() {
		if len(v.Secrets) > 0 || v.SecretsFile != "" {
			// The type is no secret, though the field is one.
			l.add(p+".secrets", fmt.Errorf("not used by type %s", v.Type))
		}
	}
	nonEmpty := func(field string, list []string) {
		for j, s := range list {
			if strings.TrimSpace(s) == "" {
				l.errorf(index(p+"."+field, j), "empty")
			}
		}
	}
	switch v.Type {
	case "sns":
		noSecrets()
		nonEmpty("topics", v.Topics)
		nonEmpty("cert_hosts", v.CertHosts)
	case "oidc":
		noSecrets()
		if v.Issuer == "" {
			l.errorf(p+".issuer", "required for type oidc")
		}
		if v.Audience == "" {
			l.errorf(p+".audience", "required for type oidc")
		}
	case "basic":
		if v.Username == "" {
			l.errorf(p+".username", "required for type basic")
		} else if strings.ContainsAny(v.Username, ":\r\n") {
			l.errorf(p+".username", "must not contain ':' or a line break")
		}
		if len(v.Secrets) == 0 && v.SecretsFile == "" {
			l.errorf(p+".secrets", "required for type basic (the passwords)")
		}
	}
}

// once records v as list item i's in seen, or, when an earlier item has
// it, reports at field msg with v and that item's index.
func (l *loader) once(seen map[string]int, i int, field, v, msg string) {
	if j, dup := seen[v]; dup {
		l.errorf(field, msg, v, j)
		return
	}
	seen[v] = i
}

func (l *loader) validateRoutes() {
	c := l.c
	names := map[string]int{}
	for i := range c.Routes {
		r := &c.Routes[i]
		p := index("routes", i)
		if l.name(p+".name", r.Name) {
			l.once(names, i, p+".name", r.Name, "%q already names routes[%d]")
		}
		switch _, ok := c.SourceByName(r.Source); {
		case r.Source == "":
			l.errorf(p+".source", "required")
		case !ok:
			l.errorf(p+".source", "unknown source %q", r.Source)
		}
		if r.RateLimit != nil {
			l.rateLimit(p+".rate_limit", r.RateLimit)
		}
		if r.Redact != nil {
			l.validateRedact(p+".redact", r.Redact)
		}
		if r.MaxPromptBytes < prompt.MinBudget || r.MaxPromptBytes > MaxMaxPromptBytes {
			l.errorf(p+".max_prompt_bytes", "must be between %d and %d, got %d", prompt.MinBudget, MaxMaxPromptBytes, r.MaxPromptBytes)
		}
		if co := r.Coalesce; co != nil {
			if co.Wait < 0 {
				l.errorf(p+".coalesce.wait", "must be >= 0, got %s", co.Wait)
			}
			if co.MaxEvents < 1 || co.MaxEvents > MaxCoalesceEvents {
				l.errorf(p+".coalesce.max_events", "must be between 1 and %d, got %d", MaxCoalesceEvents, co.MaxEvents)
			}
		}
		if tl := r.TurnLimit; tl != nil {
			if tl.Turns < 1 {
				l.errorf(p+".turn_limit.turns", "must be >= 1, got %d", tl.Turns)
			}
			if tl.Per <= 0 {
				l.errorf(p+".turn_limit.per", "must be > 0, got %s", tl.Per)
			}
		}
		if cr := r.ConversationReset; cr != nil {
			if cr.After < 0 {
				l.errorf(p+".conversation_reset.after", "must be >= 0, got %s", cr.After)
			}
			if cr.Messages < 0 {
				l.errorf(p+".conversation_reset.messages", "must be >= 0, got %d", cr.Messages)
			}
		}
		l.validateReply(p, r)
	}
}

// name checks a source or route name and reports whether it is usable.
func (l *loader) name(field, v string) bool {
	switch {
	case v == "":
		l.errorf(field, "required")
	case len(v) > maxNameLen:
		l.errorf(field, "longer than %d characters", maxNameLen)
	case !nameRE.MatchString(v):
		l.errorf(field, "%q: use lower-case letters, digits, '-' and '_', starting with a letter or digit", v)
	default:
		return true
	}
	return false
}

// sourcePath checks a source's URL path and reports whether it is usable.
func (l *loader) sourcePath(field, p string) bool {
	switch {
	case p == "":
		l.errorf(field, "required")
	case !strings.HasPrefix(p, "/"):
		l.errorf(field, "%q must start with /", p)
	case strings.IndexFunc(p, func(r rune) bool { return !pathChar(r) }) >= 0:
		// ':' and '*' would be route parameters to the router; '?', '#'
		// and '%' would never match a request path as written.
		l.errorf(field, "%q: use letters, digits and -._~/@!$&'()+,;= only", p)
	case path.Clean(p) != p:
		l.errorf(field, "%q is not a clean path; write %q", p, path.Clean(p))
	default:
		for _, r := range reservedPaths {
			if p == r || strings.HasPrefix(p, r+"/") {
				l.errorf(field, "%q is reserved for the admin listener", p)
				return false
			}
		}
		return true
	}
	return false
}

func pathChar(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return true
	}
	return strings.ContainsRune("-._~/@!$&'()+,;=", r)
}

// headerName checks an optional HTTP header name (an RFC 9110 token).
func (l *loader) headerName(field, v string) {
	if v == "" {
		return
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		l.errorf(field, "%q is not a valid header name", v)
		return
	}
}

// validCIDR accepts what both net (package ingest) and netip
// (AllowedPrefixes) read as a CIDR or a bare IP.
func validCIDR(s string) bool {
	if _, err := parsePrefix(s); err != nil {
		return false
	}
	if strings.Contains(s, "/") {
		_, _, err := net.ParseCIDR(s)
		return err == nil
	}
	return net.ParseIP(s) != nil
}

// parsePrefix reads a CIDR or a bare IP (as a one-address prefix).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// redactURL hides the user information of a URL (a NATS token sits in the
// user name, a password after it) for errors and dumps.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if err != nil && strings.Contains(s, "@") {
			return SecretText
		}
		return s
	}
	user := SecretText
	if _, has := u.User.Password(); has {
		user = u.User.Username() + ":" + SecretText
	}
	u.User = nil
	out := u.String()
	if i := strings.Index(out, "//"); i >= 0 {
		return out[:i+2] + user + "@" + out[i+2:]
	}
	return out
}

func (l *loader) validateHistory() {
	h := &l.c.History
	if h.Retention <= 0 {
		l.errorf("history.retention", "must be > 0, got %s", h.Retention)
	}
	if h.MaxEvents <= 0 {
		l.errorf("history.max_events", "must be > 0, got %d", h.MaxEvents)
	}
	if h.MaxRejected <= 0 {
		l.errorf("history.max_rejected", "must be > 0, got %d", h.MaxRejected)
	}
}
