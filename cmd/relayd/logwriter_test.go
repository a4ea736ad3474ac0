package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingWriter keeps every Write call apart; gate, when set, holds each
// call until a value is sent on it.
type recordingWriter struct {
	mu      sync.Mutex
	writes  []string
	gate    chan struct{}
	entered chan struct{}
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	if w.entered != nil {
		w.entered <- struct{}{}
	}
	if w.gate != nil {
		<-w.gate
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

func (w *recordingWriter) all() (string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.writes, ""), len(w.writes)
}

func TestLogWriterKeepsEveryLineWholeAndInOrder(t *testing.T) {
	rw := &recordingWriter{}
	lw := newLogWriter(rw, time.Millisecond)
	const writers, lines = 8, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(lw, "writer=%d line=%d %s\n", g, i, strings.Repeat("x", i%50))
			}
		})
	}
	wg.Wait()
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	out, _ := rw.all()
	next := make([]int, writers)
	n := 0
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var g, i int
		var pad string
		if _, err := fmt.Sscanf(line, "writer=%d line=%d %s", &g, &i, &pad); err != nil && i%50 != 0 {
			t.Fatalf("line %q: %v", line, err)
		}
		if i != next[g] || len(pad) != i%50 {
			t.Fatalf("writer %d: line %d (pad %d) where %d was due: %q", g, i, len(pad), next[g], line)
		}
		next[g]++
		n++
	}
	if n != writers*lines {
		t.Fatalf("%d lines written, want %d", n, writers*lines)
	}
}

func TestLogWriterWritesAnIdleLineWithoutClose(t *testing.T) {
	rw := &recordingWriter{}
	lw := newLogWriter(rw, time.Hour) // nothing written yet: the first line goes at once
	defer lw.Close()
	fmt.Fprintln(lw, "relayd started")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if out, _ := rw.all(); out == "relayd started\n" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the first line was not written while relayd ran")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Lines that arrive while a write is in progress go out together in the
// next one.
func TestLogWriterGathersLinesWhileAWriteIsInProgress(t *testing.T) {
	rw := &recordingWriter{gate: make(chan struct{}), entered: make(chan struct{}, 4)}
	lw := newLogWriter(rw, 0)
	fmt.Fprintln(lw, "first")
	<-rw.entered // the writer holds "first" in its write
	var want bytes.Buffer
	for i := range 100 {
		fmt.Fprintf(lw, "line %d\n", i)
		fmt.Fprintf(&want, "line %d\n", i)
	}
	rw.gate <- struct{}{}
	<-rw.entered
	rw.gate <- struct{}{}
	close(rw.gate) // a third write, which must not happen, would not hang
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if len(rw.writes) != 2 || rw.writes[0] != "first\n" || rw.writes[1] != want.String() {
		t.Fatalf("writes = %d %q…, want \"first\" then the 100 lines in one", len(rw.writes), rw.writes[0])
	}
}

// Past logMaxPending a writer waits for the output instead of holding more.
func TestLogWriterBoundsWhatWaits(t *testing.T) {
	release := make(chan struct{})
	rw := &recordingWriter{gate: release} // every write waits until release closes
	lw := newLogWriter(rw, 0)
	line := strings.Repeat("y", 1023) + "\n"
	const lines = 3 * logMaxPending / 1024
	held := func() int {
		lw.mu.Lock()
		defer lw.mu.Unlock()
		return len(lw.buf)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range lines {
			_, _ = lw.Write([]byte(line))
			if n := held(); n > logMaxPending {
				t.Errorf("%d bytes waiting, more than %d", n, logMaxPending)
			}
		}
	}()
	// The output is stuck: the queue fills up to the bound and stays there.
	deadline := time.Now().Add(30 * time.Second)
	for held() < logMaxPending-len(line) {
		if time.Now().After(deadline) {
			t.Fatalf("the queue did not fill while the output was stuck: %d bytes", held())
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	<-done
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	if out, _ := rw.all(); out != strings.Repeat(line, lines) {
		t.Fatalf("%d bytes written, want %d in order", len(out), lines*len(line))
	}
}

func TestLogWriterAfterCloseWritesThrough(t *testing.T) {
	rw := &recordingWriter{}
	lw := newLogWriter(rw, time.Hour)
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(lw, "late")
	if out, n := rw.all(); out != "late\n" || n != 1 {
		t.Fatalf("after Close: %d writes %q, want one write of the line", n, out)
	}
}
