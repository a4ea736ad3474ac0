package operator

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"reflect"
	"testing"
)

type ctxKey struct{}

// chatRequest builds what http.NewRequestWithContext and Header.Set made
// before it: same URL, host, headers, body and GetBody.
func TestChatRequestAsNewRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		o       Options
		idemKey string
	}{
		{name: "stream", o: Options{BaseURL: "http://127.0.0.1:8080", APIKey: "k1"}, idemKey: "m1"},
		{name: "json, version, path prefix", o: Options{BaseURL: "https://api.example.com:443/v1/", APIKey: "k2", Version: "2025-01-01", Response: ResponseJSON}},
		{name: "user agent", o: Options{BaseURL: "http://[::1]:9/", APIKey: "k3", UserAgent: "relayd/1.2"}, idemKey: "turn-abc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := New(tc.o)
			ctx := context.WithValue(context.Background(), ctxKey{}, 1)
			body := []byte(`{"messages":[]}`)
			got, key, err := c.chatRequest(ctx, body, tc.idemKey)
			if err != nil {
				t.Fatal(err)
			}
			want, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/api/chat", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			wantKey := c.setHeaders(want)
			want.Header.Set("Content-Type", "application/json")
			if c.json {
				want.Header.Set("Accept", "application/json, text/event-stream")
				want.Header.Set("x-response-format", "json")
			} else {
				want.Header.Set("Accept", "text/event-stream, application/json")
			}
			if tc.idemKey != "" {
				want.Header.Set("Idempotency-Key", tc.idemKey)
			}
			if key != wantKey || got.Method != want.Method || got.URL.String() != want.URL.String() || got.Host != want.Host ||
				got.Proto != want.Proto || got.ContentLength != want.ContentLength || got.Context() != ctx {
				t.Errorf("request %s %s host %q %s len %d key %q, want %s %s host %q %s len %d key %q",
					got.Method, got.URL, got.Host, got.Proto, got.ContentLength, key,
					want.Method, want.URL, want.Host, want.Proto, want.ContentLength, wantKey)
			}
			if !reflect.DeepEqual(got.Header, want.Header) {
				t.Errorf("headers\n%v\nwant\n%v", got.Header, want.Header)
			}
			for i, r := range []func() (io.ReadCloser, error){func() (io.ReadCloser, error) { return got.Body, nil }, got.GetBody, got.GetBody} {
				rc, err := r()
				if err != nil {
					t.Fatal(err)
				}
				if b, _ := io.ReadAll(rc); !bytes.Equal(b, body) {
					t.Errorf("body %d: %q", i, b)
				}
			}
			// A new key or version reaches the next request.
			c.SetAPIKey("rotated")
			c.SetVersion("")
			got, key, _ = c.chatRequest(ctx, body, "")
			if key != "rotated" || got.Header.Get("Authorization") != "Bearer rotated" || got.Header.Values("Operator-Version") != nil {
				t.Errorf("after reload: key %q, headers %v", key, got.Header)
			}
		})
	}
	if _, _, err := New(Options{BaseURL: "http://bad host"}).chatRequest(context.Background(), nil, ""); err == nil {
		t.Error("a base URL that does not parse built a request")
	}
}
