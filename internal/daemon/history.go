package daemon

import (
	"github.com/relayd/relayd/internal/admin"
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
