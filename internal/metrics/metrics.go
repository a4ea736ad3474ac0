// Package metrics declares relayd's Prometheus metrics on an injected registerer.
package metrics

import (
	"runtime"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/relayd/relayd/internal/operator"
	"github.com/relayd/relayd/internal/reply"
	"github.com/relayd/relayd/internal/verify"
)

// Reasons that belong to no package below: ingest refuses a sender's
// address before verifying anything, and dispatch gives up on a message
// that used all its attempts.
const (
	ReasonForbiddenIP = "forbidden_ip"
	ReasonMaxAttempts = "max_attempts"
)

// Fixed label values. Labels come from config names and these sets only,
// never from request data, so a sender cannot create series. The reasons
// are the ones verify and operator define.
var (
	VerificationReasons = append(slices.Clone(verify.Reasons), ReasonForbiddenIP)
	DispatchOutcomes    = []string{"delivered", "retry", "dead", "paused", "chat_gone", "conflict", "partial"}
	RetryReasons        = slices.Clone(operator.RetryReasons)
	// A 401 pauses dispatch and never dead-letters (the message is kept).
	DeadReasons = append(slices.DeleteFunc(slices.Clone(operator.PermanentReasons),
		func(r string) bool { return r == operator.ReasonUnauthorized }), ReasonMaxAttempts)
	// ReplyDeadReasons label relayd_dead_letters_total for a reply post:
	// the reply's permanent reason (permanent for any other), or
	// max_attempts.
	ReplyDeadReasons = append(slices.Clone(reply.PermanentReasons), operator.ReasonPermanent, ReasonMaxAttempts)
	RateLimitScopes  = []string{"account", "route"}
	// ReplySinks and ReplyOutcomes are the label values of
	// relayd_replies_total: the reply sink types, and what became of one
	// attempt to post.
	ReplySinks    = []string{"github_comment", "slack", "webhook"}
	ReplyOutcomes = []string{"sent", "retry", "dead"}
)

// Metrics holds every relayd metric. Create one per process with New.
type Metrics struct {
	HTTPRequests         *prometheus.CounterVec   // source, code
	VerificationFailures *prometheus.CounterVec   // source, reason
	EventsFiltered       *prometheus.CounterVec   // route
	MessagesEnqueued     *prometheus.CounterVec   // route
	DispatchAttempts     *prometheus.CounterVec   // route, outcome
	DispatchDuration     *prometheus.HistogramVec // route
	DeliveryLatency      *prometheus.HistogramVec // route
	Retries              *prometheus.CounterVec   // route, reason
	DeadLetters          *prometheus.CounterVec   // route, reason
	RateLimitWait        *prometheus.CounterVec   // scope
	IngestDuration       *prometheus.HistogramVec // source
	Duplicates           *prometheus.CounterVec   // source
	RouteErrors          *prometheus.CounterVec   // route, kind (filter | template)
	Redactions           *prometheus.CounterVec   // route
	Turns                *prometheus.CounterVec   // route
	TurnEvents           *prometheus.HistogramVec // route
	MessagesSuperseded   *prometheus.CounterVec   // route
	TurnsLimited         *prometheus.CounterVec   // route
	PromptsCut           *prometheus.CounterVec   // route
	Replies              *prometheus.CounterVec   // route, sink, outcome
	DispatchPaused       prometheus.Gauge
	ReloadSuccessful     prometheus.Gauge
	ReloadTimestamp      prometheus.Gauge
	BuildInfo            *prometheus.GaugeVec
}

