package ingest

import (
	"context"

	"github.com/relayd/relayd/internal/queue"
)

// Store durably stores what a webhook produced before it is answered.
type Store interface {
	// Enqueue stores b atomically and durably (fsync'd) before returning.
	// duplicate is true when b.DedupeKey was seen within its TTL; nothing
	// is stored then. Errors: queue.ErrFull, queue.ErrUnavailable, queue.ErrClosed.
	Enqueue(ctx context.Context, b queue.Batch) (duplicate bool, err error)
}
