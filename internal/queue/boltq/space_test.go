package boltq

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/queue"
)

// mountTmpfs mounts a tmpfs of the given size on a fresh directory and
// unmounts it when the test ends, or skips the test where that is not
// allowed (not root, no CAP_SYS_ADMIN, no mount binary).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("cannot simulate a full disk: mounting a %s tmpfs needs root", size)
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot simulate a full disk: mounting a %s tmpfs failed (needs root with CAP_SYS_ADMIN): %v: %s",
			size, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v: %s; detaching it lazily", dir, err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

// fillDisk writes a ballast file in dir until the disk is full and
// returns its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "ballast")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill the disk: %v", err)
			}
			return p
		}
	}
}

func bigMsg(id, key string, size int) queue.Message {
	m := newMsg(id, "r1", key)
	m.Prompt = strings.Repeat("x", size)
	return m
}

// waitFor polls cond; the deadline is generous, never an assertion on speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func segmentCount(t *testing.T, path string) (n, empty int) {
	t.Helper()
	segs, err := segments(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range segs {
		if fi, err := os.Stat(p); err == nil && fi.Size() == 0 {
			empty++
		}
	}
	return len(segs), empty
}

// The store's own messages stop at the floor: Enqueue answers ErrLowSpace
// (an ErrUnavailable) and LowSpace says so, before the disk is full. With
// the rest of the disk then taken by something else, every message
// accepted is still leased and acked (the reserve gives the commits room),
// and once space returns the store accepts again without a restart.
func TestFloorAndReserveKeepAcksCommitting(t *testing.T) {
	mnt := mountTmpfs(t, "8m")
	path := filepath.Join(mnt, "relayd.db")
	s := openAt(t, path, Options{MinFreeBytes: 1536 << 10, ReserveBytes: 512 << 10, SpaceCheckInterval: 5 * time.Millisecond, segmentSize: 256 << 10})
	waitFor(t, "the reserve file", func() bool { _, err := os.Stat(reservePath(path)); return err == nil })

	var accepted []string
	for i := 0; ; i++ {
		if i == 10000 {
			t.Fatal("the floor never stopped ingest")
		}
		id := fmt.Sprintf("m%d", i)
		_, err := s.Enqueue(ctxT(t), queue.Batch{Messages: []queue.Message{bigMsg(id, fmt.Sprint(i%8), 2000)}})
		if err != nil {
			if !errors.Is(err, ErrLowSpace) || !errors.Is(err, queue.ErrUnavailable) {
				t.Fatalf("enqueue %d: %v, want ErrLowSpace wrapping ErrUnavailable", i, err)
			}
			break
		}
		accepted = append(accepted, id)
	}
	if s.LowSpace() == nil {
		t.Fatal("LowSpace is nil while Enqueue refuses for want of space")
	}
	t.Logf("%d accepted before the floor, %d bytes free", len(accepted), s.FreeBytes())

	// Something else takes the rest of the disk, floor included, once the
	// log's messages are in bbolt (until then they cannot be leased).
	settle(t, s)
	ballast := fillDisk(t, mnt)
	got := map[string]bool{}
	for range accepted {
		l := mustNext(t, s)
		if err := l.Ack(ctxT(t)); err != nil {
			t.Fatalf("ack %s on a full disk: %v", l.Message().ID, err)
		}
		got[l.Message().ID] = true
	}
	if len(got) != len(accepted) {
		t.Fatalf("acked %d distinct messages, want %d", len(got), len(accepted))
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "LowSpace to clear", func() bool { return s.LowSpace() == nil })
	mustEnqueue(t, s, newMsg("after", "r1", "A"))
	if l := mustNext(t, s); l.Message().ID != "after" {
		t.Fatalf("leased %s, want after", l.Message().ID)
	}
	waitFor(t, "the reserve file again", func() bool { _, err := os.Stat(reservePath(path)); return err == nil })
	if _, empty := segmentCount(t, path); empty > 1 {
		t.Errorf("%d empty log segments left", empty)
	}
}

