// Package admin serves the private listener: metrics, health, reload, and
// the dead-letter and conversation API that `relayd dlq` and `relayd chats` call.
package admin

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/relayd/relayd/internal/queue"
)

// DeadLetters is the dead-letter store as the admin API uses it.
type DeadLetters interface {
	ListDead(ctx context.Context, route string) ([]queue.DeadLetter, error)
	GetDead(ctx context.Context, id string) (queue.DeadLetter, error)
	ReplayDead(ctx context.Context, id string) (int, error)
	ReplayAllDead(ctx context.Context, route string) (int, error)
	DropDead(ctx context.Context, id string) (int, error)
}

// Chats is the conversation memory as the admin API uses it.
type Chats interface {
	ListChats(ctx context.Context) ([]queue.Chat, error)
	DeleteChat(ctx context.Context, route, key string) error
}

// Check is one readiness condition.
type Check struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Options wires the admin API to the running daemon.
type Options struct {
	Gatherer     prometheus.Gatherer
	DeadLetters  DeadLetters
	Chats        Chats
	Ready        func(ctx context.Context) []Check
	Health       func(ctx context.Context) []Check // detail for /healthz, which answers 200 whatever they say
	Reload       func(ctx context.Context) error
	Config       func() any // the running config; its JSON must hide its secrets (config.Config's does)
	Token        func() string
	TokenMetrics bool
	// Hosts is the current Host policy (it follows reloads); nil answers
	// every Host.
	Hosts func() HostPolicy
	// TurnLimit gives a route's turn_limit (0 turns: none), to show which
	// conversations it holds back. nil: none.
	TurnLimit func(route string) (turns int, per time.Duration)
	Logger    *slog.Logger
	// Events is the history of requests; nil answers 501 (a backend that
	// keeps none). Pipeline replays and dry-runs stored events.
	Events   Events
	Pipeline Pipeline
	// Console is the browser console, served under /ui/ with its own
	// login; nil serves none.
	Console http.Handler
}

// New returns the admin Echo server.
func New(o Options) *echo.Echo {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Token == nil {
		o.Token = func() string { return "" }
	}
	s := &server{o: o}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.errorHandler
	e.Pre(s.checkHost)

	open := e.Group("")
	if o.TokenMetrics {
		open.Use(s.auth)
	}
	open.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{})))
	open.GET("/healthz", s.healthz)
	open.GET("/readyz", s.readyz)

	a := e.Group("/admin", s.auth)
	a.POST("/reload", s.reload)
	a.GET("/config", s.config)
	a.GET("/dlq", s.listDead)
	a.POST("/dlq/replay", s.replayAll)
	a.GET("/dlq/:id", s.getDead)
	a.POST("/dlq/:id/replay", s.replayOne)
	a.DELETE("/dlq/:id", s.dropDead)
	a.GET("/chats", s.listChats)
	a.DELETE("/chats/:route/:key", s.resetChat)
	a.DELETE("/chats/:route", s.resetChat) // the route's default conversation (empty key)
	a.GET("/events", s.listEvents)
	a.GET("/events/:delivery", s.getEvent)
	a.POST("/events/:delivery/replay", s.replayEvent)
	a.POST("/dry-run", s.dryRun)
	if o.Console != nil {
		ui := echo.WrapHandler(o.Console)
		e.Any("/ui/*", ui)
		e.GET("/ui", func(c echo.Context) error { return c.Redirect(http.StatusMovedPermanently, "/ui/") })
	}
	return e
}

type server struct{ o Options }

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func jsonError(c echo.Context, status int, code, msg string) error {
	return c.JSON(status, errorBody{errorDetail{Code: code, Message: msg}})
}

func (s *server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		msg, _ := he.Message.(string)
		code := strings.ReplaceAll(strings.ToLower(http.StatusText(he.Code)), " ", "_")
		_ = jsonError(c, he.Code, code, msg)
		return
	}
	s.o.Logger.Error("admin request failed", "path", c.Path(), "err", err)
	_ = jsonError(c, http.StatusInternalServerError, "internal", err.Error())
}

