package ingest

import (
	"sync/atomic"
)

// budget bounds the memory of all request bodies being read at once, in
// bytes, whatever the number of connections: a request reserves the memory
// it holds as its buffer grows (as bytes arrive, never what Content-Length
// announces) and gives it back when it is answered.
//
// Reserving only what a request holds is what keeps slow senders from
// starving the others: a connection that trickles holds one small first
// chunk, so even hundreds of them leave the budget to requests that send
// their bodies. A sender that stalls holding a large part of a body keeps it
// only until the server's read_timeout cuts the connection, which releases
// it. Past the bound a request is answered 503 at once, with Retry-After,
// rather than queued: a wait would hold its connection and its buffer too.
//
// The last quarter of the limit is kept for small bodies (smallBody bytes
// held or less): large ones, which cost a sender little when they are gzip
// that inflates, or stall until read_timeout, cannot take it all, so the
// common small webhook keeps flowing while they hold the rest.
type budget struct {
	used atomic.Int64
}

// smallBody is the most a request may hold and still use the part of the
// budget kept for small bodies.
const smallBody = 64 << 10

// reserve takes n more bytes for a request that holds held already, if
// they fit under limit (three quarters of it when the request would hold
// more than smallBody). A request may exceed the limit when it is the only
// one holding anything, so that one body of the largest allowed size (and
// its inflater) is always readable.
func (b *budget) reserve(n, held, limit int64) bool {
	if held+n > smallBody {
		limit -= limit / 4
	}
	for {
		used := b.used.Load()
		if used > held && used+n > limit {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

func (b *budget) release(n int64) {
	if n != 0 {
		b.used.Add(-n)
	}
}

// Held is the number of body bytes reserved right now.
func (b *budget) Held() int64 { return b.used.Load() }

// reservation is one request's share of the budget.
type reservation struct {
	b     *budget
	limit int64
	held  int64
}

func (r *reservation) grow(n int64) bool {
	if !r.b.reserve(n, r.held, r.limit) {
		return false
	}
	r.held += n
	return true
}

// shrink keeps n bytes of what the request holds and gives back the rest.
func (r *reservation) shrink(n int64) {
	if n < r.held {
		r.b.release(r.held - n)
		r.held = n
	}
}

// release gives back everything the request holds; it is safe to call twice.
func (r *reservation) release() {
	r.b.release(r.held)
	r.held = 0
}
