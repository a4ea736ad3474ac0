// Package config loads relay.yaml: environment expansion, _file twins,
// strict decoding and validation that names the offending field.
//
// Loading runs in this order: ${VAR} expansion on every scalar value,
// strict decoding (unknown keys, wrong types), _file twins and
// template_file, defaults, validation. Every problem found is reported, each
// as a *FieldError naming its field, the list item's name and the line
// (`routes[2] "ci-failures".source (line 30): …`). Expressions and templates
// are compiled by package route, whose errors the caller prefixes with the
// same field paths and passes through Config.Describe to read the same way.
//
// Secrets have their own types (Secret, SecretList) that print and marshal
// as <secret>; no error shows a secret or a value that came from the
// environment.
//
// Top-level keys starting with "x-" are ignored, so a file can hold YAML
// anchors (x-github: &github {type: github, …}) for the values it repeats.
package config

import (
	"net/netip"
	"strings"
	"time"

	"github.com/relayd/relayd/internal/prompt"
)

// Config is relay.yaml after loading. Durations are parsed, defaults applied,
// secrets resolved from files; expr and templates are compiled elsewhere
// (package route) but from the same Load call, so every error names its field.
type Config struct {
	Server   Server   `yaml:"server"`
	Storage  Storage  `yaml:"storage"`
	Operator Operator `yaml:"operator"`
	Log      Log      `yaml:"log"`
	Sources  []Source `yaml:"sources"` // at least one
	Routes   []Route  `yaml:"routes"`
	// Redact configures what is redacted from every turn's text; a route's
	// redact adds to it (see RedactFor).
	Redact Redact `yaml:"redact"`
	// History bounds the record of every request kept in storage.
	History History `yaml:"history"`

	// Path is the file the config was read from ("" when from bytes).
	Path string `yaml:"-"`

	// md holds where each field was written, the names of list items and
	// the values no error may show, for errors found after loading (see
	// Describe). A func, so that no fmt verb prints what it holds.
	md func() *meta
}

func (c *Config) meta() *meta {
	if c.md == nil {
		return newMeta()
	}
	return c.md()
}

// Server configures the two listeners. The public one serves source paths
// only; the admin one serves /metrics, /healthz, /readyz and /admin/*.
type Server struct {
	Listen            string   `yaml:"listen"`              // default ":8080"
	AdminListen       string   `yaml:"admin_listen"`        // default "127.0.0.1:9090"; must differ from listen
	MaxBodyBytes      int64    `yaml:"max_body_bytes"`      // default 1048576 (1 MiB)
	MaxInflatedBytes  int64    `yaml:"max_inflated_bytes"`  // gzip bodies; default 4 x max_body_bytes
	MaxHeaderBytes    int      `yaml:"max_header_bytes"`    // default 65536 (64 KiB)
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"` // default 5s
	ReadTimeout       Duration `yaml:"read_timeout"`        // default 30s
	WriteTimeout      Duration `yaml:"write_timeout"`       // default 30s
	IdleTimeout       Duration `yaml:"idle_timeout"`        // default 120s
	ShutdownTimeout   Duration `yaml:"shutdown_timeout"`    // default 30s: in-flight work drains within it
	// AdminToken is an optional bearer for /admin/*. When the key is written
	// it must not end up empty (an unset ${VAR:-} would otherwise silently
	// leave the admin API open); leave the key out to run without a token.
	AdminToken        Secret `yaml:"admin_token"`
	AdminTokenFile    string `yaml:"admin_token_file"`    // _file twin, relative to the config file
	AdminTokenMetrics bool   `yaml:"admin_token_metrics"` // also protect /metrics and health
	TrustProxy        bool   `yaml:"trust_proxy"`         // honour X-Forwarded-For for allow_cidrs
	// AdminHosts are the host names the admin listener answers besides
	// localhost and IP literals (a guard against DNS rebinding, see
	// admin.HostPolicy): the names a reverse proxy or browser uses for it.
	AdminHosts []string `yaml:"admin_hosts"`

	// MaxInflightBodyBytes bounds the bytes of all request bodies being
	// read at once (past it: 503 overloaded); default 32 x max_body_bytes,
	// at most 32 MiB, at least max_inflated_bytes.
	MaxInflightBodyBytes int64 `yaml:"max_inflight_body_bytes"`
}

