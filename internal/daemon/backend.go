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
		st, err := boltq.Open(s.Path, boltq.Options{MaxPending: s.MaxPending, Logger: log})
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
