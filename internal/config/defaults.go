package config

import (
	"time"

	"github.com/relayd/relayd/internal/prompt"
)

// Defaults, as documented on the fields in types.go.
const (
	DefaultListen            = ":8080"
	DefaultAdminListen       = "127.0.0.1:9090"
	DefaultMaxBodyBytes      = 1 << 20
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultStorageBackend    = "bbolt"
	DefaultStoragePath       = "./data/relayd.db"
	DefaultMaxPending        = 100000
	DefaultMinFreeBytes      = 64 << 20
	DefaultDedupeTTL         = 24 * time.Hour
	DefaultHistoryRetention  = 168 * time.Hour
	DefaultHistoryMaxEvents  = 100000
	DefaultHistoryMaxReject  = 10000
	DefaultNATSStream        = "RELAYD"
	DefaultNATSPartitions    = 16
	DefaultNATSReplicas      = 1
	DefaultOperatorBaseURL   = "https://operator.io"
	DefaultOperatorTimeout   = 60 * time.Second
	DefaultOperatorResponse  = "stream"
	DefaultOperatorMaxTurn   = 30 * time.Minute
	DefaultConcurrency       = 8
	DefaultRatePerSecond     = 2
	DefaultRateBurst         = 5
	DefaultRetryInitial      = time.Second
	DefaultRetryMax          = 10 * time.Minute
	DefaultRetryMaxAttempts  = 20
	DefaultLogLevel          = "info"
	DefaultLogFormat         = "json"
	DefaultSourceBody        = "json"
	DefaultVerifyTolerance   = 5 * time.Minute
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultShutdownTimeout   = 30 * time.Second
	DefaultMaxPromptBytes    = 32 << 10
	// DefaultCoalesceMaxEvents is coalesce.max_events when coalesce is set.
	DefaultCoalesceMaxEvents = 20
	// MaxCoalesceEvents bounds coalesce.max_events.
	MaxCoalesceEvents = 1000
	// MaxMaxPromptBytes is the largest max_prompt_bytes: far beyond what
	// an agent reads in one turn, it catches a misplaced digit.
	MaxMaxPromptBytes   = 16 << 20
	DefaultGitHubAPIURL = "https://api.github.com"
)

