// Package daemon runs relayd: it alone maps config to each package's own
// options, wires storage, ingest, dispatch and the admin API together,
// reloads config, and shuts down gracefully.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relayd/relayd/internal/admin"
	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/console"
	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/ingest"
	"github.com/relayd/relayd/internal/metrics"
	"github.com/relayd/relayd/internal/operator"
	"github.com/relayd/relayd/internal/queue"
)

// Backend is a storage backend as the daemon uses it: everything ingest,
// dispatch and the admin API need, plus health and shutdown.
type Backend interface {
	ingest.Store
	dispatch.Queue
	dispatch.ChatStore
	admin.DeadLetters
	admin.Chats
	Stats(ctx context.Context) (queue.Stats, error)
	ChatCounts(ctx context.Context) (map[string]int, error)
	Ping(ctx context.Context) error
	Close() error
}

// Options are what main passes in.
type Options struct {
	Logger   *slog.Logger
	Registry *prometheus.Registry // nil: a new one
	Version  string
	Revision string
	// Load re-reads the config for a reload; nil disables reload.
	Load func() (*config.Config, error)
	// Dev overrides the Operator base URL and key (relayd serve --dev).
	DevBaseURL string
	DevAPIKey  string
}

// Daemon is one running relayd.
type Daemon struct {
	o        Options
	log      *slog.Logger
	reg      *prometheus.Registry
	metrics  *metrics.Metrics
	store    Backend
	ingest   *ingest.Handler
	dispatch *dispatch.Dispatcher
	client   *operator.Client

	mu  sync.Mutex // serialises reloads
	cfg *config.Config

	draining atomic.Bool // set once shutdown starts

	publicLn, adminLn net.Listener
}

// New validates and compiles cfg, opens storage and prepares listeners.
func New(ctx context.Context, cfg *config.Config, o Options) (*Daemon, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{o: o, log: o.Logger, reg: o.Registry, cfg: cfg}
	if d.reg == nil {
		d.reg = prometheus.NewRegistry()
	}
	table, err := CompileIngest(cfg)
	if err != nil {
		return nil, cfg.Describe(err)
	}
	ds, err := withReplies(withBatches(settings(cfg), table), cfg, o.Version)
	if err != nil {
		return nil, cfg.Describe(err)
	}
	d.metrics = metrics.New(d.reg)
	d.metrics.SetBuildInfo(o.Version, o.Revision)
	d.initLabels(cfg)
	d.metrics.ReloadSuccessful.Set(1)
	d.metrics.ReloadTimestamp.SetToCurrentTime()

	d.store, err = OpenBackend(ctx, cfg, d.log)
	if err != nil {
		return nil, err
	}
	d.reg.MustRegister(newStoreCollector(d.store, d.config))
	applyTurns(d.store, cfg, table)

	d.client = operator.New(d.operatorOptions(cfg))
	io := ingest.Options{Store: d.store, Metrics: d.metrics, Logger: d.log}
	do := dispatch.Options{Logger: d.log, Metrics: d.metrics, Replies: d.store, Pacer: pacerOf(d.store)}
	if hs, ok := d.store.(historyStore); ok {
		io.Recorder, do.History = hs, hs
	}
	d.ingest = ingest.New(table, io)
	d.dispatch = dispatch.New(d.store, d.store, d.client, ds, do)
	return d, nil
}

func (d *Daemon) operatorOptions(cfg *config.Config) operator.Options {
	o := operator.Options{
		BaseURL: cfg.Operator.BaseURL, APIKey: string(cfg.Operator.APIKey), Version: cfg.Operator.Version,
		Timeout: cfg.Operator.Timeout.D(), MaxTurn: cfg.Operator.MaxTurn.D(), Response: cfg.Operator.Response,
		UserAgent: "relayd/" + d.o.Version,
	}
	if d.o.DevBaseURL != "" {
		o.BaseURL = d.o.DevBaseURL
		if o.APIKey == "" {
			o.APIKey = d.o.DevAPIKey
		}
	}
	return o
}

func (d *Daemon) initLabels(cfg *config.Config) {
	var sources, routes []string
	for _, s := range cfg.Sources {
		sources = append(sources, s.Name)
	}
	for _, r := range cfg.Routes {
		routes = append(routes, r.Name)
	}
	d.metrics.InitLabels(sources, routes)
	for _, r := range cfg.Routes {
		sinks := make([]string, 0, len(r.Reply))
		for _, s := range r.Reply {
			sinks = append(sinks, s.Type)
		}
		d.metrics.InitReplyLabels(r.Name, sinks)
	}
}

// Store returns the storage backend.
func (d *Daemon) Store() Backend { return d.store }

