package ingest

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net/http"
	"strings"
	"sync"
	"unsafe"
)

const (
	// minChunk is the most a body holds before its bytes arrive: a
	// connection that announces a large body and trickles it holds this,
	// not the announced size.
	minChunk = 4 << 10
	// maxChunk is the largest chunk. A body is read into chunks that
	// double from minChunk up to this, so growing never copies (and never
	// leaves a half-size buffer behind as garbage), and every chunk is
	// small enough to be kept for reuse.
	maxChunk = 64 << 10
	// gzipState is what one gzip reader holds while it inflates (the
	// 32 KiB window, Huffman tables, a read buffer), reserved from the
	// budget alongside the body.
	gzipState = 48 << 10
)

var (
	errInflatedTooLarge = errors.New("inflated body exceeds the limit")
	// errNoBudget: the bodies being read at once hold the whole budget.
	errNoBudget = errors.New("too many request bodies being read at once")
)

// chunkPool keeps body chunks for reuse, one pool per size (minChunk,
// 2×minChunk, … maxChunk): no pooled buffer is ever larger than maxChunk.
type chunkPool [chunkClasses]sync.Pool

// chunkClasses counts the chunk sizes: minChunk << 0 … 4 is maxChunk.
const chunkClasses = 5

func chunkClass(size int) int { return bits.Len(uint(size/minChunk)) - 1 }

// The pools hold a chunk's first byte: a pointer goes into an interface
// without an allocation, and the class gives the length back.
func (p *chunkPool) get(size int) []byte {
	if b, ok := p[chunkClass(size)].Get().(*byte); ok {
		return unsafe.Slice(b, size)[:0]
	}
	return make([]byte, 0, size)
}

func (p *chunkPool) put(c []byte) {
	if cap(c) < minChunk || cap(c) > maxChunk || cap(c)&(cap(c)-1) != 0 {
		return
	}
	p[chunkClass(cap(c))].Put(unsafe.SliceData(c[:cap(c)]))
}

// readBody reads the request body (inflating gzip) through limits:
// maxBody bytes on the wire, maxInflated once inflated. It is read into
// chunks taken as bytes arrive, each reserved from res first (errNoBudget
// when the budget has no room), then copied into one slice of its exact
// length, which the caller owns; the chunks go back to the pool and res
// keeps only the slice's length.
func readBody(pool *chunkPool, res *reservation, w http.ResponseWriter, req *http.Request, maxBody, maxInflated int64) ([]byte, error) {
	if req.ContentLength > maxBody {
		return nil, &http.MaxBytesError{Limit: maxBody}
	}
	body := http.MaxBytesReader(w, req.Body, maxBody)
	var (
		r         io.Reader = body
		limit               = maxBody
		hint                = req.ContentLength // -1 when unknown
		inflating bool
	)
	switch strings.ToLower(req.Header.Get("Content-Encoding")) {
	case "", "identity":
	case "gzip", "x-gzip":
		if !res.grow(gzipState) {
			return nil, errNoBudget
		}
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		// Inflated as it arrives, into chunks taken as the output grows,
		// so a bomb costs at most maxInflated.
		r, limit, hint, inflating = zr, maxInflated, -1, true
	default:
		return nil, fmt.Errorf("unsupported Content-Encoding %q", req.Header.Get("Content-Encoding"))
	}
	var inline [6][]byte // the chunks of a body up to 188 KiB, on the stack
	chunks, n, err := readChunks(pool, r, limit, hint, res, inline[:0])
	defer func() {
		for _, c := range chunks {
			pool.put(c)
		}
	}()
	switch {
	case err != nil:
		return nil, err
	case n > limit && inflating:
		return nil, errInflatedTooLarge
	case n > limit:
		return nil, &http.MaxBytesError{Limit: maxBody}
	case hint >= 0 && n > hint:
		return nil, errors.New("body longer than its Content-Length")
	}
	raw := make([]byte, 0, n)
	for _, c := range chunks {
		raw = append(raw, c...)
	}
	// The chunks (and the inflater) go back now; the request holds the
	// body itself until it is answered.
	res.shrink(n)
	return raw, nil
}

// readChunks reads r until EOF or until it has more than limit bytes (or
// more than hint, the announced length, when that is smaller): one byte
// over is enough to refuse the body. Chunks double from minChunk to
// maxChunk; each is reserved from res before it is taken. It returns them
// appended to chunks, every one full but the last, and the bytes read.
func readChunks(pool *chunkPool, r io.Reader, limit, hint int64, res *reservation, chunks [][]byte) ([][]byte, int64, error) {
	ceil := limit + 1
	if hint >= 0 && hint < limit {
		ceil = hint + 1 // a body longer than announced is refused too
	}
	var (
		n    int64
		size = minChunk
	)
	for n < ceil {
		if len(chunks) == 0 || len(chunks[len(chunks)-1]) == cap(chunks[len(chunks)-1]) {
			if !res.grow(int64(size)) {
				return chunks, n, errNoBudget
			}
			chunks = append(chunks, pool.get(size))
			size = min(2*size, maxChunk)
		}
		c := chunks[len(chunks)-1]
		end := min(cap(c), len(c)+int(ceil-n))
		m, err := r.Read(c[len(c):end])
		chunks[len(chunks)-1] = c[:len(c)+m]
		n += int64(m)
		if err == io.EOF {
			return chunks, n, nil
		}
		if err != nil {
			return chunks, n, err
		}
	}
	return chunks, n, nil
}