// A lease ending whose commit fails is not lost with its caller's patience:
// the store retries it, and once commits work again the conversation moves
// on without a restart.
func TestLeaseEndRetriedAfterFailedCommit(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(ctx context.Context, l queue.Lease) error
		next string // the message leased next
	}{
		{"ack", func(ctx context.Context, l queue.Lease) error { return l.Ack(ctx) }, "m2"},
		{"ack with chat", func(ctx context.Context, l queue.Lease) error {
			return l.(*lease).AckWithChat(ctx, "r1", "A", queue.ChatState{ChatID: "c1"})
		}, "m2"},
		{"retry", func(ctx context.Context, l queue.Lease) error {
			return l.Retry(ctx, time.Time{}, queue.Failure{Status: 503})
		}, "m1"},
		{"release", func(ctx context.Context, l queue.Lease) error { return l.Release(ctx, time.Time{}) }, "m1"},
		{"dead", func(ctx context.Context, l queue.Lease) error { return l.Dead(ctx, queue.Failure{Status: 400}) }, "m2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var failing atomic.Bool
			s, _ := openTemp(t, Options{commitFault: func() error {
				if failing.Load() {
					return syscall.ENOSPC
				}
				return nil
			}})
			mustEnqueue(t, s, newMsg("m1", "r1", "A"), newMsg("m2", "r1", "A"))
			settle(t, s)
			l := mustNext(t, s)
			failing.Store(true)
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			err := tc.end(ctx, l)
			cancel()
			if err == nil {
				t.Fatal("the lease ending answered nil while commits fail")
			}
			failing.Store(false)
			n := mustNext(t, s)
			if got := n.Message().ID; got != tc.next {
				t.Fatalf("leased %s after commits came back, want %s", got, tc.next)
			}
			if tc.name == "retry" && n.Message().Attempts != 1 {
				t.Errorf("attempts %d after the retried Retry, want 1", n.Message().Attempts)
			}
			if tc.name == "ack with chat" {
				if st, err := s.GetChat(ctxT(t), "r1", "A"); err != nil || st.ChatID != "c1" {
					t.Errorf("chat %+v, %v; want c1 stored with the ack", st, err)
				}
			}
		})
	}
}

// A turn of several messages ends in one write like a single lease, and
// is retried the same way when that write's commit fails.
func TestTurnEndRetriedAfterFailedCommit(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(ctx context.Context, l queue.Lease) error
		next string // the message leased next
	}{
		{"ack", func(ctx context.Context, l queue.Lease) error { return l.Ack(ctx) }, "m3"},
		{"ack with chat", func(ctx context.Context, l queue.Lease) error {
			return l.(*lease).AckWithChat(ctx, "r1", "A", queue.ChatState{ChatID: "c1"})
		}, "m3"},
		{"release", func(ctx context.Context, l queue.Lease) error { return l.Release(ctx, time.Time{}) }, "m1"},
		{"dead", func(ctx context.Context, l queue.Lease) error { return l.Dead(ctx, queue.Failure{Status: 400}) }, "m3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var failing atomic.Bool
			s, _ := openTemp(t, Options{
				Turns: func(string) queue.TurnPolicy { return queue.TurnPolicy{MaxEvents: 2} },
				commitFault: func() error {
					if failing.Load() {
						return syscall.ENOSPC
					}
					return nil
				},
			})
			mustEnqueue(t, s, newMsg("m1", "r1", "A"), newMsg("m2", "r1", "A"), newMsg("m3", "r1", "A"))
			settle(t, s)
			l := mustNext(t, s)
			if n := len(l.Messages()); n != 2 {
				t.Fatalf("turn of %d messages, want 2", n)
			}
			failing.Store(true)
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			err := tc.end(ctx, l)
			cancel()
			if err == nil {
				t.Fatal("the turn's ending answered nil while commits fail")
			}
			failing.Store(false)
			n := mustNext(t, s)
			if got := n.Message().ID; got != tc.next {
				t.Fatalf("leased %s after commits came back, want %s", got, tc.next)
			}
			if tc.name == "ack with chat" {
				if st, err := s.GetChat(ctxT(t), "r1", "A"); err != nil || st.ChatID != "c1" {
					t.Errorf("chat %+v, %v; want c1 stored with the ack", st, err)
				}
				if c, err := s.ChatCounts(ctxT(t)); err != nil || c["r1"] != 1 {
					t.Errorf("chat counts %v, %v; want r1: 1", c, err)
				}
			}
		})
	}
}