// Listen binds both listeners now, so callers (tests, the CLI) learn the
// real addresses before Run; ":0" picks free ports.
func (d *Daemon) Listen() error {
	var err error
	if d.publicLn, err = net.Listen("tcp", d.cfg.Server.Listen); err != nil {
		return fmt.Errorf("server.listen: %w", err)
	}
	if d.adminLn, err = net.Listen("tcp", d.cfg.Server.AdminListen); err != nil {
		d.publicLn.Close()
		return fmt.Errorf("server.admin_listen: %w", err)
	}
	return nil
}

// PublicAddr and AdminAddr are the bound addresses (after Listen).
func (d *Daemon) PublicAddr() string { return d.publicLn.Addr().String() }
func (d *Daemon) AdminAddr() string  { return d.adminLn.Addr().String() }

// Run serves until ctx ends, then shuts down: ingest stops taking webhooks
// (503), in-flight deliveries get server.shutdown_timeout to finish, and
// everything else stays queued. Storage is closed before Run returns.
func (d *Daemon) Run(ctx context.Context) error {
	if d.publicLn == nil {
		if err := d.Listen(); err != nil {
			d.store.Close()
			return err
		}
	}
	cfg := d.config()
	public := &http.Server{
		Handler:           d.ingest.Echo(),
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout.D(),
		ReadTimeout:       cfg.Server.ReadTimeout.D(),
		WriteTimeout:      cfg.Server.WriteTimeout.D(),
		IdleTimeout:       cfg.Server.IdleTimeout.D(),
		MaxHeaderBytes:    cfg.Server.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
	adminSrv := &http.Server{
		Handler: admin.New(admin.Options{
			Gatherer: d.reg, DeadLetters: d.store, Chats: d.store,
			Ready: d.ready, Health: d.health, Reload: d.Reload, Config: d.redactedConfig,
			Token: d.adminToken, TokenMetrics: cfg.Server.AdminTokenMetrics, Logger: d.log,
			Hosts:     d.adminHostPolicy(isLoopback(d.adminLn.Addr()), cfg.Server.AdminListen),
			TurnLimit: d.turnLimit,
			Events:    d.events(), Pipeline: d.ingest,
			Console: console.New(console.Options{
				Events: d.events(), Pipeline: d.ingest, DeadLetters: d.store, Chats: d.store,
				Routes: d.consoleRoutes, Token: d.adminToken, Logger: d.log,
			}),
		}),
		ReadHeaderTimeout: adminReadHeaderTimeout,
		ReadTimeout:       adminReadTimeout,
		WriteTimeout:      adminWriteTimeout,
		IdleTimeout:       cfg.Server.IdleTimeout.D(),
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}

	dispatchCtx, stopDispatch := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDispatch()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := public.Serve(d.publicLn); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("public listener: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := adminSrv.Serve(d.adminLn); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("admin listener: %w", err)
		}
	}()
	dispatchDone := make(chan struct{})
	go func() {
		defer wg.Done()
		defer close(dispatchDone)
		if err := d.dispatch.Run(dispatchCtx); err != nil && !errors.Is(err, context.Canceled) {
			errc <- fmt.Errorf("dispatch: %w", err)
		}
	}()
	d.log.Info("relayd started", "listen", d.PublicAddr(), "admin_listen", d.AdminAddr(),
		"storage", cfg.Storage.Backend, "sources", len(cfg.Sources), "routes", len(cfg.Routes))

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	d.log.Info("shutting down")
	// New webhooks get 503 (and /readyz fails) while deliveries in flight
	// finish: a sender or load balancer retries elsewhere or later, rather
	// than meeting a closed port while the pod is still in its endpoints.
	d.draining.Store(true)
	d.ingest.Drain()
	stopDispatch()
	<-dispatchDone
	shutCtx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout.D())
	defer cancel()
	if err := public.Shutdown(shutCtx); err != nil {
		public.Close()
	}
	if err := adminSrv.Shutdown(shutCtx); err != nil {
		adminSrv.Close()
	}
	wg.Wait()
	if err := d.store.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("close storage: %w", err)
	}
	d.log.Info("stopped")
	return runErr
}

func (d *Daemon) config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// turnLimit is a route's turn_limit in the running config.
func (d *Daemon) turnLimit(route string) (int, time.Duration) {
	for _, r := range d.config().Routes {
		if r.Name == route && r.TurnLimit != nil {
			return r.TurnLimit.Turns, r.TurnLimit.Per.D()
		}
	}
	return 0, 0
}

func (d *Daemon) adminToken() string { return string(d.config().Server.AdminToken) }

// Admin listener timeouts. Its requests are small and its answers quick,
// except a few (a replay of every dead letter, /metrics of a large
// registry), so the write timeout is generous; a streaming answer (a live
// event feed) must lift the read and write deadlines for its own response
// with http.ResponseController, since either one ending cuts the stream.
const (
	adminReadHeaderTimeout = 5 * time.Second
	adminReadTimeout       = 30 * time.Second
	adminWriteTimeout      = 5 * time.Minute
)

