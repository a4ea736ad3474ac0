package daemon

import (
	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/dispatch"
)

// settings derives the dispatcher's settings from a config.
func settings(cfg *config.Config) dispatch.Settings {
	s := dispatch.Settings{
		Concurrency:  cfg.Operator.Concurrency,
		RateLimit:    rateLimit(cfg.Operator.RateLimit),
		Retry:        retry(cfg.Operator.Retry),
		Routes:       make(map[string]dispatch.RouteSettings, len(cfg.Routes)),
		DrainTimeout: cfg.Server.ShutdownTimeout.D(),
		Preamble:     cfg.PreambleFor(nil),
	}
	for i := range cfg.Routes {
		r := &cfg.Routes[i]
		rs := dispatch.RouteSettings{Preamble: cfg.PreambleFor(r)}
		if r.RateLimit != nil {
			rl := rateLimit(*r.RateLimit)
			rs.RateLimit = &rl
		}
		if c := r.ConversationReset; c != nil {
			rs.Reset = &dispatch.ConversationReset{After: c.After.D(), Messages: c.Messages}
		}
		if tl := r.TurnLimit; tl != nil {
			rs.TurnLimit = &dispatch.TurnLimit{Turns: tl.Turns, Per: tl.Per.D()}
		}
		s.Routes[r.Name] = rs
	}
	return s
}

func rateLimit(rl config.RateLimit) dispatch.RateLimit {
	return dispatch.RateLimit{PerSecond: rl.PerSecond, Burst: rl.Burst}
}

func retry(r config.Retry) dispatch.Retry {
	return dispatch.Retry{Initial: r.Initial.D(), Max: r.Max.D(), MaxAttempts: r.MaxAttempts}
}
