package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/relayd/relayd/internal/history"
)

// Events is the history of requests as the admin API reads it.
type Events interface {
	Events(ctx context.Context, q history.Query) (history.Page, error)
	// Event returns the record with that id, or the original record of
	// that delivery id; history.ErrNotFound when none.
	Event(ctx context.Context, id string) (history.Record, error)
}

// Pipeline runs stored events through the current config.
type Pipeline interface {
	// Replay routes, queues and records rec again as delivery.
	Replay(ctx context.Context, rec history.Record, delivery string) ([]string, error)
	// DryRun renders recs through a route, with the template and filter
	// replaced when not empty; nothing is sent or stored.
	DryRun(ctx context.Context, route, template, filter string, recs []history.Record) ([]history.Trial, error)
	// RouteSource is the source a route of the current config takes.
	RouteSource(route string) (string, bool)
}

const (
	maxDryRunEvents = 200
)

func (s *server) noHistory(c echo.Context) error {
	return jsonError(c, http.StatusNotImplemented, "not_implemented", history.ErrUnsupported.Error())
}

func (s *server) historyError(c echo.Context, err error) error {
	if errors.Is(err, history.ErrNotFound) {
		return jsonError(c, http.StatusNotFound, "not_found", "no such event")
	}
	if errors.Is(err, history.ErrUnsupported) {
		return s.noHistory(c)
	}
	return s.storeError(c, err)
}

func (s *server) listEvents(c echo.Context) error {
	if s.o.Events == nil {
		return s.noHistory(c)
	}
	q := history.Query{Source: c.QueryParam("source"), Route: c.QueryParam("route"),
		Outcome: c.QueryParam("outcome"), Before: c.QueryParam("before")}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return jsonError(c, http.StatusBadRequest, "bad_request", "limit must be a positive number")
		}
		q.Limit = n
	}
	page, err := s.o.Events.Events(c.Request().Context(), q)
	if err != nil {
		return s.historyError(c, err)
	}
	return c.JSON(http.StatusOK, page)
}

func (s *server) getEvent(c echo.Context) error {
	if s.o.Events == nil {
		return s.noHistory(c)
	}
	rec, err := s.o.Events.Event(c.Request().Context(), param(c, "delivery"))
	if err != nil {
		return s.historyError(c, err)
	}
	return c.JSON(http.StatusOK, rec)
}

func (s *server) replayEvent(c echo.Context) error {
	if s.o.Events == nil || s.o.Pipeline == nil {
		return s.noHistory(c)
	}
	ctx := c.Request().Context()
	rec, err := s.o.Events.Event(ctx, param(c, "delivery"))
	if err != nil {
		return s.historyError(c, err)
	}
	if rec.Kind != history.Accepted {
		return jsonError(c, http.StatusConflict, "not_replayable", "only accepted events keep a body to replay")
	}
	delivery, err := history.ReplayDelivery(ctx, rec.Delivery, s.o.Events.Event)
	if errors.Is(err, history.ErrTooManyReplays) {
		return jsonError(c, http.StatusConflict, "too_many_replays", "this event was replayed too often")
	}
	if err != nil {
		return s.historyError(c, err)
	}
	routes, err := s.o.Pipeline.Replay(ctx, rec, delivery)
	if err != nil {
		status := http.StatusUnprocessableEntity
		var hs interface{ HTTPStatus() int }
		if errors.As(err, &hs) && hs.HTTPStatus() == http.StatusServiceUnavailable {
			status = http.StatusServiceUnavailable // queue full, storage unavailable: try again
		}
		return jsonError(c, status, "replay_failed", err.Error())
	}
	if routes == nil {
		routes = []string{}
	}
	s.o.Logger.Info("event replayed", "delivery", rec.Delivery, "new_delivery", delivery, "routes", routes)
	return c.JSON(http.StatusAccepted, map[string]any{"delivery": delivery, "routes": routes})
}

type dryRunRequest struct {
	Route    string   `json:"route"`
	Template string   `json:"template"`
	Filter   string   `json:"filter"`
	Events   []string `json:"events"`
	Last     int      `json:"last"`
}

func (s *server) dryRun(c echo.Context) error {
	if s.o.Events == nil || s.o.Pipeline == nil {
		return s.noHistory(c)
	}
	var req dryRunRequest
	if err := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, 1<<20)).Decode(&req); err != nil {
		return jsonError(c, http.StatusBadRequest, "bad_request", "body must be JSON: "+err.Error())
	}
	switch {
	case req.Route == "":
		return jsonError(c, http.StatusBadRequest, "bad_request", "route is required")
	case len(req.Events) == 0 && req.Last <= 0:
		return jsonError(c, http.StatusBadRequest, "bad_request", "give events or last")
	case len(req.Events) > maxDryRunEvents || req.Last > maxDryRunEvents:
		return jsonError(c, http.StatusBadRequest, "bad_request", fmt.Sprintf("at most %d events", maxDryRunEvents))
	}
	ctx := c.Request().Context()
	var recs []history.Record
	for _, id := range req.Events {
		rec, err := s.o.Events.Event(ctx, id)
		if err != nil {
			if errors.Is(err, history.ErrNotFound) {
				return jsonError(c, http.StatusNotFound, "not_found", "no such event: "+id)
			}
			return s.historyError(c, err)
		}
		recs = append(recs, rec)
	}
	if req.Last > 0 {
		// The last events of the route's source, whole; a route new in
		// this config has no outcomes of its own to select by.
		src, ok := s.o.Pipeline.RouteSource(req.Route)
		if !ok {
			return jsonError(c, http.StatusNotFound, "not_found", "no such route: "+req.Route)
		}
		// A page may come back short with a next (the storage reads a
		// window of records per call): go on until there are enough.
		var sums []history.Record
		for before := ""; ; {
			page, err := s.o.Events.Events(ctx, history.Query{Source: src, Outcome: history.Accepted, Limit: req.Last - len(sums), Before: before})
			if err != nil {
				return s.historyError(c, err)
			}
			sums = append(sums, page.Events...)
			if page.Next == "" || len(sums) >= req.Last {
				break
			}
			before = page.Next
		}
		for _, sum := range sums {
			rec, err := s.o.Events.Event(ctx, sum.ID)
			if errors.Is(err, history.ErrNotFound) {
				// A backend that finds accepted events by delivery id only.
				rec, err = s.o.Events.Event(ctx, sum.Delivery)
			}
			if err != nil {
				continue // swept meanwhile
			}
			recs = append(recs, rec)
		}
	}
	trials, err := s.o.Pipeline.DryRun(ctx, req.Route, req.Template, req.Filter, recs)
	if err != nil {
		return jsonError(c, http.StatusBadRequest, "dry_run_failed", err.Error())
	}
	return c.JSON(http.StatusOK, map[string]any{"route": req.Route, "results": trials})
}
