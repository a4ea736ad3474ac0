package ingest

import (
	"time"

	"github.com/labstack/echo/v4"
)

// observe times every webhook request from its arrival to its answer, by
// source: for an accepted event that includes the durable write, so a slow
// disk or fsync shows here first.
func (h *Handler) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if h.o.Metrics == nil {
			return next(c)
		}
		start := time.Now()
		err := next(c)
		name := unknownSource
		if src, ok := h.table.Load().byPath[c.Request().URL.Path]; ok {
			name = src.Name
		}
		h.o.Metrics.IngestDuration.WithLabelValues(name).Observe(time.Since(start).Seconds())
		return err
	}
}
