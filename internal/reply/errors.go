package reply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/relayd/relayd/internal/operator"
)

// Reasons are fixed, low-cardinality words for why a post failed, safe as
// metric labels.
const (
	// Retryable.
	ReasonRateLimited = "rate_limited"
	ReasonServerError = "server_error"
	ReasonNetwork     = "network"
	ReasonTimeout     = "timeout"
	ReasonCanceled    = "canceled" // the context ended before an answer
	// Permanent.
	ReasonAuth     = "auth"      // the token or webhook is refused (401, 403)
	ReasonNotFound = "not_found" // no such pull request, issue, commit or webhook
	ReasonInvalid  = "invalid"   // the request was refused as it is (400, 422)
	ReasonGone     = "gone"      // 410: issues disabled, channel archived
	ReasonRejected = "rejected"  // any other 3xx or 4xx answer
	ReasonBadPost  = "bad_post"  // a Post this Replier cannot send (unknown sink, bad target)
)

// PermanentReasons are the reasons a post is given up on at once.
var PermanentReasons = []string{ReasonAuth, ReasonNotFound, ReasonInvalid, ReasonGone, ReasonRejected, ReasonBadPost}

const (
	// defaultRateWait is GitHub's advice for a secondary rate limit that
	// names no time: wait at least a minute.
	defaultRateWait  = time.Minute
	maxErrorSnippet  = 200
	maxResponseBytes = 64 << 10
)

// Error is a failed post. Retryable errors may succeed later: wait
// RetryAfter first when it is not zero (the service said how long),
// otherwise use the caller's backoff. Permanent ones never will: dead-letter
// the post. The message never holds a token, secret or webhook URL.
type Error struct {
	Sink       string // sink type: github_comment, slack, webhook
	Status     int    // HTTP status; 0 when no answer arrived
	Code       string // the service's error word when it sent one (Slack's "no_service")
	Reason     string // one of the Reason constants
	Retryable  bool
	RetryAfter time.Duration
	Msg        string
	Err        error // the cause, when not an HTTP answer (network, context)
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Sink)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": %d", e.Status)
	}
	if e.Msg != "" {
		b.WriteString(": ")
		b.WriteString(e.Msg)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Classify reports what to do with an error from Send: retry (after wait,
// when not zero) or give up. An error that is not an *Error is permanent.
func Classify(err error) (retry bool, wait time.Duration) {
	var e *Error
	if errors.As(err, &e) {
		return e.Retryable, e.RetryAfter
	}
	return false, 0
}

// transportError turns a failed round trip into an *Error. *url.Error is
// unwrapped so the URL (a Slack webhook URL is a credential) is left out.
func transportError(sink string, err error) *Error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	e := &Error{Sink: sink, Reason: ReasonNetwork, Retryable: true, Msg: err.Error(), Err: err}
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		e.Reason = ReasonCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		e.Reason = ReasonTimeout
	}
	return e
}

// answer is what classification reads of a response.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func readAnswer(resp *http.Response) answer {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes))
	return answer{status: resp.StatusCode, header: resp.Header, body: body}
}

// classifyGitHub reads GitHub's answer. Rate limits (REST API docs, "Rate
// limits for the REST API"): a primary limit is 403 or 429 with
// x-ratelimit-remaining 0, to wait until x-ratelimit-reset (epoch seconds);
// a secondary limit is 403 or 429 with retry-after, or, naming no time, a
// wait of at least a minute. Any other 403 is a token without permission.
func classifyGitHub(a answer, now time.Time) *Error {
	if a.status >= 200 && a.status < 300 {
		return nil
	}
	msg := githubMessage(a.body)
	e := &Error{Sink: TypeGitHub, Status: a.status, Msg: msg}
	switch {
	case a.status == http.StatusForbidden || a.status == http.StatusTooManyRequests:
		if wait, ok := githubRateWait(a, now); ok {
			e.Reason, e.Retryable, e.RetryAfter = ReasonRateLimited, true, wait
			return e
		}
		if a.status == http.StatusTooManyRequests || strings.Contains(strings.ToLower(msg), "rate limit") {
			e.Reason, e.Retryable, e.RetryAfter = ReasonRateLimited, true, defaultRateWait
			return e
		}
		e.Reason = ReasonAuth
	case a.status == http.StatusUnauthorized:
		e.Reason = ReasonAuth
	case a.status == http.StatusNotFound:
		e.Reason = ReasonNotFound // also what GitHub answers a token that may not see a private repository
	case a.status == http.StatusGone:
		e.Reason = ReasonGone
	case a.status == http.StatusUnprocessableEntity || a.status == http.StatusBadRequest:
		e.Reason = ReasonInvalid
	default:
		statusReason(e, a, now)
	}
	return e
}

