// Package console: the admin listener's browser console over the history, dead letters and conversations.
//
// Every byte of an event is attacker-controlled: pages are html/template,
// the script builds nodes with textContent only, and every answer carries a
// Content-Security-Policy that allows no inline script or style. With an
// admin token the console asks for it once and keeps a session in an
// HttpOnly, SameSite=Strict cookie; every state change needs the session's
// CSRF token.
package console

import (
	"context"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/time/rate"

	"github.com/relayd/relayd/internal/history"
	"github.com/relayd/relayd/internal/queue"
)

// Events is the history of requests as the console reads it.
type Events interface {
	Events(ctx context.Context, q history.Query) (history.Page, error)
	Event(ctx context.Context, id string) (history.Record, error)
}

// Pipeline replays and dry-runs stored events through the current config.
type Pipeline interface {
	Replay(ctx context.Context, rec history.Record, delivery string) ([]string, error)
	DryRun(ctx context.Context, route, template, filter string, recs []history.Record) ([]history.Trial, error)
	RouteSource(route string) (string, bool)
}

// DeadLetters is the dead-letter store as the console uses it.
type DeadLetters interface {
	ListDead(ctx context.Context, route string) ([]queue.DeadLetter, error)
	ReplayDead(ctx context.Context, id string) (int, error)
}

// Chats is the conversation memory as the console uses it.
type Chats interface {
	ListChats(ctx context.Context) ([]queue.Chat, error)
	DeleteChat(ctx context.Context, route, key string) error
}

// Route is what the dry-run page shows of a configured route.
type Route struct {
	Name, Source, Filter, Template string
}

// Options wires the console to the running daemon.
type Options struct {
	Events      Events // nil: a backend that keeps no history
	Pipeline    Pipeline
	DeadLetters DeadLetters
	Chats       Chats
	// Routes lists the current config's routes (it follows reloads).
	Routes func() []Route
	// Token is the admin token; "" leaves the console open like the
	// admin API.
	Token  func() string
	Logger *slog.Logger
	// Now is the clock for relative times and sessions; time.Now when nil.
	Now func() time.Time
}

//go:embed assets
var assets embed.FS

// Prefix is where the console is served.
const Prefix = "/ui/"

// Console serves the pages under Prefix.
type Console struct {
	o        Options
	mux      *http.ServeMux
	pages    map[string]*template.Template
	sessions *sessions
	logins   *rate.Limiter // attempts at the admin token, from anyone
}

// New returns the console; it panics only if its embedded templates are
// broken, which the tests catch.
func New(o Options) *Console {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Token == nil {
		o.Token = func() string { return "" }
	}
	if o.Routes == nil {
		o.Routes = func() []Route { return nil }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Console{o: o, pages: parsePages(), sessions: newSessions(o.Now),
		logins: rate.NewLimiter(rate.Every(time.Second), 10)}
	static, _ := fs.Sub(assets, "assets/static")
	files := http.StripPrefix(Prefix+"static/", http.FileServerFS(static))

	m := http.NewServeMux()
	m.Handle("GET "+Prefix+"static/", c.cacheable(files))
	m.HandleFunc("GET "+Prefix+"login", c.loginPage)
	m.HandleFunc("POST "+Prefix+"login", c.login)
	m.Handle("POST "+Prefix+"logout", c.change(c.logout))
	m.Handle("GET "+Prefix+"{$}", c.page(c.eventList))
	m.Handle("GET "+Prefix+"events.json", c.api(c.eventsJSON))
	m.Handle("GET "+Prefix+"events/{id...}", c.page(c.eventPage))
	m.Handle("POST "+Prefix+"replay", c.change(c.replay))
	m.Handle("GET "+Prefix+"dead", c.page(c.deadPage))
	m.Handle("POST "+Prefix+"dead/replay", c.change(c.replayDead))
	m.Handle("GET "+Prefix+"chats", c.page(c.chatsPage))
	m.Handle("POST "+Prefix+"chats/reset", c.change(c.resetChat))
	m.Handle("GET "+Prefix+"dry-run", c.page(c.dryRunPage))
	m.Handle("POST "+Prefix+"dry-run", c.change(c.dryRun))
	c.mux = m
	return c
}

// csp allows nothing inline and nothing from elsewhere.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	c.mux.ServeHTTP(w, r)
}

func (c *Console) cacheable(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}
