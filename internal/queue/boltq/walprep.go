package boltq

// Segments written in advance.
//
// fdatasync after an append has to write the file's new size and block
// allocation as well as the data: a second synchronous write on every log
// sync. Over blocks already allocated and synced it writes the data alone.
// So the log writes into segments that a goroutine of their own has filled
// with zeros and synced beforehand (as database logs do); a zero frame
// length marks where the frames end. When no prepared segment is at hand
// the log appends as before, so preparation only ever makes a sync cheaper.

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
)

const (
	// firstSpareSize is the first segment prepared after a start; each
	// next one doubles, up to the segment size, so a store that logs a
	// few messages prepares little and a busy one rotates rarely.
	firstSpareSize = 1 << 20
	zeroChunk      = 256 << 10
)

// spare is a prepared segment: size bytes of zeros, synced, under a
// temporary name until the log renames it into place.
type spare struct {
	f    *os.File // nil: preparation failed; the log appends
	size int64
}

// preparer fills segments with zeros on request, one at a time.
type preparer struct {
	path  string     // the temporary name, <db>.wal.spare
	want  chan int64 // capacity 1: a request for a segment of this size
	ready chan spare // capacity 1: the answer to it
	stop  chan struct{}
	done  chan struct{}
	log   *slog.Logger
	space *space // a segment is prepared only if it leaves the floor free
}

func sparePath(base string) string { return base + ".wal.spare" }

func newPreparer(base string, log *slog.Logger, sp *space) *preparer {
	return &preparer{
		path:  sparePath(base),
		want:  make(chan int64, 1),
		ready: make(chan spare, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		log:   log,
		space: sp,
	}
}

// run serves requests until close. The log asks for the next segment only
// once it has taken the previous answer, so the answer never waits.
func (p *preparer) run() {
	defer close(p.done)
	var zero []byte
	for {
		var size int64
		select {
		case size = <-p.want:
		case <-p.stop:
			return
		}
		if !p.space.room(size) {
			// The zeros would take space ingest is refused: the log
			// appends instead, growing only with what it logs.
			p.ready <- spare{}
			continue
		}
		if zero == nil {
			zero = make([]byte, zeroChunk)
		}
		f, err := p.prepare(size, zero)
		if err == nil {
			p.space.used(size)
		}
		if err != nil {
			if f != nil {
				_ = f.Close()
				_ = os.Remove(p.path)
			}
			select {
			case <-p.stop:
				return
			default:
			}
			p.log.Warn("boltq: prepare a write-ahead log segment; the log appends meanwhile", "err", err)
			f = nil
		}
		p.ready <- spare{f: f, size: size}
	}
}

func (p *preparer) prepare(size int64, zero []byte) (*os.File, error) {
	f, err := os.OpenFile(p.path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	for off := int64(0); off < size; off += zeroChunk {
		select {
		case <-p.stop:
			return f, errStopped
		default:
		}
		if _, err := f.Write(zero[:min(int64(zeroChunk), size-off)]); err != nil {
			return f, fmt.Errorf("write %s: %w", p.path, err)
		}
	}
	if err := fdatasync(f); err != nil {
		return f, fmt.Errorf("sync %s: %w", p.path, err)
	}
	return f, nil
}

var errStopped = errors.New("stopped")

// close stops the preparer and removes a segment prepared and never used.
func (p *preparer) close() {
	close(p.stop)
	<-p.done
	select {
	case s := <-p.ready:
		discardSpare(s, p.path)
	default:
	}
}

func discardSpare(s spare, path string) {
	if s.f != nil {
		_ = s.f.Close()
		_ = os.Remove(path)
	}
}

// nextSpareSize is the size to ask for after asking for prev bytes (0 at
// first).
func nextSpareSize(prev, limit int64) int64 {
	return min(limit, max(firstSpareSize, 2*prev))
}
