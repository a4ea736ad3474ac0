package daemon

import (
	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/ingest"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/route"
)

// TurnSetter is a backend that forms turns by route policy.
type TurnSetter interface {
	SetTurnPolicies(queue.TurnPolicies)
}

// compiledRoutes indexes a table's compiled routes by name.
func compiledRoutes(t *ingest.Table) map[string]*route.Route {
	out := map[string]*route.Route{}
	for _, s := range t.Sources() {
		for _, r := range s.Routes {
			out[r.Name] = r
		}
	}
	return out
}

// batchRenderer is a route's batch_template as dispatch renders it; nil
// for the plain format.
func batchRenderer(r *route.Route) dispatch.TurnRenderer {
	if r == nil || !r.HasBatchTemplate() {
		return nil
	}
	return r.RenderTurn
}

// withBatches adds each route's batch renderer to dispatch settings.
func withBatches(s dispatch.Settings, t *ingest.Table) dispatch.Settings {
	routes := compiledRoutes(t)
	for name, rs := range s.Routes {
		rs.Batch = batchRenderer(routes[name])
		s.Routes[name] = rs
	}
	return s
}

// turnPolicies maps each route's coalesce, supersede and budget to the
// queue's turn policy.
func turnPolicies(cfg *config.Config, t *ingest.Table) queue.TurnPolicies {
	routes := compiledRoutes(t)
	m := make(map[string]queue.TurnPolicy, len(cfg.Routes))
	for _, rc := range cfg.Routes {
		var p queue.TurnPolicy
		if co := rc.Coalesce; co != nil {
			p.MaxEvents, p.Wait = co.MaxEvents, co.Wait.D()
		}
		p.Supersede = rc.Supersede != ""
		if p.MaxEvents > 1 {
			p.Fits = dispatch.TurnFits(batchRenderer(routes[rc.Name]), rc.MaxPromptBytes)
		}
		m[rc.Name] = p
	}
	return func(route string) queue.TurnPolicy { return m[route] }
}

// applyTurns gives the store the config's turn policies.
func applyTurns(st Backend, cfg *config.Config, t *ingest.Table) {
	if ts, ok := st.(TurnSetter); ok {
		ts.SetTurnPolicies(turnPolicies(cfg, t))
	}
}
