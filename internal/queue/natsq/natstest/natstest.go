// Package natstest runs a real NATS server with JetStream inside the test
// process, so tests of the JetStream backend (and of packages that use it)
// need no external setup.
package natstest

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startTimeout bounds how long a server may take to accept connections;
// generous because -race builds of the server start slowly on small machines.
const startTimeout = 30 * time.Second

var (
	mu sync.Mutex
	// opts remembers each running server's options so Restart can bring
	// the same server (store dir, port, name) back.
	opts = map[*server.Server]*server.Options{}
)

// RunServer starts a JetStream-enabled server on a free loopback port with
// its store in a fresh t.TempDir(), and shuts it down when the test ends.
// It returns the server and its client URL.
func RunServer(t testing.TB) (*server.Server, string) {
	t.Helper()
	o := &server.Options{
		ServerName: "relayd-test",
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		NoLog:      true,
		NoSigs:     true,
	}
	s := start(t, o)
	// Pin the port picked for -1 so a restarted server is reachable at the
	// URL clients already hold.
	o.Port = s.Addr().(*net.TCPAddr).Port
	return s, s.ClientURL()
}

// Restart shuts s down if it is still running and starts a new server with
// the same options: same store dir (so streams, consumers and messages
// survive), same port and name. Clients reconnect to it by themselves.
// To observe an outage, call s.Shutdown() first, then Restart later.
func Restart(t testing.TB, s *server.Server) *server.Server {
	t.Helper()
	mu.Lock()
	o, ok := opts[s]
	delete(opts, s)
	mu.Unlock()
	if !ok {
		t.Fatalf("natstest: Restart of a server not started by natstest")
	}
	Shutdown(s)
	c := *o
	// The old listener's port can take a moment to be free again.
	addr := net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
	deadline := time.Now().Add(startTimeout)
	for {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			l.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("natstest: restart: port still busy: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ns, err := tryStart(&c)
	if err != nil {
		t.Fatalf("natstest: restart: %v", err)
	}
	register(t, ns, &c)
	return ns
}

// Shutdown stops s and waits until it is down. Safe to call twice.
func Shutdown(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}

func start(t testing.TB, o *server.Options) *server.Server {
	t.Helper()
	s, err := tryStart(o)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	register(t, s, o)
	return s
}

func register(t testing.TB, s *server.Server, o *server.Options) {
	mu.Lock()
	opts[s] = o
	mu.Unlock()
	t.Cleanup(func() {
		Shutdown(s)
		mu.Lock()
		delete(opts, s)
		mu.Unlock()
	})
}

func tryStart(o *server.Options) (*server.Server, error) {
	s, err := server.NewServer(o)
	if err != nil {
		return nil, err
	}
	go s.Start()
	if !s.ReadyForConnections(startTimeout) {
		Shutdown(s)
		return nil, errNotReady
	}
	return s, nil
}

var errNotReady = errors.New("server not ready for connections")
