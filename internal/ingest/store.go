package ingest

import (
	"context"

	"github.com/relayd/relayd/internal/history"

	"github.com/relayd/relayd/internal/queue"
)

// Store durably stores what a webhook produced before it is answered.
type Store interface {
	// Enqueue stores b atomically and durably (fsync'd) before returning.
	// duplicate is true when b.DedupeKey was seen within its TTL; nothing
	// is stored then. Errors: queue.ErrFull, queue.ErrUnavailable, queue.ErrClosed.
	Enqueue(ctx context.Context, b queue.Batch) (duplicate bool, err error)
}

// Recorder keeps the history of requests that produced no message (see
// package history). Record must not wait on a disk: the store writes the
// record with its next durable step.
type Recorder interface {
	Record(ctx context.Context, r history.Record) error
}
