package main

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sync"
)

// The durable ceiling: the verification ceiling, then a record of each
// request in a log that is fdatasync'd before the answer, with group
// commit (each sync takes every record that queued during the previous
// one) into a file written with zeros beforehand, so a sync writes data
// and never the file's size. Nothing else: no routing, no queue, no
// dedupe. It is the least a receiver can do to answer only once an event
// is on disk, so relayd against it shows relayd's own overhead, apart from
// what the disk costs.

const (
	durableRecord  = 320      // bytes logged per request, about relayd's log frame for this payload
	durableLogSize = 64 << 20 // written from the start again when full
)

type syncLog struct {
	f       *os.File
	off     int64
	mu      sync.Mutex
	kick    chan struct{} // capacity 1; closed by close
	done    chan struct{} // closed when run returns
	pending []logRecord
}

type logRecord struct {
	data []byte
	done chan error
}

func openSyncLog(path string) (*syncLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	zero := make([]byte, 1<<20)
	for range durableLogSize / len(zero) {
		if _, err := f.Write(zero); err != nil {
			f.Close()
			return nil, err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	l := &syncLog{f: f, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go l.run()
	return l, nil
}

// close stops the log once nobody appends any more.
func (l *syncLog) close() {
	close(l.kick)
	<-l.done
	_ = l.f.Close()
}

// append returns once data is on disk.
func (l *syncLog) append(data []byte) error {
	done := make(chan error, 1)
	l.mu.Lock()
	l.pending = append(l.pending, logRecord{data, done})
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	return <-done
}

// run writes and syncs whatever queued, group after group, until close.
func (l *syncLog) run() {
	defer close(l.done)
	var buf []byte
	var group []logRecord
	for range l.kick {
		for {
			l.mu.Lock()
			group, l.pending = l.pending, group[:0]
			l.mu.Unlock()
			if len(group) == 0 {
				break
			}
			buf = buf[:0]
			for _, r := range group {
				buf = append(buf, r.data...)
			}
			if l.off+int64(len(buf)) > durableLogSize {
				l.off = 0
			}
			_, err := l.f.WriteAt(buf, l.off)
			l.off += int64(len(buf))
			if err == nil {
				err = datasync(l.f)
			}
			for _, r := range group {
				r.done <- err
			}
			clear(group)
		}
	}
}

// startDurable serves the durable ceiling; its log lives in a temporary
// directory removed when it stops.
func startDurable(secret string) (*server, error) {
	dir, err := os.MkdirTemp("", "relayd-bench-durable-")
	if err != nil {
		return nil, err
	}
	l, err := openSyncLog(filepath.Join(dir, "log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	key := []byte(secret)
	srv, err := serveBodies(func(req *http.Request, body []byte) int {
		if status := verifyRequest(key, req, body); status != http.StatusAccepted {
			return status
		}
		// The body's buffer goes back to its pool only after this returns.
		if err := l.append(body[:min(durableRecord, len(body))]); err != nil {
			return http.StatusServiceUnavailable
		}
		return http.StatusAccepted
	})
	if err != nil {
		l.close()
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	stop := srv.stop
	srv.stop = func() {
		stop() // waits for the handlers, so nothing appends after this
		l.close()
		_ = os.RemoveAll(dir)
	}
	return srv, nil
}