// defaults fills the fields the file left out. A field written with a zero
// value keeps it, so "concurrency: 0" is reported rather than silently
// replaced.
func (l *loader) defaults() {
	c := l.c
	str := func(field string, v *string, def string) {
		if !l.written(field) && *v == "" {
			*v = def
		}
	}
	num := func(field string, v *int, def int) {
		if !l.written(field) {
			*v = def
		}
	}
	i64 := func(field string, v *int64, def int64) {
		if !l.written(field) {
			*v = def
		}
	}
	dur := func(field string, v *Duration, def time.Duration) {
		if !l.written(field) {
			*v = Duration(def)
		}
	}

	s := &c.Server
	str("server.listen", &s.Listen, DefaultListen)
	str("server.admin_listen", &s.AdminListen, DefaultAdminListen)
	i64("server.max_body_bytes", &s.MaxBodyBytes, DefaultMaxBodyBytes)
	i64("server.max_inflated_bytes", &s.MaxInflatedBytes, 4*s.MaxBodyBytes)
	// As ingest.DefaultMaxInflight: 32 bodies, at most 32 MiB, at least one inflated body.
	i64("server.max_inflight_body_bytes", &s.MaxInflightBodyBytes, max(min(32*s.MaxBodyBytes, 32<<20), s.MaxInflatedBytes))
	num("server.max_header_bytes", &s.MaxHeaderBytes, DefaultMaxHeaderBytes)
	dur("server.read_header_timeout", &s.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	dur("server.read_timeout", &s.ReadTimeout, DefaultReadTimeout)
	dur("server.write_timeout", &s.WriteTimeout, DefaultWriteTimeout)
	dur("server.idle_timeout", &s.IdleTimeout, DefaultIdleTimeout)
	dur("server.shutdown_timeout", &s.ShutdownTimeout, DefaultShutdownTimeout)

	st := &c.Storage
	str("storage.backend", &st.Backend, DefaultStorageBackend)
	str("storage.path", &st.Path, DefaultStoragePath)
	num("storage.max_pending", &st.MaxPending, DefaultMaxPending)
	i64("storage.min_free_bytes", &st.MinFreeBytes, DefaultMinFreeBytes)
	dur("storage.dedupe_ttl", &st.DedupeTTL, DefaultDedupeTTL)
	str("storage.nats.stream", &st.NATS.Stream, DefaultNATSStream)
	num("storage.nats.partitions", &st.NATS.Partitions, DefaultNATSPartitions)
	num("storage.nats.replicas", &st.NATS.Replicas, DefaultNATSReplicas)

	h := &c.History
	dur("history.retention", &h.Retention, DefaultHistoryRetention)
	num("history.max_events", &h.MaxEvents, DefaultHistoryMaxEvents)
	num("history.max_rejected", &h.MaxRejected, DefaultHistoryMaxReject)

	op := &c.Operator
	str("operator.base_url", &op.BaseURL, DefaultOperatorBaseURL)
	dur("operator.timeout", &op.Timeout, DefaultOperatorTimeout)
	str("operator.response", &op.Response, DefaultOperatorResponse)
	dur("operator.max_turn", &op.MaxTurn, DefaultOperatorMaxTurn)
	num("operator.concurrency", &op.Concurrency, DefaultConcurrency)
	if !l.written("operator.rate_limit.per_second") {
		op.RateLimit.PerSecond = DefaultRatePerSecond
	}
	num("operator.rate_limit.burst", &op.RateLimit.Burst, DefaultRateBurst)
	dur("operator.retry.initial", &op.Retry.Initial, DefaultRetryInitial)
	dur("operator.retry.max", &op.Retry.Max, DefaultRetryMax)
	num("operator.retry.max_attempts", &op.Retry.MaxAttempts, DefaultRetryMaxAttempts)
	if op.Preamble == nil && !l.written("operator.preamble") {
		p := prompt.DefaultPreamble
		op.Preamble = &p
	}
	if c.Redact.Builtin == nil {
		on := true
		c.Redact.Builtin = &on
	}

	str("log.level", &c.Log.Level, DefaultLogLevel)
	logFormat := DefaultLogFormat
	if l.opts.Dev { // serve --dev: a person at a terminal reads the logs
		logFormat = "text"
	}
	str("log.format", &c.Log.Format, logFormat)

	for i := range c.Sources {
		src := &c.Sources[i]
		p := index("sources", i)
		if src.Body == "" {
			src.Body = DefaultSourceBody
		}
		// Package ingest reads 0 as "the storage default" too; filling it
		// in makes dumps show the window that applies.
		if src.DedupeTTL == 0 {
			src.DedupeTTL = st.DedupeTTL
		}
		if src.Verify != nil {
			dur(p+".verify.tolerance", &src.Verify.Tolerance, DefaultVerifyTolerance)
		}
	}
	for i := range c.Routes {
		if rl := c.Routes[i].RateLimit; rl != nil {
			num(index("routes", i)+".rate_limit.burst", &rl.Burst, 1)
		}
		num(index("routes", i)+".max_prompt_bytes", &c.Routes[i].MaxPromptBytes, DefaultMaxPromptBytes)
		for j := range c.Routes[i].Reply {
			rs := &c.Routes[i].Reply[j]
			if rs.Type == ReplyGitHub {
				str(index(index("routes", i)+".reply", j)+".api_url", &rs.APIURL, DefaultGitHubAPIURL)
			}
		}
		if co := c.Routes[i].Coalesce; co != nil {
			num(index("routes", i)+".coalesce.max_events", &co.MaxEvents, DefaultCoalesceMaxEvents)
		}
	}
}
