// Package queue defines the durable message records shared by every storage
// backend; the backends live in its subpackages.
package queue

import (
	"context"
	"errors"
	"time"

	"github.com/relayd/relayd/internal/history"
)

// Message is one rendered prompt bound for one conversation.
type Message struct {
	ID              string    `json:"id"`               // unique; also the Idempotency-Key
	Route           string    `json:"route"`            // route name
	ConversationKey string    `json:"conversation_key"` // "" means one conversation per route
	Prompt          string    `json:"prompt"`
	Source          string    `json:"source"`
	Delivery        string    `json:"delivery"`
	Event           string    `json:"event,omitempty"`
	EnqueuedAt      time.Time `json:"enqueued_at"` // when ingest stored it
	Attempts        int       `json:"attempts"`    // failed attempts so far
	NextAttemptAt   time.Time `json:"next_attempt_at,omitempty"`
	LastStatus      int       `json:"last_status,omitempty"`
	LastError       string    `json:"last_error,omitempty"`
}

// Failure describes why one attempt did not deliver.
type Failure struct {
	Status  int       `json:"status,omitempty"` // HTTP status, 0 for network errors
	Code    string    `json:"code,omitempty"`   // the API's error code, when it sent one
	Message string    `json:"message,omitempty"`
	Reason  string    `json:"reason"` // a fixed, low-cardinality word (metrics label)
	At      time.Time `json:"at"`
}

// Text is what a message's LastError keeps of the failure.
func (f Failure) Text() string {
	switch {
	case f.Code != "" && f.Message != "":
		return f.Code + ": " + f.Message
	case f.Message != "":
		return f.Message
	case f.Code != "":
		return f.Code
	}
	return f.Reason
}

// DeadLetter is a message that will not be retried without a replay.
type DeadLetter struct {
	Message
	Failure Failure   `json:"failure"`
	DeadAt  time.Time `json:"dead_at"`
}

// ChatState is what relayd remembers of one (route, conversation key).
type ChatState struct {
	ChatID    string    `json:"chat_id"`
	StartedAt time.Time `json:"started_at"` // when ChatID was first returned
	Messages  int       `json:"messages"`   // messages delivered into ChatID
	UpdatedAt time.Time `json:"updated_at"`
	// Revision is the store's version of this record, for compare-and-set.
	// 0 means "no record".
	Revision uint64 `json:"-"`
}

// Chat is a ChatState with its identity, as listed by the admin API.
type Chat struct {
	Route           string `json:"route"`
	ConversationKey string `json:"conversation_key"`
	ChatState
}

// Batch is what ingest stores for one accepted webhook: every message it
// produced, stored atomically together with its dedupe mark.
type Batch struct {
	// DedupeKey, when set, makes the batch a no-op if the key was stored
	// within DedupeTTL; Enqueue then reports a duplicate.
	DedupeKey string
	DedupeTTL time.Duration
	Messages  []Message
	// History, when set, is the event's record, stored with the messages
	// (and not stored when the batch is a duplicate).
	History *history.Record
}

// Stats counts messages by state for the relayd_queue_messages gauge.
type Stats struct {
	Ready    int `json:"ready"`    // due now, waiting for a worker
	Delayed  int `json:"delayed"`  // waiting for backoff or behind their conversation's head
	Inflight int `json:"inflight"` // leased to a worker
	Dead     int `json:"dead"`
}

// Errors callers branch on.
var (
	ErrFull        = errors.New("queue: max_pending reached")
	ErrUnavailable = errors.New("queue: storage unavailable")
	ErrClosed      = errors.New("queue: closed")
	ErrNotFound    = errors.New("queue: not found")
	ErrConflict    = errors.New("queue: revision conflict")
)

// Lease is one message taken for delivery. Exactly one of Ack, Retry,
// Release or Dead ends it; until then its conversation is blocked. Keeping
// a lease alive is the store's job: a lease lasts until it is ended or the
// process holding it dies, however long its request takes.
type Lease interface {
	Message() Message
	// Ack removes the message: it was delivered.
	Ack(ctx context.Context) error
	// Retry counts a failed attempt (persisting attempts, failure and at)
	// and makes the message due again at at, still at its conversation's head.
	Retry(ctx context.Context, at time.Time, f Failure) error
	// Release puts the message back, due at at, without counting an attempt
	// (dispatch paused, shutting down).
	Release(ctx context.Context, at time.Time) error
	// Dead moves the message to the dead letters; its conversation moves on.
	Dead(ctx context.Context, f Failure) error
}
