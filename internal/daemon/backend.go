package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/queue/boltq"
	"github.com/relayd/relayd/internal/queue/natsq"
)

var (
	_ Backend = (*boltq.Store)(nil)
	_ Backend = (*natsq.Store)(nil)
)

// OpenBackend opens the configured storage backend.
func OpenBackend(ctx context.Context, cfg *config.Config, log *slog.Logger) (Backend, error) {
	switch cfg.Storage.Backend {
	case "", "bbolt":
		st, err := boltq.Open(ctx, cfg.Storage.Path, boltqOptions(cfg, log))
		if err != nil {
			return nil, fmt.Errorf("storage.path: %w", err)
		}
		return st, nil
	case "nats":
		st, err := natsq.Open(ctx, natsqOptions(cfg, log))
		if err != nil {
			return nil, fmt.Errorf("storage.nats: %w", err)
		}
		h := cfg.History
		if err := st.OpenHistory(ctx, natsq.HistoryOptions{Retention: h.Retention.D(), MaxEvents: h.MaxEvents, MaxRejected: h.MaxRejected}); err != nil {
			_ = st.Close()
			return nil, fmt.Errorf("history: %w", err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("storage.backend: unknown backend %q", cfg.Storage.Backend)
}

// pacerOf is where the dispatcher takes its rate-limit slots: on nats
// from JetStream, shared by every replica, so operator.rate_limit and the
// routes' rate_limit hold for the whole cluster; on bbolt (one process)
// from the dispatcher's own token buckets.
func pacerOf(b Backend) dispatch.Pacer {
	if st, ok := b.(*natsq.Store); ok {
		return st.RateLimiter()
	}
	return nil
}

// boltqOptions maps the storage section onto boltq's options.
func boltqOptions(cfg *config.Config, log *slog.Logger) boltq.Options {
	s := cfg.Storage
	return boltq.Options{
		MaxPending:   s.MaxPending,
		Logger:       log,
		MinFreeBytes: s.MinFreeBytes,
		ReserveBytes: reserveBytes(s.MinFreeBytes),
		History: boltq.HistoryOptions{
			Retention:   cfg.History.Retention.D(),
			MaxEvents:   cfg.History.MaxEvents,
			MaxRejected: cfg.History.MaxRejected,
		},
	}
}

// natsqOptions maps the storage section onto natsq's options. DedupeTTL is
// the largest dedupe window of storage and every source.
func natsqOptions(cfg *config.Config, log *slog.Logger) natsq.Options {
	n := cfg.Storage.NATS
	var urls []string
	if n.URL != "" {
		urls = append(urls, n.URL)
	}
	urls = append(urls, n.URLs...)
	ttl := cfg.Storage.DedupeTTL.D()
	for _, s := range cfg.Sources {
		ttl = max(ttl, s.DedupeTTL.D())
	}
	return natsq.Options{
		URLs:      urls,
		Stream:    n.Stream,
		CredsFile: n.CredsFile,
		TLS: natsq.TLS{
			CAFile:             n.TLS.CAFile,
			CertFile:           n.TLS.CertFile,
			KeyFile:            n.TLS.KeyFile,
			InsecureSkipVerify: n.TLS.InsecureSkipVerify,
		},
		Replicas:   n.Replicas,
		Partitions: n.Partitions,
		MaxPending: cfg.Storage.MaxPending,
		DedupeTTL:  ttl,
		Logger:     log,
	}
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
