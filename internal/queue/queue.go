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
	ID              string `json:"id"`               // unique; also the Idempotency-Key
	Route           string `json:"route"`            // route name
	ConversationKey string `json:"conversation_key"` // "" means one conversation per route
	Prompt          string `json:"prompt"`
	Source          string `json:"source"`
	Delivery        string `json:"delivery"`
	Event           string `json:"event,omitempty"`
	// SupersedeKey, when set, makes the message give way to a newer one of
	// the same route, conversation and key (see TurnPolicy).
	SupersedeKey  string    `json:"supersede_key,omitempty"`
	EnqueuedAt    time.Time `json:"enqueued_at"` // when ingest stored it
	Attempts      int       `json:"attempts"`    // failed attempts so far
	NextAttemptAt time.Time `json:"next_attempt_at,omitempty"`
	LastStatus    int       `json:"last_status,omitempty"`
	LastError     string    `json:"last_error,omitempty"`
	// Kind is "" for an event's message and KindReply for a reply post,
	// whose Prompt is the reply.Post as JSON.
	Kind string `json:"kind,omitempty"`
	// ReplyRepo, ReplyNumber and ReplySHA are where a github_comment about
	// the event goes (found in its body at ingest, for routes that reply
	// on GitHub): the stored message does not keep the body.
	ReplyRepo   string `json:"reply_repo,omitempty"`
	ReplyNumber int64  `json:"reply_number,omitempty"`
	ReplySHA    string `json:"reply_sha,omitempty"`
}

// KindReply marks a message that is a reply post to send to a route's
// reply sink, not an event to send to the Operator.
const KindReply = "reply"

// IsReply reports whether m is a reply post.
func (m *Message) IsReply() bool { return m.Kind == KindReply }

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
	// Turns are the times of the conversation's recent turns, oldest
	// first, kept for the turn limit (the loop guard); only those inside
	// the route's window are kept.
	Turns []time.Time `json:"turns,omitempty"`
	// Revision is the store's version of this record, for compare-and-set.
	// 0 means "no record".
	Revision uint64 `json:"-"`
}

// NextTurnAt reports until when a turn limit of turns per per holds the
// conversation back, or the zero time when it may have a turn at now.
func (st ChatState) NextTurnAt(turns int, per time.Duration, now time.Time) time.Time {
	if turns <= 0 || per <= 0 {
		return time.Time{}
	}
	recent := st.TurnsSince(now.Add(-per))
	if len(recent) < turns {
		return time.Time{}
	}
	return recent[len(recent)-turns].Add(per)
}

// TurnsSince returns the turn times after since.
func (st ChatState) TurnsSince(since time.Time) []time.Time {
	i := 0
	for i < len(st.Turns) && !st.Turns[i].After(since) {
		i++
	}
	return st.Turns[i:]
}

// Chat is a ChatState with its identity, as listed by the admin API.
type Chat struct {
	Route           string `json:"route"`
	ConversationKey string `json:"conversation_key"`
	ChatState
	// Waiting counts the conversation's queued messages, when the store
	// can tell (nil: it cannot).
	Waiting *int `json:"waiting,omitempty"`
	// LimitedUntil is set while the route's turn limit holds the
	// conversation back.
	LimitedUntil *time.Time `json:"limited_until,omitempty"`
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

// TurnPolicy is how the queue forms the turns of one route.
type TurnPolicy struct {
	// MaxEvents is the most messages one turn carries; <= 1 means one.
	MaxEvents int
	// Wait delays a message that arrives when its conversation has nothing
	// pending: it is due Wait after it was accepted, and the messages that
	// arrive meanwhile join its turn.
	Wait time.Duration
	// Supersede says the route gives messages a SupersedeKey: forming a
	// turn then looks at every pending message of the conversation, so an
	// older message whose key has a newer one is never sent.
	Supersede bool
	// Fits reports whether a turn of these messages (oldest first) stays
	// within the route's byte budget. A turn of one message always goes.
	// nil: any size.
	Fits func(msgs []Message) bool
}

// TurnPolicies gives each route's turn policy; nil, or the zero policy,
// means one message a turn, no wait.
type TurnPolicies func(route string) TurnPolicy

// Max is p.MaxEvents, at least 1.
func (p TurnPolicy) Max() int { return max(p.MaxEvents, 1) }

// Pick chooses a turn from a conversation's first messages, oldest first,
// of which dropped marks the superseded ones. The turn covers all[:n]: the
// messages to send (at most Max, within Fits) and the superseded messages
// among and right after them, which go with the turn unsent. A run from
// the head, never a pick from further on, so the conversation's order
// holds; the first message that is not superseded always goes.
func (p TurnPolicy) Pick(all []Message, dropped []bool) (n int, send, gone []Message) {
	for i, m := range all {
		if dropped[i] {
			gone = append(gone, m)
			n = i + 1
			continue
		}
		if len(send) == p.Max() {
			break
		}
		if len(send) > 0 && p.Fits != nil && !p.Fits(append(send[:len(send):len(send)], m)) {
			break
		}
		send = append(send, m)
		n = i + 1
	}
	return n, send, gone
}

// Lease is one turn taken for delivery: one or more messages of one
// conversation, oldest first, sent together. Exactly one of Ack, Retry,
// Release or Dead ends it, for every message of the turn; until then its
// conversation is blocked. Keeping a lease alive is the store's job: a
// lease lasts until it is ended or the process holding it dies, however
// long its request takes.
type Lease interface {
	// Message is the turn's first message (Messages()[0]), or, for a turn
	// that has only superseded messages, the first of those.
	Message() Message
	// Messages are the messages to send, oldest first. It may be empty
	// when every message the lease covers is superseded: then the caller
	// acks it without sending anything.
	Messages() []Message
	// Superseded are messages the lease covers that are never sent: a
	// newer message of the same route, conversation and supersede key
	// was accepted. Ack and Dead remove them; Retry and Release leave them
	// for the next turn (where they are superseded again).
	Superseded() []Message
	// Ack removes the messages: they were delivered.
	Ack(ctx context.Context) error
	// Retry counts a failed attempt on each message (persisting attempts,
	// failure and at) and makes them due again at at, still at their
	// conversation's head.
	Retry(ctx context.Context, at time.Time, f Failure) error
	// Release puts the messages back, due at at, without counting an
	// attempt (dispatch paused, shutting down, turn limit).
	Release(ctx context.Context, at time.Time) error
	// Dead moves the messages to the dead letters; the conversation moves on.
	Dead(ctx context.Context, f Failure) error
}
