package boltq

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// compactTxSize bounds each transaction of a compaction, so copying a large
// file does not hold it all in memory.
const compactTxSize = 64 << 20

// Compact copies the store at src into a new file dst, leaving out the free
// pages a bbolt file keeps after a large queue drains (bbolt files never
// shrink). src is opened read-only and must not be open elsewhere: run it
// with relayd stopped. dst must not exist; on error it is removed. Swapping
// dst into place is the caller's move. ctx bounds opening the store; the
// copy itself, one bbolt pass, is not interrupted.
func Compact(ctx context.Context, src, dst string) (err error) {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("boltq: compact: %w", err)
	}
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("boltq: compact: %w", err)
	}
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("boltq: compact: %s: %w", dst, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("boltq: compact: %w", err)
	}
	// The copy must hold everything acknowledged: apply what the log still
	// holds first (a start does the same).
	if segs, err := segments(src); err != nil {
		return fmt.Errorf("boltq: compact: %w", err)
	} else if len(segs) > 0 {
		s, err := Open(ctx, src, Options{DedupeSweepInterval: -1})
		if err != nil {
			return fmt.Errorf("boltq: compact: apply the write-ahead log: %w", err)
		}
		if err := s.Close(); err != nil {
			return fmt.Errorf("boltq: compact: apply the write-ahead log: %w", err)
		}
	}
	in, err := bolt.Open(src, 0o600, &bolt.Options{ReadOnly: true, Timeout: lockWait})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return fmt.Errorf("boltq: compact: %s is in use (stop relayd first): %w", src, err)
		}
		return fmt.Errorf("boltq: compact: open %s: %w", src, err)
	}
	defer func() {
		if cerr := in.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("boltq: compact: close %s: %w", src, cerr)
		}
	}()
	out, err := bolt.Open(dst, 0o600, &bolt.Options{Timeout: lockWait, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("boltq: compact: create %s: %w", dst, err)
	}
	cerr := bolt.Compact(out, in, compactTxSize)
	if err := out.Close(); err != nil && cerr == nil {
		cerr = err
	}
	if cerr != nil {
		_ = os.Remove(dst)
		return fmt.Errorf("boltq: compact %s into %s: %w", src, dst, cerr)
	}
	return nil
}
