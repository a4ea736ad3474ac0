package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// Each ceiling does the work its name says: a signed push is accepted, a
// forged one refused (except by the bare ceiling, which checks nothing).
func TestCeilings(t *testing.T) {
	body := []byte(`{"ref":"refs/heads/main","repository":{"full_name":"o/r"}}`)
	good := signedPayload(body, benchSecret, "push")
	forged := signedPayload(body, "another-secret", "push")
	for _, tc := range []struct {
		name       string
		start      func() (*server, error)
		wantForged int
	}{
		{"bare", startBare, http.StatusAccepted},
		{"verify", func() (*server, error) { return startVerify(benchSecret) }, http.StatusUnauthorized},
		{"durable", func() (*server, error) { return startDurable(benchSecret) }, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := tc.start()
			if err != nil {
				t.Fatal(err)
			}
			defer srv.stop()
			for _, c := range []struct {
				p    payload
				want int
			}{{good, http.StatusAccepted}, {forged, tc.wantForged}} {
				req, err := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(c.p.body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("X-Hub-Signature-256", c.p.signature)
				req.Header.Set("X-GitHub-Event", c.p.event)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != c.want {
					t.Errorf("answered %d, want %d", resp.StatusCode, c.want)
				}
			}
		})
	}
}

// The durable ceiling's log holds each accepted record, in order, over
// the zeros written beforehand.
func TestSyncLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l, err := openSyncLog(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"first;", "second;"} {
		if err := l.append([]byte(r)); err != nil {
			t.Fatal(err)
		}
	}
	l.close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != durableLogSize {
		t.Fatalf("log of %d bytes, want %d written beforehand", len(b), durableLogSize)
	}
	if got := string(bytes.TrimRight(b, "\x00")); got != "first;second;" {
		t.Fatalf("log holds %q", got)
	}
}
