package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/queue/boltq"
)

// cmdCompact rewrites the bbolt file without its free pages. bbolt files
// never shrink on their own; run this with relayd stopped.
func cmdCompact(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("compact", stderr)
	path := configFlag(fs)
	file := fs.String("path", "", "bbolt file (default: storage.path from the config)")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	db := *file
	if db == "" {
		cfg, err := config.LoadWith(*path, config.Options{Dev: true})
		if err != nil {
			return err
		}
		if cfg.Storage.Backend != "bbolt" {
			return fmt.Errorf("storage.backend is %q: only bbolt files are compacted", cfg.Storage.Backend)
		}
		db = cfg.Storage.Path
	}
	before, err := os.Stat(db)
	if err != nil {
		return err
	}
	tmp := db + ".compact"
	if err := boltq.Compact(ctx, db, tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact %s (is relayd still running?): %w", db, err)
	}
	if err := os.Rename(tmp, db); err != nil {
		return err
	}
	after, err := os.Stat(db)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "compacted %s: %d → %d bytes\n", db, before.Size(), after.Size())
	return nil
}
