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
	"sync"
	"syscall"
	"time"

	replyfake "github.com/relayd/relayd/internal/reply/fake"
)

// cmdMockGitHub serves the fake GitHub REST API on loopback and prints every
// comment it receives, so replies can be watched without a GitHub account.
func cmdMockGitHub(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("mock-github", stderr)
	listen := fs.String("listen", "127.0.0.1:8098", "address to serve the fake GitHub API on")
	var tokens stringList
	fs.Var(&tokens, "token", "accepted token (repeatable; default: any token)")
	prefix := fs.String("prefix", "", `API path prefix: "" as api.github.com, "/api/v3" as GitHub Enterprise Server`)
	rate := fs.Int("rate-limit", 5000, "requests per hour per token before the 403 rate-limit answer")
	logFormat := fs.String("log-format", "text", "log format: json or text")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	if *rate < 1 {
		return usageErr("--rate-limit must be >= 1")
	}
	if *prefix != "" && !strings.HasPrefix(*prefix, "/") {
		return usageErr("--prefix must start with /")
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
	return serveMockGitHub(ctx, ln, replyfake.GitHubOptions{Tokens: tokens, PathPrefix: *prefix, RateLimit: *rate}, stdout, log)
}

// serveMockGitHub serves the fake on ln until ctx ends.
func serveMockGitHub(ctx context.Context, ln net.Listener, o replyfake.GitHubOptions, stdout io.Writer, log *slog.Logger) error {
	var mu sync.Mutex // comments arrive on concurrent requests
	o.Open = true     // every repository, pull request and commit exists
	o.OnComment = func(c replyfake.Comment) {
		mu.Lock()
		defer mu.Unlock()
		printComment(stdout, c)
	}
	srv := &http.Server{Handler: replyfake.NewGitHub(o), ReadHeaderTimeout: 5 * time.Second}
	api := "http://" + ln.Addr().String() + strings.TrimRight(o.PathPrefix, "/")
	log.Info("fake GitHub listening", "api_url", api, "comments", "GET "+api+"/_fake/comments", "faults", "POST "+api+"/_fake/…")
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func printComment(w io.Writer, c replyfake.Comment) {
	on := fmt.Sprintf("%s#%d", c.Repo, c.Number)
	if c.Number == 0 {
		on = c.Repo + "@" + c.SHA
	}
	fmt.Fprintf(w, "── comment %d on %s ──\n%s\n\n", c.ID, on, strings.TrimRight(c.Body, "\n"))
}