// Storage selects the queue and conversation-state backend.
type Storage struct {
	Backend string `yaml:"backend"` // bbolt (default) | nats
	// Path is the bbolt file; default "./data/relayd.db". Unlike the _file
	// twins, a relative path resolves against the working directory of the
	// process, as in the contract's example.
	Path       string   `yaml:"path"`
	MaxPending int      `yaml:"max_pending"` // default 100000; 0 means no limit
	NATS       NATS     `yaml:"nats"`        // checked only when backend is nats
	DedupeTTL  Duration `yaml:"dedupe_ttl"`  // default for sources; default 24h

	// MinFreeBytes is the free-space floor of the bbolt file's file system:
	// below it ingest answers 503 and /readyz fails, so acks and the log's
	// replay keep room to commit. Default 64 MiB; 0 means no floor.
	MinFreeBytes int64 `yaml:"min_free_bytes"`
}

// History bounds the history of requests: by age, and by count with the
// oldest going first.
type History struct {
	Retention   Duration `yaml:"retention"`    // default 168h
	MaxEvents   int      `yaml:"max_events"`   // default 100000
	MaxRejected int      `yaml:"max_rejected"` // default 10000: rejected requests, kept without bodies
}

// NATS configures the JetStream backend.
type NATS struct {
	URL  string   `yaml:"url"`  // one URL or a comma-separated list
	URLs []string `yaml:"urls"` // alternatively a list (not both)
	// Stream is the JetStream stream name; default "RELAYD".
	Stream string `yaml:"stream"`
	// CredsFile, like the TLS files, is resolved against the config file's
	// directory when relative; the loaded value is the resolved path.
	CredsFile  string `yaml:"creds_file"`
	Replicas   int    `yaml:"replicas"`   // stream replicas, 1 to 5; default 1
	Partitions int    `yaml:"partitions"` // P: partitions, each owned by one replica at a time; default 16
	TLS        TLS    `yaml:"tls"`
}

