package ingest

import (
	"net/http"

	"github.com/relayd/relayd/internal/verify"
)

// httpError ends a request with an error answer: the stage that refuses a
// request returns one, and serve answers and counts it.
type httpError struct {
	status int
	code   string // error.code of the JSON answer
	msg    string // error.message; never a secret or a signature
	// reason is counted as a verification failure for the source; "" when
	// the request is not refused as unverified.
	reason string
}

func (e *httpError) Error() string { return e.code + ": " + e.msg }

var (
	errNotFound  = &httpError{status: http.StatusNotFound, code: "not_found", msg: "no source at this path"}
	errMethod    = &httpError{status: http.StatusMethodNotAllowed, code: "method_not_allowed", msg: "use POST"}
	errDraining  = &httpError{status: http.StatusServiceUnavailable, code: "shutting_down", msg: "relayd is shutting down; retry later"}
	errForbidden = &httpError{status: http.StatusForbidden, code: "forbidden", msg: "sender address not allowed", reason: "forbidden_ip"}
	errQueueFull = &httpError{status: http.StatusServiceUnavailable, code: "queue_full", msg: "too many messages pending; retry later"}
	errStorage   = &httpError{status: http.StatusServiceUnavailable, code: "storage_unavailable", msg: "storage unavailable; retry later"}
	// errVerifyUnavailable: what a verifier fetches (a certificate, a key
	// set) could not be had; the request is not proven wrong, so it is not
	// counted as a verification failure.
	errVerifyUnavailable = &httpError{status: http.StatusServiceUnavailable, code: "verify_unavailable", msg: "could not verify the request now; retry later"}
	// errOverloaded: the bodies being read at once hold
	// server.max_inflight_body_bytes.
	errOverloaded = &httpError{status: http.StatusServiceUnavailable, code: "overloaded", msg: "too many request bodies being read at once; retry later"}
	// errBodyTimeout: server.read_timeout cut a body that was still
	// arriving. The body was late, not malformed.
	errBodyTimeout = &httpError{status: http.StatusRequestTimeout, code: "request_timeout", msg: "request body not received within the read timeout"}
)

func badBody(msg string) *httpError {
	return &httpError{status: http.StatusBadRequest, code: "invalid_body", msg: msg}
}

// verifyErrors answer each verification failure reason. The messages are
// fixed: an answer never echoes a secret or a signature.
var verifyErrors = map[string]*httpError{
	verify.ReasonMissing:   {status: http.StatusUnauthorized, code: "signature_missing", msg: "signature or token missing", reason: verify.ReasonMissing},
	verify.ReasonMismatch:  {status: http.StatusUnauthorized, code: "signature_mismatch", msg: "signature or token does not match", reason: verify.ReasonMismatch},
	verify.ReasonStale:     {status: http.StatusUnauthorized, code: "timestamp_stale", msg: "timestamp outside the allowed tolerance", reason: verify.ReasonStale},
	verify.ReasonMalformed: {status: http.StatusUnauthorized, code: "signature_malformed", msg: "signature header malformed", reason: verify.ReasonMalformed},
}

func verifyError(reason string) *httpError {
	if e, ok := verifyErrors[reason]; ok {
		return e
	}
	return verifyErrors[verify.ReasonMismatch]
}
