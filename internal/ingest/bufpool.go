package ingest

import (
	"bytes"
	"sync"
)

// maxPooledBuf is the largest body buffer kept for reuse. Typical webhook
// bodies fit; a buffer grown for a large (or hostile) body is left to the
// garbage collector rather than pinned in the pool after the burst ends.
const maxPooledBuf = 64 << 10

// putBuf returns b to pool unless it grew past maxPooledBuf.
func putBuf(pool *sync.Pool, b *bytes.Buffer) {
	if b.Cap() > maxPooledBuf {
		return
	}
	pool.Put(b)
}
