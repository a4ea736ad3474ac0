package main

import (
	"io"
	"sync"
	"time"
)

// logWriter takes log lines off the caller's path and writes them to w
// from one goroutine, at most once per interval: a busy relayd logs a line
// per turn, and a write per line is a system call for relayd and a wakeup
// for whatever reads its output. A line is written at once when nothing
// was written in the last interval, so an idle relayd's lines are not
// delayed; Close writes what is left. Lines wait in at most maxPending
// bytes; past that Write waits, as a write to a slow pipe would.
type logWriter struct {
	w        io.Writer
	interval time.Duration

	mu      sync.Mutex
	drained *sync.Cond // signalled after each write
	buf     []byte
	spare   []byte
	closed  bool          // Write writes straight to w, holding mu
	kick    chan struct{} // a line arrived into an empty buffer
	stop    chan struct{}
	done    chan struct{}

	closeOnce sync.Once
}

const (
	logMaxPending = 1 << 20
	logKeepBuffer = 64 << 10 // larger buffers are not kept for reuse
)

func newLogWriter(w io.Writer, interval time.Duration) *logWriter {
	l := &logWriter{w: w, interval: interval, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	l.drained = sync.NewCond(&l.mu)
	go l.run()
	return l
}

// Write queues p (one log line: slog handlers write a record in one call).
func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	for !l.closed && len(l.buf) > 0 && len(l.buf)+len(p) > logMaxPending {
		l.drained.Wait()
	}
	if l.closed {
		defer l.mu.Unlock()
		return l.w.Write(p)
	}
	first := len(l.buf) == 0
	l.buf = append(l.buf, p...)
	l.mu.Unlock()
	if first {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

func (l *logWriter) run() {
	defer close(l.done)
	timer := time.NewTimer(0)
	<-timer.C
	var last time.Time
	for {
		select {
		case <-l.kick:
		case <-l.stop:
			l.flush()
			return
		}
		if wait := l.interval - time.Since(last); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-l.stop:
				timer.Stop()
				l.flush()
				return
			}
		}
		l.flush()
		last = time.Now()
	}
}

// flush writes every queued line. Only run (and Close, once run is done)
// calls it, so writes never overlap and lines keep their order.
func (l *logWriter) flush() {
	l.mu.Lock()
	out := l.buf
	l.buf = l.spare[:0]
	l.spare = nil
	l.mu.Unlock()
	if len(out) > 0 {
		_, _ = l.w.Write(out) // nowhere to report a failed log write
	}
	l.mu.Lock()
	if cap(out) <= logKeepBuffer {
		l.spare = out[:0]
	}
	l.drained.Broadcast()
	l.mu.Unlock()
}

// Close writes what is queued and makes later writes go straight to w.
func (l *logWriter) Close() error {
	l.closeOnce.Do(func() {
		close(l.stop)
		<-l.done
		l.mu.Lock()
		defer l.mu.Unlock()
		l.closed = true
		if len(l.buf) > 0 {
			_, _ = l.w.Write(l.buf)
		}
		l.buf = nil
		l.drained.Broadcast()
	})
	return nil
}
