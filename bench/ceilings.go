package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
)

// server is a target the load generator can hit.
type server struct {
	URL  string
	pid  int // the child process serving it; 0 when in this process
	stop func()
}

// serveEcho serves e on a fresh loopback port.
func serveEcho(e *echo.Echo) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 120 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			panic(err)
		}
	}()
	return &server{URL: "http://" + ln.Addr().String() + hookPath, stop: func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}}, nil
}

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readAll reads a request body into a pooled buffer.
func readAll(r *http.Request) (*bytes.Buffer, error) {
	buf := bodyPool.Get().(*bytes.Buffer)
	buf.Reset()
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(r.Body)
	return buf, err
}

// serveBodies serves an Echo POST handler that reads the body into a
// pooled buffer and answers what handle returns for it.
func serveBodies(handle func(req *http.Request, body []byte) int) (*server, error) {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.POST(hookPath, func(c echo.Context) error {
		req := c.Request()
		buf, err := readAll(req)
		defer bodyPool.Put(buf)
		if err != nil {
			return c.NoContent(http.StatusBadRequest)
		}
		return c.NoContent(handle(req, buf.Bytes()))
	})
	return serveEcho(e)
}

// startBare is the HTTP ceiling: Echo, read the body, answer 202.
func startBare() (*server, error) {
	return serveBodies(func(*http.Request, []byte) int { return http.StatusAccepted })
}

// startVerify is the verification ceiling: Echo, read the body, check
// X-Hub-Signature-256 (HMAC-SHA256, constant-time), decode the body with
// encoding/json into map[string]any, answer 202. No routing, no storage.
func startVerify(secret string) (*server, error) {
	key := []byte(secret)
	return serveBodies(func(req *http.Request, body []byte) int { return verifyRequest(key, req, body) })
}

// verifyRequest is the verification ceiling's work on one request: the
// status to answer.
func verifyRequest(key []byte, req *http.Request, body []byte) int {
	sig, ok := strings.CutPrefix(req.Header.Get("X-Hub-Signature-256"), "sha256=")
	want, herr := hex.DecodeString(sig)
	if !ok || herr != nil {
		return http.StatusUnauthorized
	}
	m := hmac.New(sha256.New, key)
	m.Write(body)
	if !hmac.Equal(m.Sum(nil), want) {
		return http.StatusUnauthorized
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		return http.StatusBadRequest
	}
	return http.StatusAccepted
}

// runCeiling serves one ceiling for a parent bench process: it prints the
// URL, then serves until SIGTERM or until its standard input closes.
func runCeiling(kind string) {
	var srv *server
	var err error
	switch kind {
	case "bare":
		srv, err = startBare()
	case "verify":
		srv, err = startVerify(benchSecret)
	case "durable":
		srv, err = startDurable(benchSecret)
	default:
		err = fmt.Errorf("unknown ceiling %q", kind)
	}
	if err != nil {
		fatalf("%v", err)
	}
	fmt.Println(srv.URL)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop <- syscall.SIGTERM
	}()
	<-stop
	srv.stop()
}

// startCeilingChild runs a ceiling in a child process (this same binary).
func startCeilingChild(kind string) (*server, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-serve-ceiling", kind)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("ceiling %s did not start: %w", kind, err)
	}
	return &server{URL: strings.TrimSpace(line), pid: cmd.Process.Pid, stop: func() {
		stdin.Close()
		_ = cmd.Wait()
	}}, nil
}
