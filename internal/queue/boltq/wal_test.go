package boltq

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/relayd/relayd/internal/queue"
)

func TestFrameRoundTrip(t *testing.T) {
	long := queue.Message{ID: "m-long", Route: "r", ConversationKey: "k", Prompt: string(bytes.Repeat([]byte("é"), 70000)), Attempts: 3, LastStatus: 503, LastError: "x",
		EnqueuedAt: time.Unix(1700000000, 5).UTC(), NextAttemptAt: time.Unix(1700000100, 0).UTC()}
	for _, e := range []walEntry{
		{lsn: 1},
		{lsn: 2, exp: 99, dedupe: []byte("github:abc")},
		{lsn: 3, msgs: []queue.Message{newMsg("a", "r1", "A")}},
		{lsn: 1 << 40, exp: -1, dedupe: []byte("k"), msgs: []queue.Message{newMsg("a", "r1", "A"), long, {ID: "b", Route: "r2"}}},
	} {
		b := appendFrame([]byte("prefix"), &e)
		r := bufio.NewReader(bytes.NewReader(b[len("prefix"):]))
		got, _, err := readFrame(r, nil)
		if err != nil {
			t.Fatalf("lsn %d: %v", e.lsn, err)
		}
		if len(e.msgs) == 0 {
			e.msgs = []queue.Message{}
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("lsn %d: read back %+v, want %+v", e.lsn, got, e)
		}
		if _, _, err := readFrame(r, nil); err != io.EOF {
			t.Fatalf("lsn %d: after the frame: %v, want EOF", e.lsn, err)
		}
	}
}

// Every cut of a frame, and every flipped byte, is refused as torn: the
// frames before it are all replay reads.
func TestFrameDamage(t *testing.T) {
	e := walEntry{lsn: 7, exp: 1, dedupe: []byte("d"), msgs: []queue.Message{newMsg("a", "r1", "A")}}
	b := appendFrame(nil, &e)
	for cut := 1; cut < len(b); cut++ {
		if _, _, err := readFrame(bufio.NewReader(bytes.NewReader(b[:cut])), nil); err == nil || err == io.EOF {
			t.Fatalf("frame cut at %d of %d read as %v", cut, len(b), err)
		}
	}
	for i := range b {
		d := bytes.Clone(b)
		d[i] ^= 0x40
		if _, _, err := readFrame(bufio.NewReader(bytes.NewReader(d)), nil); err == nil {
			t.Fatalf("frame with byte %d flipped was read", i)
		}
	}
}

// The zeros a prepared segment holds past its last frame read as its end.
func TestFrameZerosEnd(t *testing.T) {
	b := appendFrame(nil, &walEntry{lsn: 1, msgs: []queue.Message{newMsg("a", "r1", "A")}})
	r := bufio.NewReader(bytes.NewReader(append(b, make([]byte, 4096)...)))
	if _, _, err := readFrame(r, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readFrame(r, nil); err != io.EOF {
		t.Fatalf("zeros after the frame read as %v, want EOF", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(appendFrame(nil, &walEntry{lsn: 1, msgs: []queue.Message{newMsg("a", "r1", "A")}}))
	f.Add(appendFrame(nil, &walEntry{lsn: 2, exp: 5, dedupe: []byte("k")}))
	f.Add([]byte{0, 0, 0, 20, 1, 2, 3, 4})
	f.Add(append(appendFrame(nil, &walEntry{lsn: 3}), make([]byte, 64)...)) // a prepared segment's zeros
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		for {
			e, _, err := readFrame(r, nil)
			if err != nil {
				return
			}
			// What reads back encodes to the same frame.
			again, _, err := readFrame(bufio.NewReader(bytes.NewReader(appendFrame(nil, &e))), nil)
			if err != nil || !reflect.DeepEqual(again, e) {
				t.Fatalf("re-encoded frame reads as %+v, %v; want %+v", again, err, e)
			}
		}
	})
}

// blockCommitter holds the committer inside a write transaction until the
// returned function is called: enqueues are then logged and answered but
// not applied, which is what a crash at that moment leaves behind.
func blockCommitter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	o := &holdOp{entered: make(chan struct{}), release: make(chan struct{})}
	o.init()
	if err := s.submit(o); err != nil {
		t.Fatal(err)
	}
	<-o.entered
	done := false
	release = func() {
		if !done {
			done = true
			close(o.release)
			<-o.wait()
		}
	}
	t.Cleanup(release)
	return release
}

type holdOp struct {
	reply
	entered, release chan struct{}
}

func (o *holdOp) apply(*bolt.Tx, *group) error {
	close(o.entered)
	<-o.release
	return nil
}