// githubRateWait reads the time to wait from a rate-limit answer's headers.
func githubRateWait(a answer, now time.Time) (time.Duration, bool) {
	if d, ok := operator.ParseRetryAfter(a.header.Get("Retry-After"), now); ok {
		return d, true
	}
	if a.header.Get("X-Ratelimit-Remaining") != "0" {
		return 0, false
	}
	reset, err := strconv.ParseInt(strings.TrimSpace(a.header.Get("X-Ratelimit-Reset")), 10, 64)
	if err != nil || reset <= 0 {
		return defaultRateWait, true
	}
	d := time.Unix(reset, 0).Sub(now)
	// The reset is a whole second, and clocks differ: a second more avoids
	// arriving just before the window turns.
	d = max(d, 0) + time.Second
	return min(d, 24*time.Hour), true
}

// githubMessage is the "message" of GitHub's error body, or a short,
// printable start of the body.
func githubMessage(body []byte) string {
	var v struct {
		Message string `json:"message"`
		Errors  []struct {
			Field   string `json:"field"`
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &v) != nil || v.Message == "" {
		return snippet(body)
	}
	msg := v.Message
	for _, d := range v.Errors {
		switch {
		case d.Message != "":
			msg += "; " + d.Message
		case d.Field != "" || d.Code != "":
			msg += "; " + strings.Trim(d.Field+" "+d.Code, " ")
		}
	}
	return snippet([]byte(msg))
}

// classifySlack reads a Slack incoming webhook's answer ("Handling errors"
// in Slack's incoming webhook docs): 200 "ok"; 429 rate_limited with
// Retry-After; 400 invalid_payload, no_text and friends, 403
// action_prohibited or invalid_token, 404 no_service or channel_not_found,
// 410 channel_is_archived, all permanent; 5xx retryable.
func classifySlack(a answer, now time.Time) *Error {
	if a.status >= 200 && a.status < 300 {
		return nil
	}
	code := snippet(a.body)
	e := &Error{Sink: TypeSlack, Status: a.status, Code: code, Msg: code}
	switch {
	case a.status == http.StatusUnauthorized || a.status == http.StatusForbidden:
		e.Reason = ReasonAuth
	case a.status == http.StatusNotFound:
		e.Reason = ReasonNotFound
	case a.status == http.StatusGone:
		e.Reason = ReasonGone
	case a.status == http.StatusBadRequest:
		e.Reason = ReasonInvalid
	default:
		statusReason(e, a, now)
	}
	return e
}

// classifyWebhook reads a generic receiver's answer: 2xx delivered; 408,
// 429 and 5xx retryable, after Retry-After when given; anything else
// permanent.
func classifyWebhook(a answer, now time.Time) *Error {
	if a.status >= 200 && a.status < 300 {
		return nil
	}
	e := &Error{Sink: TypeWebhook, Status: a.status, Msg: snippet(a.body)}
	statusReason(e, a, now)
	return e
}

// statusReason classifies by status alone: 408, 429 and 5xx are retried
// (after Retry-After when the answer has one), everything else is refused.
func statusReason(e *Error, a answer, now time.Time) {
	switch {
	case a.status == http.StatusTooManyRequests:
		e.Reason, e.Retryable = ReasonRateLimited, true
	case a.status == http.StatusRequestTimeout:
		e.Reason, e.Retryable = ReasonTimeout, true
	case a.status >= 500:
		e.Reason, e.Retryable = ReasonServerError, true
	case a.status >= 300 && a.status < 400:
		e.Reason, e.Msg = ReasonRejected, "unexpected redirect (not followed)"
		return
	default:
		e.Reason = ReasonRejected
		return
	}
	if d, ok := operator.ParseRetryAfter(a.header.Get("Retry-After"), now); ok {
		e.RetryAfter = d
	}
}

// snippet is a short, single-line, printable start of b.
func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxErrorSnippet {
		cut := maxErrorSnippet
		for cut > 0 && !utf8RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
