// Package xtime holds the time helpers the standard library lacks.
package xtime

import (
	"context"
	"time"
)

// Sleep waits d or until ctx ends, and returns ctx.Err() if ctx ended
// first (or had already ended when d <= 0).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