// Servers returns the server URLs from url (split on commas) and urls.
func (n NATS) Servers() []string {
	var out []string
	for u := range strings.SplitSeq(n.URL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	for _, u := range n.URLs {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// TLS holds client TLS files; relative paths resolve against the config
// file's directory.
type TLS struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"` // with key_file, or neither
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// Operator configures the Operator API client and the dispatcher.
type Operator struct {
	BaseURL string `yaml:"base_url"` // default "https://operator.io"; trailing slashes removed
	// APIKey is required, except in dev mode (relayd serve --dev), where
	// the in-process fake accepts any key.
	APIKey      Secret    `yaml:"api_key"`
	APIKeyFile  string    `yaml:"api_key_file"` // _file twin, relative to the config file
	Version     string    `yaml:"version"`      // sent as Operator-Version when set
	Timeout     Duration  `yaml:"timeout"`      // default 60s
	Concurrency int       `yaml:"concurrency"`  // default 8
	RateLimit   RateLimit `yaml:"rate_limit"`   // default {per_second: 2, burst: 5}
	Retry       Retry     `yaml:"retry"`

	// Response is how answers are read: "stream" (SSE, the API's default)
	// or "json" (x-response-format: json). Default "stream". Timeout is
	// then the longest silence of an answer, and MaxTurn caps a whole turn.
	Response string   `yaml:"response"`
	MaxTurn  Duration `yaml:"max_turn"` // default 30m

	// Preamble starts the first turn of every new chat. Left out it is
	// prompt.DefaultPreamble; written as "" there is none. A route's
	// preamble overrides it (see PreambleFor).
	Preamble *string `yaml:"preamble"`
}

// Redact is redact: {patterns, builtin}: credentials replaced by
// [REDACTED] in every turn's text.
type Redact struct {
	// Patterns are Go regular expressions (RE2); when one has capturing
	// groups, only what they capture is replaced. Compiled at load.
	Patterns []string `yaml:"patterns"`
	// Builtin turns the built-in kinds on or off; default true at the top
	// level, and on a route what the top level says.
	Builtin *bool `yaml:"builtin"`
}

// RateLimit is a token bucket.
type RateLimit struct {
	PerSecond float64 `yaml:"per_second"` // > 0
	Burst     int     `yaml:"burst"`      // >= 1; default 1 on a route
}

// Retry is the dispatcher's backoff: exponential with full jitter, then
// dead-letter.
type Retry struct {
	Initial     Duration `yaml:"initial"`      // default 1s
	Max         Duration `yaml:"max"`          // default 10m
	MaxAttempts int      `yaml:"max_attempts"` // default 20
}

// Log configures log/slog.
type Log struct {
	Level  string `yaml:"level"`  // debug|info|warn|error; default info
	Format string `yaml:"format"` // json (default) | text
}

// Source is one ingest endpoint and how its senders prove who they are.
type Source struct {
	Name           string   `yaml:"name"`   // [a-z0-9][a-z0-9_-]*: it is a metrics label
	Path           string   `yaml:"path"`   // "/hooks/github"; not under /admin, /metrics, /healthz, /readyz
	Verify         *Verify  `yaml:"verify"` // required; type none must be explicit
	EventHeader    string   `yaml:"event_header"`
	DeliveryHeader string   `yaml:"delivery_header"`
	Body           string   `yaml:"body"`        // json (default) | text | auto: how to parse the body
	Unwrap         string   `yaml:"unwrap"`      // "" | s3 | pubsub | cloudevents
	DedupeTTL      Duration `yaml:"dedupe_ttl"`  // 0 or absent: storage.dedupe_ttl
	AllowCIDRs     []string `yaml:"allow_cidrs"` // CIDRs or bare IPs; empty allows all
	// Delivery is an expr giving the delivery id (the dedupe key) from the
	// event itself, e.g. "body.id"; package ingest defaults it for the
	// stripe and circleci presets.
	Delivery string `yaml:"delivery"`
}

// AllowedPrefixes returns AllowCIDRs parsed, a bare IP as a single-address
// prefix. Entries that do not parse are skipped; Load rejects them.
func (s *Source) AllowedPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, c := range s.AllowCIDRs {
		if p, err := parsePrefix(c); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Verify is one source's proof-of-sender settings; which fields apply
// depends on Type (see package verify, which checks them).
type Verify struct {
	Type    string     `yaml:"type"` // github|gitlab|standard-webhooks|hmac|bearer|none|buildkite|circleci|stripe|bitbucket|gitea|forgejo|sns|oidc|basic
	Secrets SecretList `yaml:"secrets"`
	// SecretsFile holds one secret per line; blank lines and lines starting
	// with # are skipped. Relative to the config file. Not with secrets.
	SecretsFile string   `yaml:"secrets_file"`
	Header      string   `yaml:"header"`
	Algorithm   string   `yaml:"algorithm"` // sha1|sha256|sha512
	Encoding    string   `yaml:"encoding"`  // hex|base64
	Prefix      string   `yaml:"prefix"`
	Tolerance   Duration `yaml:"tolerance"` // timestamped schemes; default 5m
	// Timestamped hmac form: the header holds key=value pairs.
	Timestamped  bool   `yaml:"timestamped"`
	TimestampKey string `yaml:"timestamp_key"` // e.g. "t", "timestamp"
	SignatureKey string `yaml:"signature_key"` // e.g. "v1", "signature"
	Separator    string `yaml:"separator"`     // between pairs; default "," (applied by package verify)

	// sns: the TopicArn allow-list (empty allows all) and where
	// SigningCertURL and SubscribeURL may point (default sns.*.amazonaws.com).
	Topics    []string `yaml:"topics"`
	CertHosts []string `yaml:"cert_hosts"`
	// CAFile (sns, oidc) adds a CA bundle for the certificates and keys
	// fetched; relative to the config file, resolved at load.
	CAFile string `yaml:"ca_file"`
	// oidc: the token's iss and aud, the optional email claim (with
	// email_verified true), and the JWKS URL (default: the jwks_uri of the
	// issuer's discovery document).
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	Email    string `yaml:"email"`
	JWKSURL  string `yaml:"jwks_url"`
	// basic: the user name; secrets are the passwords.
	Username string `yaml:"username"`
}

// Route turns events of one source into prompts in conversations.
type Route struct {
	Name         string     `yaml:"name"`         // [a-z0-9][a-z0-9_-]*: it is a metrics label
	Source       string     `yaml:"source"`       // a source's name
	Filter       string     `yaml:"filter"`       // expr, bool; empty matches all
	Conversation string     `yaml:"conversation"` // expr giving the key; empty: one per route
	RateLimit    *RateLimit `yaml:"rate_limit"`   // optional, on top of operator.rate_limit
	// Template is the prompt (text/template). Written inline, ${VAR} is
	// expanded like any value (write $$ for a literal $; {{ $x }} passes
	// as is). With template_file (relative to the config file) it is read
	// from there verbatim, with no expansion. Exactly one of the two is set.
	Template          string             `yaml:"template"`
	TemplateFile      string             `yaml:"template_file"`
	ConversationReset *ConversationReset `yaml:"conversation_reset"`
	// Preamble overrides operator.preamble for this route's new chats;
	// "" for none, left out for operator.preamble.
	Preamble *string `yaml:"preamble"`
	// Redact adds patterns to the top-level redact, and its builtin, when
	// written, overrides the top-level one.
	Redact *Redact `yaml:"redact"`
	// MaxPromptBytes bounds the text of one turn (a preamble comes on
	// top); default 32768.
	MaxPromptBytes int `yaml:"max_prompt_bytes"`
	// Reply lists where the agent's answer to each turn goes; optional.
	Reply []ReplySink `yaml:"reply"`
	// ReplyTemplate renders the answer for the reply sinks (text/template;
	// sees .reply, .chat_id, .route, .conversation, .events, .partial).
	// Package reply compiles it; empty means "{{ .reply }}".
	ReplyTemplate string `yaml:"reply_template"`
	// Coalesce lets one turn carry several events of a conversation.
	Coalesce *Coalesce `yaml:"coalesce"`
	// Supersede is an expr giving a key: a message is never sent when a
	// newer one of the same route, conversation and key came first.
	Supersede string `yaml:"supersede"`
	// TurnLimit is the loop guard: at most Turns turns per Per per
	// conversation; past it messages wait.
	TurnLimit *TurnLimit `yaml:"turn_limit"`
	// BatchTemplate renders a turn of several events (text/template over
	// .events, .conversation, .route); empty: "N events:" and the prompts.
	BatchTemplate string `yaml:"batch_template"`
}

// ReplySink is one destination of a route's replies; which fields apply
// depends on Type. Token, URL and Secret are secrets (a Slack incoming
// webhook URL is its own credential), each with a _file twin.
type ReplySink struct {
	Type       string `yaml:"type"`       // github_comment | slack | webhook
	Token      Secret `yaml:"token"`      // github_comment
	TokenFile  string `yaml:"token_file"` // _file twin, relative to the config file
	APIURL     string `yaml:"api_url"`    // github_comment; default https://api.github.com (Enterprise: https://HOST/api/v3)
	URL        Secret `yaml:"url"`        // slack (incoming webhook) and webhook
	URLFile    string `yaml:"url_file"`
	Secret     Secret `yaml:"secret"` // webhook: whsec_ + base64 (Standard Webhooks)
	SecretFile string `yaml:"secret_file"`
}

// Coalesce gathers a conversation's due events into one turn.
type Coalesce struct {
	Wait      Duration `yaml:"wait"`       // a first message is due this long after it was accepted
	MaxEvents int      `yaml:"max_events"` // events per turn; default 20
}

// TurnLimit is a route's loop guard.
type TurnLimit struct {
	Turns int      `yaml:"turns"`
	Per   Duration `yaml:"per"`
}

// ConversationReset starts a fresh chat once the current one is older than
// After or has had Messages messages; zero disables either bound.
type ConversationReset struct {
	After    Duration `yaml:"after"`
	Messages int      `yaml:"messages"`
}

// PreambleFor returns the preamble for new chats of route r: the route's
// when it has one, else operator.preamble ("" for none).
func (c *Config) PreambleFor(r *Route) string {
	if r != nil && r.Preamble != nil {
		return *r.Preamble
	}
	if c.Operator.Preamble != nil {
		return *c.Operator.Preamble
	}
	return prompt.DefaultPreamble
}

// RedactFor returns the redaction options for route r: the top-level
// patterns then the route's, and the route's builtin when written, else
// the top level's (default true). Load has compiled every pattern, so
// prompt.NewRedactor does not fail on them.
func (c *Config) RedactFor(r *Route) prompt.RedactOptions {
	opts := prompt.RedactOptions{Builtin: c.Redact.Builtin == nil || *c.Redact.Builtin}
	opts.Patterns = append(opts.Patterns, c.Redact.Patterns...)
	if r != nil && r.Redact != nil {
		opts.Patterns = append(opts.Patterns, r.Redact.Patterns...)
		if r.Redact.Builtin != nil {
			opts.Builtin = *r.Redact.Builtin
		}
	}
	return opts
}

// Duration is a time.Duration written as "1s", "10m", "24h" in YAML, or as
// a plain integer number of seconds.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// SourceByName returns the source called name.
func (c *Config) SourceByName(name string) (*Source, bool) {
	for i := range c.Sources {
		if c.Sources[i].Name == name {
			return &c.Sources[i], true
		}
	}
	return nil, false
}