// adminHostPolicy returns the admin API's Host policy as the running config
// says (admin_token and admin_hosts follow reloads).
func (d *Daemon) adminHostPolicy(loopback bool, listen string) func() admin.HostPolicy {
	var name string
	if host, _, err := net.SplitHostPort(listen); err == nil && net.ParseIP(host) == nil {
		name = host
	}
	return func() admin.HostPolicy {
		s := d.config().Server
		return admin.HostPolicy{Loopback: loopback, Token: s.AdminToken != "", Hosts: s.AdminHosts, Listen: name}
	}
}

// isLoopback reports whether a bound address is reachable from this host
// only. A wildcard address (":9090") is not.
func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// redactedConfig is the running config for GET /admin/config: it marshals
// with relay.yaml's keys and hides its secrets itself.
func (d *Daemon) redactedConfig() any { return d.config() }

// ready reports whether this replica can accept webhooks: storage open,
// not draining, under storage.max_pending. A dispatch pause is left out on
// purpose: senders such as GitHub do not retry, so an unready relay loses
// the events a paused one keeps (the pause shows in /healthz and metrics).
func (d *Daemon) ready(ctx context.Context) []admin.Check {
	checks := []admin.Check{{Name: "config", OK: true}}
	if d.draining.Load() {
		checks = append(checks, admin.Check{Name: "ingest", OK: false, Error: "shutting down"})
	}
	st := admin.Check{Name: "storage", OK: true}
	if err := d.store.Ping(ctx); err != nil {
		st.OK, st.Error = false, err.Error()
	} else if sr, ok := d.store.(spaceReporter); ok {
		if err := sr.LowSpace(); err != nil {
			st.OK, st.Error = false, err.Error()
		}
	}
	checks = append(checks, st)
	if max := d.config().Storage.MaxPending; max > 0 && st.OK {
		q := admin.Check{Name: "queue", OK: true}
		if s, err := d.store.Stats(ctx); err != nil {
			q.OK, q.Error = false, err.Error()
		} else if pending := s.Ready + s.Delayed + s.Inflight; pending >= max {
			q.OK, q.Error = false, fmt.Sprintf("%d messages pending, storage.max_pending is %d", pending, max)
		}
		checks = append(checks, q)
	}
	return checks
}

// health is /healthz's detail: what degrades delivery without making the
// replica unready.
func (d *Daemon) health(context.Context) []admin.Check {
	dc := admin.Check{Name: "dispatch", OK: true}
	if paused, reason := d.dispatch.Paused(); paused {
		dc.OK, dc.Error = false, "paused: "+reason
	}
	return []admin.Check{dc}
}

// Reload re-reads the config and swaps it in whole, or keeps the old one.
func (d *Daemon) Reload(ctx context.Context) error {
	if d.o.Load == nil {
		return errors.New("reload: no config file")
	}
	err := d.reload()
	if err != nil {
		d.metrics.ReloadSuccessful.Set(0)
		d.log.Error("config reload failed; keeping the running config", "err", err)
		return err
	}
	d.metrics.ReloadSuccessful.Set(1)
	d.metrics.ReloadTimestamp.SetToCurrentTime()
	d.log.Info("config reloaded")
	return nil
}

func (d *Daemon) reload() error {
	cfg, err := d.o.Load()
	if err != nil {
		return err
	}
	table, err := CompileIngest(cfg)
	if err != nil {
		return cfg.Describe(err)
	}
	ds, err := withReplies(withBatches(settings(cfg), table), cfg, d.o.Version)
	if err != nil {
		return cfg.Describe(err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.cfg
	if !reflect.DeepEqual(cfg.Storage, old.Storage) {
		d.log.Warn("storage settings changed; they take effect on restart")
	}
	if cfg.Server.Listen != old.Server.Listen || cfg.Server.AdminListen != old.Server.AdminListen {
		d.log.Warn("listen addresses changed; they take effect on restart")
	}
	if o, n := old.Operator, cfg.Operator; n.BaseURL != o.BaseURL || n.Timeout != o.Timeout || n.MaxTurn != o.MaxTurn || n.Response != o.Response {
		d.log.Warn("operator.base_url, timeout, max_turn or response changed; they take effect on restart")
	}
	d.cfg = cfg
	d.initLabels(cfg)
	d.ingest.Swap(table)
	oo := d.operatorOptions(cfg)
	d.client.SetAPIKey(oo.APIKey)
	d.client.SetVersion(oo.Version)
	applyTurns(d.store, cfg, table)
	d.dispatch.Apply(ds)
	d.dispatch.Resume() // a new key may end a 401 pause at once
	return nil
}
