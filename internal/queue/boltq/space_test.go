package boltq

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
			if !errors.Is(err, syscallENOSPC) {
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
