package verify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// ErrUnavailable is returned (wrapped) when a check needs something from the
// network that could not be had: a signing certificate, a JWKS, an SNS
// subscription confirmation. It is not an *Error: the request was not proven
// wrong, so ingest answers 503 and the sender retries.
var ErrUnavailable = errors.New("verification resource unavailable")

// fetchTimeout bounds every outbound request a verifier makes.
const fetchTimeout = 10 * time.Second

// hostPatterns is an allow-list of host names where "*" stands for exactly
// one DNS label ("sns.*.amazonaws.com"). Ports are not part of a pattern.
type hostPatterns [][]string

func compileHostPatterns(field string, patterns []string) (hostPatterns, error) {
	out := make(hostPatterns, 0, len(patterns))
	for i, p := range patterns {
		labels := strings.Split(strings.ToLower(p), ".")
		for _, l := range labels {
			if l != "*" && !validLabel(l) {
				return nil, fmt.Errorf("%s[%d]: %q is not a host name pattern (labels of letters, digits and '-', or '*' for one label)", field, i, p)
			}
		}
		out = append(out, labels)
	}
	return out, nil
}

func validLabel(l string) bool {
	if l == "" || len(l) > 63 {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func (h hostPatterns) match(host string) bool {
	labels := strings.Split(strings.ToLower(host), ".")
	for _, p := range h {
		if len(p) != len(labels) {
			continue
		}
		ok := true
		for i := range p {
			if p[i] != "*" && p[i] != labels[i] {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// allowedURL parses raw and checks that it is https, carries no user info,
// and names an allowed host.
func (h hostPatterns) allowedURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, errors.New("not a URL")
	case u.Scheme != "https":
		return nil, errors.New("not https")
	case u.User != nil:
		return nil, errors.New("carries user info")
	case u.Hostname() == "" || !h.match(u.Hostname()):
		return nil, errors.New("host not allowed")
	}
	return u, nil
}

// newFetchClient returns the client a verifier fetches with: the system
// roots plus caFile's certificates, no proxy surprises beyond the
// environment's, and redirects followed only to URLs allowed (when allowed
// is non-nil) or not at all.
func newFetchClient(caFile string, allowed hostPatterns) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file: no PEM certificates in %s", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{
		Transport: tr,
		Timeout:   fetchTimeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("too many redirects")
			}
			if allowed != nil {
				if _, err := allowed.allowedURL(req.URL.String()); err != nil {
					return fmt.Errorf("redirect to %s: %w", req.URL.Redacted(), err)
				}
			} else if req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to %s: not https", req.URL.Redacted())
			}
			return nil
		},
	}, nil
}

// get fetches u and returns its body, at most limit bytes; any answer but
// 200 is an error.
func get(ctx context.Context, c *http.Client, u string, limit int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("GET %s: %s", redactQuery(u), resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", redactQuery(u), err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("GET %s: answer larger than %d bytes", redactQuery(u), limit)
	}
	return b, nil
}

// redactQuery drops a URL's query, which may hold a token (an SNS
// SubscribeURL does), before it goes into an error or a log line.
func redactQuery(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}

func requestContext(r *Request) context.Context {
	if r.Context != nil {
		return r.Context
	}
	return context.Background()
}