func (o *holdOp) commit(*Store) {}

// copyFiles copies the bbolt file and its log segments at src into a new
// directory, as a crash would leave them on disk.
func copyFiles(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	segs, err := segments(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) == 0 {
		t.Fatal("no write-ahead log segment")
	}
	for _, p := range append(segs, src) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(filepath.Dir(dst), filepath.Base(p)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// An enqueue answered but not yet applied survives a crash: the next Open
// applies it from the log, once, in order, with its dedupe mark.
func TestLoggedNotAppliedSurvivesCrash(t *testing.T) {
	s, path := openTemp(t, Options{})
	mustEnqueue(t, s, newMsg("a1", "r1", "A"))
	settle(t, s)

	release := blockCommitter(t, s)
	for _, id := range []string{"a2", "a3"} {
		if _, err := s.Enqueue(ctxT(t), queue.Batch{DedupeKey: "d-" + id, Messages: []queue.Message{newMsg(id, "r1", "A")}}); err != nil {
			t.Fatal(err)
		}
	}
	// Logged and not applied: a duplicate is still caught.
	if dup, err := s.Enqueue(ctxT(t), queue.Batch{DedupeKey: "d-a2", Messages: []queue.Message{newMsg("a2bis", "r1", "A")}}); err != nil || !dup {
		t.Fatalf("duplicate of a logged batch: dup %v, err %v", dup, err)
	}
	if st, _ := s.Stats(ctxT(t)); st.Ready+st.Delayed != 3 {
		t.Fatalf("stats %+v, want 3 pending with 2 not yet applied", st)
	}
	crashed := copyFiles(t, path)
	release()

	c := openAt(t, crashed, Options{})
	if segs, _ := segments(crashed); len(segs) != 0 {
		t.Errorf("segments left after replay: %v", segs)
	}
	for _, want := range []string{"a1", "a2", "a3"} {
		l := mustNext(t, c)
		if got := l.Message().ID; got != want {
			t.Fatalf("leased %s, want %s", got, want)
		}
		if err := l.Ack(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if st := mustStats(t, c); st != (queue.Stats{}) {
		t.Fatalf("stats %+v after draining, want empty", st)
	}
	if dup, err := c.Enqueue(ctxT(t), queue.Batch{DedupeKey: "d-a3"}); err != nil || !dup {
		t.Fatalf("dedupe mark of a replayed batch: dup %v, err %v", dup, err)
	}

	// Opened again: nothing is applied twice.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = openAt(t, crashed, Options{})
	if st := mustStats(t, c); st != (queue.Stats{}) {
		t.Fatalf("stats %+v after a second open, want empty", st)
	}
}

// A segment holding frames already applied, one to apply and a torn tail:
// replay applies exactly the one.
func TestReplaySkipsAppliedAndTornTail(t *testing.T) {
	s, path := openTemp(t, Options{})
	mustEnqueue(t, s, newMsg("a1", "r1", "A"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	applied := s.walApplied.Load()
	if applied == 0 {
		t.Fatal("no LSN applied after an enqueue")
	}
	var b []byte
	b = appendFrame(b, &walEntry{lsn: applied, msgs: []queue.Message{newMsg("a1", "r1", "A")}})
	b = appendFrame(b, &walEntry{lsn: applied + 1, msgs: []queue.Message{newMsg("a2", "r1", "A")}})
	torn := appendFrame(nil, &walEntry{lsn: applied + 2, msgs: []queue.Message{newMsg("a3", "r1", "A")}})
	b = append(b, torn[:len(torn)-3]...)
	if err := os.WriteFile(segmentPath(path, applied), b, 0o600); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path, Options{})
	for _, want := range []string{"a1", "a2"} {
		l := mustNext(t, s)
		if got := l.Message().ID; got != want {
			t.Fatalf("leased %s, want %s", got, want)
		}
		if err := l.Ack(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if st := mustStats(t, s); st != (queue.Stats{}) {
		t.Fatalf("stats %+v, want empty: the torn frame was never answered", st)
	}
	// New frames are numbered past everything replayed.
	mustEnqueue(t, s, newMsg("a4", "r1", "A"))
	settle(t, s)
	if got := s.walApplied.Load(); got <= applied+1 {
		t.Fatalf("applied LSN %d after a new enqueue, want past %d", got, applied+1)
	}
}

// Segments roll over at their size, and those fully applied are deleted.
func TestSegmentsRollAndPrune(t *testing.T) {
	s, path := openTemp(t, Options{segmentSize: 4 << 10})
	for i := range 200 {
		mustEnqueue(t, s, newMsg(string(rune('a'+i%26))+string(rune('0'+i/26)), "r1", "A"))
	}
	settle(t, s)
	mustEnqueue(t, s, newMsg("last", "r1", "A")) // prunes after its write
	segs, err := segments(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) > 2 {
		t.Fatalf("%d segments after everything was applied, want the current one (and at most one closed since)", len(segs))
	}
	if got := s.logWrites.Load(); got < 2 {
		t.Fatalf("%d log writes", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path, Options{})
	if st := mustStats(t, s); st.Ready+st.Delayed != 201 {
		t.Fatalf("stats %+v after reopen, want 201 pending", st)
	}
}

// While the committer lags too far, enqueues wait (and their callers' ctx
// decides), then go on once it catches up; nothing is lost.
func TestBacklogHoldsEnqueues(t *testing.T) {
	s, _ := openTemp(t, Options{maxUnapplied: 2})
	release := blockCommitter(t, s)
	mustEnqueue(t, s, newMsg("m1", "r1", "A"), newMsg("m2", "r1", "B"))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Enqueue(ctx, queue.Batch{Messages: []queue.Message{newMsg("m3", "r1", "C")}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("enqueue past the backlog: %v, want the caller's deadline", err)
	}
	release()
	mustEnqueue(t, s, newMsg("m4", "r1", "D"))
	if st := mustStats(t, s); st.Ready < 3 {
		t.Fatalf("stats %+v, want m1, m2 and m4 ready", st)
	}
}

// A failed write answers ErrUnavailable, leaves no dedupe mark behind (the
// sender's retry is not a duplicate) and the next write goes to a new
// segment.
func TestLogWriteFailure(t *testing.T) {
	s, path := openTemp(t, Options{})
	mustEnqueue(t, s, newMsg("m1", "r1", "A"))
	// Stand in for a failing disk: the walLoop is idle between groups, and
	// the push below happens after this write. The segment's room is made
	// endless so the write does not move to a prepared segment first.
	if err := s.wal.f.Close(); err != nil {
		t.Fatal(err)
	}
	s.wal.prepared = 1 << 40
	_, err := s.Enqueue(ctxT(t), queue.Batch{DedupeKey: "k", Messages: []queue.Message{newMsg("m2", "r1", "A")}})
	if !errors.Is(err, queue.ErrUnavailable) {
		t.Fatalf("enqueue on a failing log: %v, want ErrUnavailable", err)
	}
	if dup, err := s.Enqueue(ctxT(t), queue.Batch{DedupeKey: "k", Messages: []queue.Message{newMsg("m2", "r1", "A")}}); err != nil || dup {
		t.Fatalf("retry after a failed write: dup %v, err %v; want stored", dup, err)
	}
	if st := mustStats(t, s); st.Ready+st.Delayed != 2 {
		t.Fatalf("stats %+v, want m1 and m2", st)
	}
	if err := s.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	segs, _ := segments(path)
	if len(segs) < 1 {
		t.Fatal("no segment")
	}
	s = openAt(t, path, Options{})
	if st := mustStats(t, s); st.Ready+st.Delayed != 2 {
		t.Fatalf("stats %+v after reopen, want m1 and m2", st)
	}
}

// Compacting a file whose log still holds acknowledged messages keeps them,
// even when the copy goes elsewhere.
func TestCompactAppliesLog(t *testing.T) {
	s, path := openTemp(t, Options{})
	release := blockCommitter(t, s)
	mustEnqueue(t, s, newMsg("m1", "r1", "A"))
	crashed := copyFiles(t, path)
	release()

	dst := filepath.Join(t.TempDir(), "compacted.db")
	if err := Compact(ctxT(t), crashed, dst); err != nil {
		t.Fatal(err)
	}
	c := openAt(t, dst, Options{})
	if l := mustNext(t, c); l.Message().ID != "m1" {
		t.Fatalf("leased %s from the compacted copy, want m1", l.Message().ID)
	}
}

// While logged enqueues keep arriving the committer spaces transactions
// that only apply them; a request someone waits on ends the pause at once,
// and an idle store applies at once.
func TestApplyPace(t *testing.T) {
	s, _ := openTemp(t, Options{applyPace: time.Hour})
	release := blockCommitter(t, s)
	applied := s.walApplied.Load()
	mustEnqueue(t, s, newMsg("m1", "r1", "A"))
	release() // m1 queued while that commit ran: the store is busy
	time.Sleep(50 * time.Millisecond)
	if got := s.walApplied.Load(); got != applied {
		t.Fatalf("applied LSN moved from %d to %d within the pace, with nothing urgent", applied, got)
	}
	if err := s.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if got := s.walApplied.Load(); got <= applied {
		t.Fatalf("applied LSN still %d after an urgent request", got)
	}
	l := mustNext(t, s)
	if l.Message().ID != "m1" {
		t.Fatalf("leased %s, want m1", l.Message().ID)
	}
	if err := l.Ack(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// Nothing queued behind the ack's commit: the next enqueue is applied
	// without waiting out the pace (Next would block for the hour).
	mustEnqueue(t, s, newMsg("m2", "r1", "A"))
	if l := mustNext(t, s); l.Message().ID != "m2" {
		t.Fatalf("leased %s, want m2", l.Message().ID)
	}
}

// waitSpare waits until a segment of size bytes is prepared at path's spare
// name.
func waitSpare(t *testing.T, path string, size int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if fi, err := os.Stat(sparePath(path)); err == nil && fi.Size() == size {
			// Written; the sync that follows is what the log waits for, and
			// a write issued meanwhile appends, so either way is correct.
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no prepared segment of %d bytes", size)
		}
		time.Sleep(time.Millisecond)
	}
}

// Once a prepared segment is at hand the log writes into it, over its
// zeros, without growing it; a crash image taken then replays exactly the
// answered frames, and the zeros after them end the segment quietly.
func TestPreparedSegments(t *testing.T) {
	const size = 64 << 10
	s, path := openTemp(t, Options{segmentSize: size})
	mustEnqueue(t, s, newMsg("a0", "r1", "A")) // the first segment appends; the next is asked for
	waitSpare(t, path, size)
	inPrepared := func() bool {
		segs, err := segments(path)
		if err != nil || len(segs) < 2 {
			return false
		}
		fi, err := os.Stat(segs[len(segs)-1])
		return err == nil && fi.Size() == size
	}
	for i := 0; i < 10 || !inPrepared(); i++ {
		if i > 1000 {
			t.Fatal("the log never moved into a prepared segment")
		}
		mustEnqueue(t, s, newMsg("x", "r1", "X"))
	}
	settle(t, s)

	release := blockCommitter(t, s)
	for _, id := range []string{"b1", "b2", "b3"} {
		if _, err := s.Enqueue(ctxT(t), queue.Batch{DedupeKey: "d-" + id, Messages: []queue.Message{newMsg(id, "r2", "B")}}); err != nil {
			t.Fatal(err)
		}
	}
	segs, err := segments(path)
	if err != nil {
		t.Fatal(err)
	}
	cur := segs[len(segs)-1]
	if fi, err := os.Stat(cur); err != nil || fi.Size() != size {
		t.Fatalf("current segment %s: %v, %v; want its prepared %d bytes, not grown", filepath.Base(cur), fi.Size(), err, size)
	}
	crashed := copyFiles(t, path)
	// A segment half prepared when the process died is left over, too.
	if err := os.WriteFile(sparePath(crashed), make([]byte, 100), 0o600); err != nil {
		t.Fatal(err)
	}
	release()

	var logs bytes.Buffer
	c := openAt(t, crashed, Options{segmentSize: size, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if strings.Contains(logs.String(), "incomplete frame") {
		t.Errorf("replay of a prepared segment reported damage:\n%s", logs.String())
	}
	if _, err := os.Stat(sparePath(crashed)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("left-over prepared segment after Open: %v", err)
	}
	var got []string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		l, err := c.Next(ctx)
		cancel()
		if err != nil {
			break
		}
		if l.Message().Route == "r2" {
			got = append(got, l.Message().ID)
		}
		if err := l.Ack(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"b1", "b2", "b3"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("replayed %v, want %v", got, want)
	}
	if dup, err := c.Enqueue(ctxT(t), queue.Batch{DedupeKey: "d-b2"}); err != nil || !dup {
		t.Fatalf("dedupe mark of a replayed batch: dup %v, err %v", dup, err)
	}

	// A clean close leaves no prepared segment behind.
	mustEnqueue(t, c, newMsg("c1", "r1", "A"))
	waitSpare(t, crashed, size)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sparePath(crashed)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("prepared segment after Close: %v", err)
	}
}

// When segments cannot be prepared the log appends, and loses nothing.
func TestUnpreparedSegmentsAppend(t *testing.T) {
	s, path := openTemp(t, Options{segmentSize: 4 << 10})
	// Read by the preparer only once the first write asks it for a segment.
	s.wal.prep.path = filepath.Join(t.TempDir(), "missing", "spare")
	for i := range 100 {
		mustEnqueue(t, s, newMsg("m"+strconv.Itoa(i), "r1", "A"))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path, Options{})
	for i := range 100 {
		l := mustNext(t, s)
		if got, want := l.Message().ID, "m"+strconv.Itoa(i); got != want {
			t.Fatalf("leased %s, want %s", got, want)
		}
		if err := l.Ack(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
}