// logBehindCommitter logs n messages of conversation A that the committer
// has not applied, as a crash would leave them, and returns the function
// that lets the committer go on.
func logBehindCommitter(t *testing.T, s *Store, n int) (release func()) {
	t.Helper()
	release = blockCommitter(t, s)
	for i := range n {
		mustEnqueue(t, s, bigMsg(fmt.Sprintf("m%03d", i), "A", 2000))
	}
	return release
}

// crashCopy copies the bbolt file and its log segments into dir, as a
// crash would leave them.
func crashCopy(t *testing.T, src, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	segs, err := segments(src)
	if err != nil || len(segs) == 0 {
		t.Fatalf("segments: %v %v", segs, err)
	}
	for _, p := range append(segs, src) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(p)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, filepath.Base(src))
}

// A crash leaves logged messages that bbolt does not hold, on a disk that
// is then full. The next start must work and lose nothing: with a reserve
// it applies them at once; without one it starts with them unapplied and
// applies them once space returns, no restart needed.
func TestStartOnFullDisk(t *testing.T) {
	const n = 300
	for _, reserve := range []int64{2 << 20, 0} {
		t.Run(fmt.Sprintf("reserve %d", reserve), func(t *testing.T) {
			mnt := mountTmpfs(t, "8m")
			orig := filepath.Join(mnt, "a", "relayd.db")
			s := openAt(t, orig, Options{})
			release := logBehindCommitter(t, s, n)
			crashed := crashCopy(t, orig, filepath.Join(mnt, "b"))
			release()
			if err := s.Close(); err != nil {
				t.Logf("close: %v", err)
			}
			if err := os.RemoveAll(filepath.Dir(orig)); err != nil {
				t.Fatal(err)
			}
			if reserve > 0 {
				// The crashed process had its reserve in place.
				if err := writeReserve(reservePath(crashed), reserve); err != nil {
					t.Fatal(err)
				}
			}
			ballast := fillDisk(t, mnt)

			c := openAt(t, crashed, Options{ReserveBytes: reserve, SpaceCheckInterval: 5 * time.Millisecond})
			if reserve == 0 {
				if err := os.Remove(ballast); err != nil {
					t.Fatal(err)
				}
			}
			for i := range n {
				l := mustNext(t, c)
				if got, want := l.Message().ID, fmt.Sprintf("m%03d", i); got != want {
					t.Fatalf("leased %s, want %s", got, want)
				}
				if err := l.Ack(ctxT(t)); err != nil {
					t.Fatalf("ack %s: %v", l.Message().ID, err)
				}
			}
			if st := mustStats(t, c); st != (queue.Stats{}) {
				t.Fatalf("stats %+v after draining, want empty", st)
			}
			_ = os.Remove(ballast)
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			c = openAt(t, crashed, Options{})
			if st := mustStats(t, c); st != (queue.Stats{}) {
				t.Fatalf("stats %+v after another start, want nothing applied twice", st)
			}
		})
	}
}

// A log that cannot write (the disk is full and no segment is prepared)
// leaves no empty segment per failed write, and its frame numbers go on
// from the last one written once space returns.
func TestFullDiskLeavesNoEmptySegments(t *testing.T) {
	mnt := mountTmpfs(t, "4m")
	path := filepath.Join(mnt, "relayd.db")
	s := openAt(t, path, Options{segmentSize: 64 << 10})
	mustEnqueue(t, s, newMsg("first", "r1", "A"))
	settle(t, s)
	before := s.wal.next
	ballast := fillDisk(t, mnt)
	refused := 0
	for i := range 200 {
		_, err := s.Enqueue(ctxT(t), queue.Batch{Messages: []queue.Message{bigMsg(fmt.Sprint(i), "A", 4000)}})
		if err != nil {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("no enqueue failed on a full disk")
	}
	if n, empty := segmentCount(t, path); empty > 1 {
		t.Fatalf("%d of %d segments are empty after %d failed writes", empty, n, refused)
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	settle(t, s)
	st := mustStats(t, s)
	accepted := uint64(st.Ready + st.Delayed - 1)
	mustEnqueue(t, s, newMsg("after", "r1", "B"))
	if got, want := s.wal.next, before+accepted+1; got != want {
		t.Errorf("next frame number %d after %d accepted and %d refused, want %d", got, accepted, refused, want)
	}
}
