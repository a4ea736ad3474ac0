package daemon

import (
	"github.com/relayd/relayd/internal/admin"
	"github.com/relayd/relayd/internal/console"
	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/ingest"
)

// historyStore is a backend that keeps the history of requests (bbolt).
type historyStore interface {
	ingest.Recorder
	dispatch.History
	admin.Events
}

// events is the admin API's history, nil for a backend that keeps none.
func (d *Daemon) events() admin.Events {
	if hs, ok := d.store.(historyStore); ok {
		return hs
	}
	return nil
}

// consoleRoutes are the current config's routes as the console's dry-run
// page offers them.
func (d *Daemon) consoleRoutes() []console.Route {
	cfg := d.config()
	out := make([]console.Route, 0, len(cfg.Routes))
	for _, r := range cfg.Routes {
		out = append(out, console.Route{Name: r.Name, Source: r.Source, Filter: r.Filter, Template: r.Template})
	}
	return out
}
