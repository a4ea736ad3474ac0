// Package fake holds faithful fakes of the services replies go to: the
// GitHub REST API's comment endpoints and a Slack incoming webhook. They
// answer as the real services do (status codes, headers, error bodies),
// record what they receive, and take injected faults, for tests and for
// `relayd mock-github`.
package fake

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Fault is one injected answer: status, headers and body, sent instead of
// handling the request (which is then not recorded).
type Fault struct {
	Status int               `json:"status"`
	Header map[string]string `json:"header,omitempty"`
	Body   string            `json:"body,omitempty"`
}

// faults is a queue of answers to give before handling requests normally.
type faults struct {
	mu   sync.Mutex
	next []Fault
}

func (f *faults) add(n int, x Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.next = append(f.next, x)
	}
}

func (f *faults) clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next = nil
}

// serve answers with the next fault, when one is queued.
func (f *faults) serve(w http.ResponseWriter) bool {
	f.mu.Lock()
	if len(f.next) == 0 {
		f.mu.Unlock()
		return false
	}
	x := f.next[0]
	f.next = f.next[1:]
	f.mu.Unlock()
	for k, v := range x.Header {
		w.Header().Set(k, v)
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
	}
	w.WriteHeader(x.Status)
	_, _ = w.Write([]byte(x.Body))
	return true
}

// GitHubRateLimited is GitHub's primary rate limit answer: 403, no requests
// remaining until reset.
func GitHubRateLimited(reset time.Time) Fault {
	return Fault{
		Status: http.StatusForbidden,
		Header: map[string]string{
			"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0", "X-RateLimit-Used": "5000",
			"X-RateLimit-Reset": strconv.FormatInt(reset.Unix(), 10), "X-RateLimit-Resource": "core",
		},
		Body: `{"message":"API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api","status":"403"}`,
	}
}

// GitHubSecondaryLimit is GitHub's secondary rate limit answer (too many
// requests at once, or content created too fast): status 403 or 429, with
// Retry-After in seconds when retryAfter is not zero.
func GitHubSecondaryLimit(status int, retryAfter time.Duration) Fault {
	f := Fault{
		Status: status,
		Header: map[string]string{},
		Body:   `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.","documentation_url":"https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits","status":"` + strconv.Itoa(status) + `"}`,
	}
	if retryAfter > 0 {
		f.Header["Retry-After"] = strconv.Itoa(int(retryAfter / time.Second))
	}
	return f
}

// GitHubServerError is a 5xx as GitHub sends them.
func GitHubServerError(status int) Fault {
	return Fault{Status: status, Body: `{"message":"Server Error"}`}
}

// SlackRateLimited is a Slack webhook's 429 with Retry-After in seconds.
func SlackRateLimited(retryAfter time.Duration) Fault {
	return Fault{
		Status: http.StatusTooManyRequests,
		Header: map[string]string{"Retry-After": strconv.Itoa(int(retryAfter / time.Second)), "Content-Type": "text/html"},
		Body:   "rate_limited",
	}
}

// SlackError is a Slack webhook's error answer: a status and one word
// (no_service, channel_is_archived, invalid_payload, rollup_error…).
func SlackError(status int, code string) Fault {
	return Fault{Status: status, Header: map[string]string{"Content-Type": "text/html"}, Body: code}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
