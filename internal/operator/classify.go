package operator

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// Outcome is what the dispatcher does with one attempt.
type Outcome int

const (
	// Delivered: the API took the message. Store the chat id when present.
	Delivered Outcome = iota
	// Retry: transient; try again after backoff (or RetryAfter when set).
	Retry
	// Permanent: this message will never succeed; dead-letter it.
	Permanent
	// Unauthorized: the key is wrong for every message. Pause all dispatch,
	// keep the queue, and probe Health until the key works again.
	Unauthorized
	// Forbidden: the key lacks permission for this message. Dead-letter it,
	// or pause if every route sees it.
	Forbidden
	// ChatGone: the continued chat no longer exists. Forget the chat id and
	// resend the message at once as a new conversation.
	ChatGone
	// Duplicate: 409, the idempotency key was already taken, so the message
	// was delivered by an earlier attempt. Count it as delivered.
	Duplicate
	// Partial: the answer began (2xx) and was cut off. The API took the
	// message and the agent works on it: count it as delivered with what
	// arrived, and never send it again.
	Partial
)

var outcomeNames = [...]string{"delivered", "retry", "permanent", "unauthorized", "forbidden", "chat_gone", "duplicate", "partial"}

func (o Outcome) String() string {
	if o < 0 || int(o) >= len(outcomeNames) {
		return "unknown"
	}
	return outcomeNames[o]
}

// Reasons are fixed, low-cardinality words, safe as metric labels.
const (
	// Retry reasons.
	ReasonRateLimited = "rate_limited"
	ReasonServerError = "server_error"
	ReasonNetwork     = "network"
	ReasonTimeout     = "timeout"
	ReasonTransient   = "transient"
	// Permanent (dead-letter) reasons; also set on Unauthorized, Forbidden
	// and ChatGone so a caller that dead-letters them has a label ready.
	ReasonBadRequest       = "bad_request"
	ReasonForbidden        = "forbidden"
	ReasonNotFound         = "not_found"
	ReasonMethodNotAllowed = "method_not_allowed"
	ReasonPermanent        = "permanent"
	ReasonUnauthorized     = "unauthorized"
)

// RetryReasons and PermanentReasons list every Reason Classify can give for
// Retry and for the other failing outcomes, to pre-create metric series.
var (
	RetryReasons     = []string{ReasonRateLimited, ReasonServerError, ReasonNetwork, ReasonTimeout, ReasonTransient}
	PermanentReasons = []string{ReasonBadRequest, ReasonForbidden, ReasonNotFound, ReasonMethodNotAllowed, ReasonPermanent, ReasonUnauthorized}
)

// Verdict is Classify's answer for one attempt.
type Verdict struct {
	Outcome Outcome
	// Reason is one of RetryReasons for Retry, one of PermanentReasons for
	// Permanent, Unauthorized, Forbidden and ChatGone, "" otherwise.
	Reason string
	// RetryAfter is the server's Retry-After (0 when absent); honour it as a
	// lower bound on the next attempt.
	RetryAfter time.Duration
	Status     int    // HTTP status, 0 when no answer arrived
	Code       string // the API's error code, when it sent one
	Message    string // human text for logs and dead letters; never branch on it
}

// Classify maps the error from Chat (nil for success) to a Verdict. continued
// tells whether the request carried a chat id, which is what makes a 404
// mean "the chat is gone" rather than a permanent failure.
//
// The rules, from the API's status table:
//
//	nil, 2xx                 Delivered
//	2xx, unreadable body     Delivered (the API took it; no chat id)
//	2xx, cut off             Partial (the API took it; never resend)
//	409                      Duplicate
//	429                      Retry rate_limited, with RetryAfter
//	401                      Unauthorized
//	403                      Forbidden
//	404                      ChatGone if continued, else Permanent not_found
//	400                      Permanent bad_request
//	405                      Permanent method_not_allowed
//	5xx                      Retry server_error; Permanent permanent if the body says transient:false
//	other status             the body's transient flag: true Retry transient, false Permanent permanent;
//	                         without it Permanent permanent (4xx and anything else not 5xx)
//	timeout / deadline       Retry timeout (silence or max_turn before any answer)
//	other transport error    Retry network
//
// A cancellation of the caller's own context (shutdown) also comes out as
// Retry network, so the message stays queued; callers that must not count
// it as a failed attempt check ctx.Err() first.
func Classify(err error, continued bool) Verdict {
	if err == nil {
		return Verdict{Outcome: Delivered}
	}
	var pe *PartialError
	if errors.As(err, &pe) {
		return Verdict{Outcome: Partial, Status: pe.Status, Message: pe.Error()}
	}
	var mal *MalformedResponseError
	if errors.As(err, &mal) {
		return Verdict{Outcome: Delivered, Status: mal.Status, Message: mal.Error()}
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return classifyStatus(ae, continued)
	}
	v := Verdict{Outcome: Retry, Reason: ReasonNetwork, Message: err.Error()}
	if isTimeout(err) {
		v.Reason = ReasonTimeout
	}
	return v
}

func classifyStatus(ae *APIError, continued bool) Verdict {
	v := Verdict{Status: ae.Status, Code: ae.Code, Message: ae.Message, RetryAfter: ae.RetryAfter}
	if v.Message == "" {
		v.Message = http.StatusText(ae.Status)
	}
	retry := func(reason string) Verdict { v.Outcome, v.Reason = Retry, reason; return v }
	fail := func(o Outcome, reason string) Verdict {
		v.Outcome, v.Reason, v.RetryAfter = o, reason, 0
		return v
	}
	switch s := ae.Status; {
	case s >= 200 && s <= 299:
		return fail(Delivered, "")
	case s == http.StatusConflict:
		return fail(Duplicate, "")
	case s == http.StatusTooManyRequests:
		return retry(ReasonRateLimited)
	case s == http.StatusUnauthorized:
		return fail(Unauthorized, ReasonUnauthorized)
	case s == http.StatusForbidden:
		return fail(Forbidden, ReasonForbidden)
	case s == http.StatusNotFound:
		if continued {
			return fail(ChatGone, ReasonNotFound)
		}
		return fail(Permanent, ReasonNotFound)
	case s == http.StatusBadRequest:
		return fail(Permanent, ReasonBadRequest)
	case s == http.StatusMethodNotAllowed:
		return fail(Permanent, ReasonMethodNotAllowed)
	case s >= 500 && s <= 599:
		if ae.Transient != nil && !*ae.Transient {
			return fail(Permanent, ReasonPermanent)
		}
		return retry(ReasonServerError)
	case ae.Transient != nil && *ae.Transient:
		return retry(ReasonTransient)
	default:
		return fail(Permanent, ReasonPermanent)
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrSilence) || errors.Is(err, ErrTurnTooLong) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
