package ingest

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

const (
	// firstChunk is the most a body buffer holds before the body's bytes
	// arrive: a connection that announces a large body and trickles it
	// holds this, not the announced size.
	firstChunk = 4 << 10
	// maxPooledBuf is the largest buffer kept for reuse; a larger one (a
	// rare large body) goes to the garbage collector, so memory returns
	// after a burst of large bodies.
	maxPooledBuf = 64 << 10
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

// getBuf takes a body buffer from the pool.
func (h *Handler) getBuf() *[]byte {
	if b, ok := h.bufs.Get().(*[]byte); ok {
		return b
	}
	return new([]byte)
}

// putBuf returns a buffer to the pool unless it is oversized.
func (h *Handler) putBuf(b *[]byte) {
	if cap(*b) > maxPooledBuf {
		return
	}
	*b = (*b)[:0]
	h.bufs.Put(b)
}

// readBody reads the request body into *buf (inflating gzip) through
// limits: maxBody bytes on the wire, maxInflated once inflated. The buffer
// grows as bytes arrive, and everything it holds is reserved from res
// first; errNoBudget when the budget has no room.
func readBody(buf *[]byte, res *reservation, w http.ResponseWriter, req *http.Request, maxBody, maxInflated int64) error {
	if req.ContentLength > maxBody {
		return &http.MaxBytesError{Limit: maxBody}
	}
	if c := cap(*buf); c > 0 && !res.grow(int64(c)) {
		return errNoBudget
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
			return errNoBudget
		}
		zr, err := gzip.NewReader(body)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		// Inflated as it arrives, into a buffer that grows with the
		// output, so a bomb costs at most maxInflated.
		r, limit, hint, inflating = zr, maxInflated, -1, true
	default:
		return fmt.Errorf("unsupported Content-Encoding %q", req.Header.Get("Content-Encoding"))
	}
	b, err := readGrowing((*buf)[:0], r, limit, hint, res)
	*buf = b
	if err != nil {
		return err
	}
	switch {
	case int64(len(b)) > limit && inflating:
		return errInflatedTooLarge
	case int64(len(b)) > limit:
		return &http.MaxBytesError{Limit: maxBody}
	case hint >= 0 && int64(len(b)) > hint:
		return errors.New("body longer than its Content-Length")
	}
	return nil
}

// readGrowing appends r to b until EOF or until it holds more than limit
// bytes. The buffer starts at one small chunk (or the announced size, when
// smaller) and at most doubles each time it fills, never past what the
// body may hold (hint or limit, plus the one byte that shows it is over);
// each growth is reserved from res before it is made.
func readGrowing(b []byte, r io.Reader, limit, hint int64, res *reservation) ([]byte, error) {
	ceil := limit + 1
	if hint >= 0 && hint < limit {
		ceil = hint + 1 // +1: the read that returns EOF needs room to try
	}
	for {
		if len(b) == cap(b) {
			if int64(len(b)) >= ceil {
				return b, nil // over the limit (or over an announced size net/http enforces)
			}
			n := min(max(int64(cap(b))*2, firstChunk), ceil)
			if !res.grow(n - int64(cap(b))) {
				return b, errNoBudget
			}
			nb := make([]byte, len(b), n)
			copy(nb, b)
			b = nb
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}
