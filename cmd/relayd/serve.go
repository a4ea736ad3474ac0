package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/daemon"
	"github.com/relayd/relayd/internal/gcfloor"
	"github.com/relayd/relayd/internal/logjson"
	"github.com/relayd/relayd/internal/operator/fake"
)

// devAPIKey is the key relayd uses with the in-process fake under --dev
// when the config names none.
const devAPIKey = "ck_live_dev"

func cmdServe(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	path := configFlag(fs)
	dev := fs.Bool("dev", false, "run an in-process fake Operator on loopback and send to it (no account needed)")
	logFormat := fs.String("log-format", "", "log format: json or text (default: log.format, else json; text under --dev)")
	logLevel := fs.String("log-level", "", "log level: debug, info, warn, error (default: log.level, else info)")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	load := func() (*config.Config, error) { return config.LoadWith(*path, config.Options{Dev: *dev}) }
	cfg, err := load()
	if err != nil {
		return err
	}
	// A busy relayd logs a line per turn: they go out in batches, at most
	// every millisecond (all of them before serve returns).
	out := newLogWriter(stderr, time.Millisecond)
	defer out.Close()
	log, err := newLogger(out, firstNonEmpty(*logFormat, cfg.Log.Format), firstNonEmpty(*logLevel, cfg.Log.Level))
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer gcfloor.Start(gcfloor.DefaultFloor)()

	opts := daemon.Options{Logger: log, Version: version, Revision: revision, Load: load}
	if *dev {
		addr, shutdown, err := startDevOperator(log)
		if err != nil {
			return err
		}
		defer shutdown()
		opts.DevBaseURL, opts.DevAPIKey = "http://"+addr, devAPIKey
		log.Warn("dev mode: messages go to an in-process fake Operator, not to the real API", "fake_operator", opts.DevBaseURL)
	}
	d, err := daemon.New(ctx, cfg, opts)
	if err != nil {
		return err
	}
	if err := d.Listen(); err != nil {
		d.Store().Close()
		return err
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = d.Reload(ctx) // logged and counted inside
			}
		}
	}()
	return d.Run(ctx)
}

// startDevOperator serves the fake Operator on a free loopback port.
func startDevOperator(log *slog.Logger) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("dev operator: %w", err)
	}
	srv := &http.Server{
		Handler:           fake.New(fake.Options{Logger: log.With("component", "fake-operator"), MaxRequests: 10000}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(firstNonEmpty(level, "info"))); err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	ho := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(firstNonEmpty(format, "json")) {
	case "json":
		return slog.New(logjson.New(w, lv)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, ho)), nil
	}
	return nil, errors.New("log format: use json or text")
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func cmdMockOperator(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := newFlagSet("mock-operator", stderr)
	listen := fs.String("listen", "127.0.0.1:8099", "address to serve the fake Operator API on")
	var keys stringList
	fs.Var(&keys, "key", "accepted API key (repeatable; default: any key starting with ck_)")
	logFormat := fs.String("log-format", "text", "log format: json or text")
	// Long turns, for every answer (POST /_fake/turn changes them live).
	var turn fake.Turn
	fs.DurationVar(&turn.Wait, "turn-wait", 0, "after taking a message, stay silent this long before the status line")
	fs.IntVar(&turn.Steps, "turn-steps", 0, "progress events the agent streams before its reply (a long turn)")
	fs.DurationVar(&turn.Every, "turn-every", 0, "pause before each progress event (a slow stream: one event every D)")
	fs.IntVar(&turn.CutAfter, "turn-cut", 0, "cut the connection after N events of a stream (halfway through a JSON answer); 0 never")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	if turn.Wait < 0 || turn.Steps < 0 || turn.Every < 0 || turn.CutAfter < 0 {
		return fmt.Errorf("%w: --turn-* values must not be negative", errUsage)
	}
	log, err := newLogger(stderr, *logFormat, "info")
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	f := fake.New(fake.Options{Keys: keys, Logger: log, MaxRequests: 10000, Turn: turn})
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 5 * time.Second}
	log.Info("fake Operator listening", "addr", ln.Addr().String(), "faults", "POST /_fake/…",
		"turn_wait", turn.Wait, "turn_steps", turn.Steps, "turn_every", turn.Every, "turn_cut", turn.CutAfter)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