func (s *server) auth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		want := s.o.Token()
		if want == "" {
			return next(c)
		}
		got, ok := strings.CutPrefix(c.Request().Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="relayd-admin"`)
			return jsonError(c, http.StatusUnauthorized, "unauthorized", "admin token missing or wrong")
		}
		return next(c)
	}
}

// healthz answers 200 while the process serves: a liveness probe must not
// restart relayd for what a restart cannot fix (a rejected API key). The
// checks say what is degraded, a dispatch pause among them.
func (s *server) healthz(c echo.Context) error {
	if s.o.Health == nil {
		return c.JSON(http.StatusOK, map[string]any{"status": "ok"})
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
	defer cancel()
	checks := s.o.Health(ctx)
	word := "ok"
	for _, ch := range checks {
		if !ch.OK {
			word = "degraded"
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"status": word, "checks": checks})
}

func (s *server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
	defer cancel()
	var checks []Check
	if s.o.Ready != nil {
		checks = s.o.Ready(ctx)
	}
	status, word := http.StatusOK, "ready"
	for _, ch := range checks {
		if !ch.OK {
			status, word = http.StatusServiceUnavailable, "not ready"
		}
	}
	return c.JSON(status, map[string]any{"status": word, "checks": checks})
}

func (s *server) reload(c echo.Context) error {
	if s.o.Reload == nil {
		return jsonError(c, http.StatusNotImplemented, "not_implemented", "reload not available")
	}
	if err := s.o.Reload(c.Request().Context()); err != nil {
		return jsonError(c, http.StatusBadRequest, "reload_failed", err.Error())
	}
	return c.JSON(http.StatusOK, map[string]any{"status": "reloaded"})
}

func (s *server) config(c echo.Context) error {
	if s.o.Config == nil {
		return jsonError(c, http.StatusNotFound, "not_found", "no config")
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // a hidden secret reads "<secret>", not "\u003csecret\u003e"
	if err := enc.Encode(s.o.Config()); err != nil {
		return jsonError(c, http.StatusInternalServerError, "internal", "cannot encode the config")
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, b.Bytes())
}

func (s *server) storeError(c echo.Context, err error) error {
	if errors.Is(err, queue.ErrNotFound) {
		return jsonError(c, http.StatusNotFound, "not_found", "no such dead letter or conversation")
	}
	if errors.Is(err, queue.ErrUnavailable) || errors.Is(err, queue.ErrClosed) {
		return jsonError(c, http.StatusServiceUnavailable, "storage_unavailable", err.Error())
	}
	return err
}

func (s *server) listDead(c echo.Context) error {
	list, err := s.o.DeadLetters.ListDead(c.Request().Context(), c.QueryParam("route"))
	if err != nil {
		return s.storeError(c, err)
	}
	if list == nil {
		list = []queue.DeadLetter{}
	}
	return c.JSON(http.StatusOK, map[string]any{"dead_letters": list, "count": len(list)})
}

func (s *server) getDead(c echo.Context) error {
	d, err := s.o.DeadLetters.GetDead(c.Request().Context(), param(c, "id"))
	if err != nil {
		return s.storeError(c, err)
	}
	return c.JSON(http.StatusOK, d)
}

func (s *server) replayOne(c echo.Context) error {
	n, err := s.o.DeadLetters.ReplayDead(c.Request().Context(), param(c, "id"))
	if err != nil {
		return s.storeError(c, err)
	}
	if n == 0 {
		return jsonError(c, http.StatusNotFound, "not_found", "no such dead letter")
	}
	s.o.Logger.Info("dead letters replayed", "id", param(c, "id"), "count", n)
	return c.JSON(http.StatusOK, map[string]any{"replayed": n})
}

func (s *server) replayAll(c echo.Context) error {
	route := c.QueryParam("route")
	if route == "" && c.Request().ContentLength > 0 {
		var body struct {
			Route string `json:"route"`
		}
		if err := json.NewDecoder(c.Request().Body).Decode(&body); err != nil {
			return jsonError(c, http.StatusBadRequest, "bad_request", "body must be {\"route\": \"…\"}")
		}
		route = body.Route
	}
	n, err := s.o.DeadLetters.ReplayAllDead(c.Request().Context(), route)
	if err != nil {
		return s.storeError(c, err)
	}
	s.o.Logger.Info("dead letters replayed", "route", route, "count", n)
	return c.JSON(http.StatusOK, map[string]any{"replayed": n})
}

func (s *server) dropDead(c echo.Context) error {
	n, err := s.o.DeadLetters.DropDead(c.Request().Context(), param(c, "id"))
	if err != nil {
		return s.storeError(c, err)
	}
	if n == 0 {
		return jsonError(c, http.StatusNotFound, "not_found", "no such dead letter")
	}
	return c.JSON(http.StatusOK, map[string]any{"dropped": n})
}

func (s *server) listChats(c echo.Context) error {
	list, err := s.o.Chats.ListChats(c.Request().Context())
	if err != nil {
		return s.storeError(c, err)
	}
	if r := c.QueryParam("route"); r != "" {
		kept := list[:0]
		for _, ch := range list {
			if ch.Route == r {
				kept = append(kept, ch)
			}
		}
		list = kept
	}
	if list == nil {
		list = []queue.Chat{}
	}
	if s.o.TurnLimit != nil {
		now := time.Now()
		for i := range list {
			ch := &list[i]
			if turns, per := s.o.TurnLimit(ch.Route); turns > 0 {
				if at := ch.NextTurnAt(turns, per, now); !at.IsZero() {
					ch.LimitedUntil = &at
				}
			}
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"chats": list, "count": len(list)})
}

func (s *server) resetChat(c echo.Context) error {
	route, key := param(c, "route"), param(c, "key")
	if err := s.o.Chats.DeleteChat(c.Request().Context(), route, key); err != nil {
		return s.storeError(c, err)
	}
	s.o.Logger.Info("conversation reset", "route", route, "conversation", key)
	return c.JSON(http.StatusOK, map[string]any{"reset": true, "route": route, "conversation_key": key})
}

// param returns a path parameter, unescaped: conversation keys such as
// "octo/repo" travel percent-encoded.
func param(c echo.Context, name string) string {
	v := c.Param(name)
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v
}
