package daemon

import "github.com/relayd/relayd/internal/metrics"

// Metrics returns the daemon's metrics.
func (d *Daemon) Metrics() *metrics.Metrics { return d.metrics }
