package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/queue/boltq"
	"github.com/relayd/relayd/internal/queue/natsq"
)

var (
	_ Backend = (*boltq.Store)(nil)
	_ Backend = (*natsq.Store)(nil)
)

// OpenBackend opens the configured storage backend.
func OpenBackend(ctx context.Context, cfg *config.Config, log *slog.Logger) (Backend, error) {
	s := cfg.Storage
	switch s.Backend {
	case "", "bbolt":
		st, err := boltq.Open(s.Path, boltq.Options{
			MaxPending:   s.MaxPending,
			Logger:       log,
			MinFreeBytes: s.MinFreeBytes,
			ReserveBytes: reserveBytes(s.MinFreeBytes),
		})
		if err != nil {
			return nil, fmt.Errorf("storage.path: %w", err)
		}
		return st, nil
	case "nats":
		o := natsq.ConfigOptions(cfg)
		o.Logger = log
		st, err := natsq.Open(ctx, o)
		if err != nil {
			return nil, fmt.Errorf("storage.nats: %w", err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("storage.backend: unknown backend %q", s.Backend)
}

// reserveBytes sizes the disk reserve kept beside the bbolt file: half the
// free-space floor, at most 16 MiB. It only has to carry the acks and the
// log's replay over a disk something else filled; the floor keeps relayd's
// own growth off the last of the disk.
func reserveBytes(floor int64) int64 { return min(floor/2, 16<<20) }

// spaceReporter is a backend that watches its disk's free space.
type spaceReporter interface {
	LowSpace() error
	FreeBytes() int64
}

var _ spaceReporter = (*boltq.Store)(nil)
