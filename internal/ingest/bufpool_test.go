package ingest

import (
	"bytes"
	"sync"
	"testing"
)

func TestPutBufKeepsOnlySmallBuffers(t *testing.T) {
	cases := []struct {
		name string
		size int
		kept bool
	}{
		{"empty", 0, true},
		{"typical body", 4 << 10, true},
		{"at the cap", maxPooledBuf, true},
		{"past the cap", maxPooledBuf + 1, false},
		{"max body", 4 << 20, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var pool sync.Pool // no New: Get returns nil when empty
			b := bytes.NewBuffer(make([]byte, 0, tc.size))
			if b.Cap() != tc.size {
				t.Fatalf("cap = %d, want %d", b.Cap(), tc.size)
			}
			// sync.Pool may drop any Put (it does at random under the race
			// detector), so a kept buffer need only come back once in many
			// tries, and a dropped one must never come back.
			seen := false
			for range 100 {
				putBuf(&pool, b)
				if got, _ := pool.Get().(*bytes.Buffer); got == b {
					seen = true
				}
			}
			if seen != tc.kept {
				t.Errorf("buffer of cap %d back from the pool = %v, want %v", tc.size, seen, tc.kept)
			}
		})
	}
}
