package boltq

import (
	"sync"

	"github.com/relayd/relayd/internal/queue"
)

// requests is the queue in front of a loop goroutine that serves requests
// in groups (the committer, the log writer).
type requests[T any] struct {
	mu     sync.Mutex
	closed bool
	items  []T
	kick   chan struct{} // capacity 1: "the queue may be non-empty"
}

func newRequests[T any]() *requests[T] {
	return &requests[T]{kick: make(chan struct{}, 1)}
}

func (q *requests[T]) push(items ...T) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return queue.ErrClosed
	}
	q.items = append(q.items, items...)
	q.mu.Unlock()
	q.wake()
	return nil
}

// pushFront puts items back ahead of everything queued, even once closed:
// they were taken before the close.
func (q *requests[T]) pushFront(items ...T) {
	q.mu.Lock()
	q.items = append(items, q.items...)
	q.mu.Unlock()
	q.wake()
}

// take appends up to limit queued requests to dst. stop is true when the
// queue is closed and nothing was left in it.
func (q *requests[T]) take(dst []T, limit int) (_ []T, stop bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(len(q.items), limit)
	dst = append(dst, q.items[:n]...)
	rest := copy(q.items, q.items[n:])
	clear(q.items[rest:])
	q.items = q.items[:rest]
	return dst, n == 0 && q.closed
}

// takeIf is take for the requests keep accepts, in order; the others
// stay queued, in their order. keep sees the requests front to back.
func (q *requests[T]) takeIf(dst []T, limit int, keep func(T) bool) (_ []T, stop bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n, rest := 0, 0
	for _, it := range q.items {
		if n < limit && keep(it) {
			dst = append(dst, it)
			n++
			continue
		}
		q.items[rest] = it
		rest++
	}
	clear(q.items[rest:])
	q.items = q.items[:rest]
	return dst, n == 0 && rest == 0 && q.closed
}

func (q *requests[T]) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// close refuses further pushes; the loop drains what is queued.
func (q *requests[T]) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.wake()
}

func (q *requests[T]) wake() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}