// New creates the metrics and registers them, with the Go and process
// collectors, on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayd_http_requests_total", Help: "Webhook requests answered, by source and HTTP status code.",
		}, []string{"source", "code"}),
		VerificationFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayd_verification_failures_total", Help: "Webhooks rejected by signature or token verification.",
		}, []string{"source", "reason"}),
		EventsFiltered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayd_events_filtered_total", Help: "Events a route's filter did not match.",
		}, []string{"route"}),
		MessagesEnqueued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayd_messages_enqueued_total", Help: "Messages durably queued for dispatch.",
		}, []string{"route"}),
		DispatchAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayd_dispatch_attempts_total", Help: "Requests to /api/chat by outcome.",
		}, []string{"route", "outcome"}),
		DispatchDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "relayd_dispatch_duration_seconds", Help: "Duration of one /api/chat request.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"route"}),
		DeliveryLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "relayd_delivery_latency_seconds", Help: "From ingest to accepted by the Operator API.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}, []string{"route"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayd_retries_total", Help: "Attempts scheduled for retry, by reason.",
		}, []string{"route", "reason"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayd_dead_letters_total", Help: "Messages moved to the dead letters, by reason.",
		}, []string{"route", "reason"}),
		RateLimitWait: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayd_rate_limit_wait_seconds_total", Help: "Time spent waiting on rate limiters, by scope.",
		}, []string{"scope"}),
		IngestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "relayd_ingest_duration_seconds", Help: "From a webhook request's arrival to its answer (a durable store shows here).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"source"}),
		Duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayd_duplicates_total", Help: "Webhooks answered as duplicates of a delivery seen before.",
		}, []string{"source"}),
		RouteErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayd_route_errors_total", Help: "Events a route's filter or template failed on at runtime.",
		}, []string{"route", "kind"}),
		Redactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayd_redactions_total", Help: "Credentials replaced by [REDACTED] in prompts.",
		}, []string{"route"}),
		Turns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayd_turns_total", Help: "Turns delivered to /api/chat (one request each, carrying one event or more).",
		}, []string{"route"}),
		TurnEvents: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "relayd_turn_events", Help: "Events per delivered turn.",
			Buckets: []float64{1, 2, 3, 5, 10, 20, 50, 100},
		}, []string{"route"}),
		MessagesSuperseded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayd_messages_superseded_total", Help: "Messages acknowledged without being sent: a newer message of the same supersede key came first.",
		}, []string{"route"}),
		TurnsLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayd_turns_limited_total", Help: "Turns held back by the route's turn_limit until its window allows them.",
		}, []string{"route"}),
		PromptsCut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayd_prompts_cut_total", Help: "Prompts cut to max_prompt_bytes.",
		}, []string{"route"}),
		DispatchPaused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relayd_dispatch_paused", Help: "1 while dispatch is paused because the API rejects the key.",
		}),
		ReloadSuccessful: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relayd_config_last_reload_successful", Help: "Whether the last configuration reload attempt was successful.",
		}),
		ReloadTimestamp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relayd_config_last_reload_success_timestamp_seconds", Help: "Timestamp of the last successful configuration reload.",
		}),
		Replies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayd_replies_total", Help: "Attempts to post the agent's answer to a reply sink, by sink type and outcome.",
		}, []string{"route", "sink", "outcome"}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "relayd_build_info", Help: "Build information; always 1.",
		}, []string{"version", "revision", "goversion"}),
	}
	reg.MustRegister(
		m.HTTPRequests, m.VerificationFailures, m.EventsFiltered, m.MessagesEnqueued,
		m.DispatchAttempts, m.DispatchDuration, m.DeliveryLatency, m.Retries, m.DeadLetters,
		m.RateLimitWait, m.IngestDuration, m.Duplicates, m.RouteErrors, m.Redactions, m.PromptsCut,
		m.Turns, m.TurnEvents, m.MessagesSuperseded, m.TurnsLimited, m.Replies, m.DispatchPaused, m.ReloadSuccessful, m.ReloadTimestamp, m.BuildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	for _, s := range RateLimitScopes {
		m.RateLimitWait.WithLabelValues(s)
	}
	return m
}

// SetBuildInfo records the running build.
func (m *Metrics) SetBuildInfo(version, revision string) {
	m.BuildInfo.WithLabelValues(version, revision, runtime.Version()).Set(1)
}

// InitReplyLabels creates at zero the series a route with reply sinks
// adds: its replies by sink and outcome, and its dead replies by reason,
// so an alert on increase() sees the first one. Call it with InitLabels.
func (m *Metrics) InitReplyLabels(route string, sinks []string) {
	for _, s := range sinks {
		if !slices.Contains(ReplySinks, s) {
			continue
		}
		for _, o := range ReplyOutcomes {
			m.Replies.WithLabelValues(route, s, o)
		}
	}
	if len(sinks) > 0 {
		for _, r := range ReplyDeadReasons {
			m.DeadLetters.WithLabelValues(route, r)
		}
	}
}

// InitLabels creates every known series at zero so rate() works from the
// first scrape. Call it at start and after each reload.
func (m *Metrics) InitLabels(sources, routes []string) {
	for _, s := range sources {
		m.IngestDuration.WithLabelValues(s)
		m.Duplicates.WithLabelValues(s)
		for _, r := range VerificationReasons {
			m.VerificationFailures.WithLabelValues(s, r)
		}
		for _, c := range []string{"200", "202", "400", "401", "413", "503"} {
			m.HTTPRequests.WithLabelValues(s, c)
		}
	}
	for _, r := range routes {
		m.EventsFiltered.WithLabelValues(r)
		m.MessagesEnqueued.WithLabelValues(r)
		m.Redactions.WithLabelValues(r)
		m.PromptsCut.WithLabelValues(r)
		m.DispatchDuration.WithLabelValues(r)
		m.DeliveryLatency.WithLabelValues(r)
		m.Turns.WithLabelValues(r)
		m.TurnEvents.WithLabelValues(r)
		m.MessagesSuperseded.WithLabelValues(r)
		m.TurnsLimited.WithLabelValues(r)
		for _, o := range DispatchOutcomes {
			m.DispatchAttempts.WithLabelValues(r, o)
		}
		for _, x := range RetryReasons {
			m.Retries.WithLabelValues(r, x)
		}
		for _, x := range DeadReasons {
			m.DeadLetters.WithLabelValues(r, x)
		}
	}
}
