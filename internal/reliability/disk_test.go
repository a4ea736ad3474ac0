package reliability

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mountTmpfs mounts a tmpfs of the given size on a fresh directory and
// unmounts it when the test ends, or skips the test where that is not
// allowed (not root, no CAP_SYS_ADMIN, no mount binary).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
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

// TestDiskFull puts the bbolt file on a small tmpfs beside a ballast
// file, fills it with messages the API does not take, and checks that
// ingest answers 503 (never 500, never a 202 it cannot keep), that it
// accepts again once the ballast is deleted, and that every accepted
// message is delivered, also after a restart on the same file.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("builds relayd and mounts a tmpfs")
	}
	mnt := mountTmpfs(t, "4m")
	ballast := filepath.Join(mnt, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 2<<20+512<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	api := newOperator(t)
	api.SetDown(true) // nothing leaves the queue: it fills the disk
	cfg := writeConfig(t, settings{db: filepath.Join(mnt, "data", "relayd.db"), apiURL: api.URL})
	d := start(t, cfg)
	s := newSender(8 << 10)
	s.target(d)
	ctx := context.Background()

	// Fill: every answer is 202 until the disk is full, then 503.
	refused := 0
	for i := 0; refused < 5; i++ {
		if i == 2000 {
			t.Fatalf("the disk never filled: %s", s.summary())
		}
		switch code := s.send(ctx, fmt.Sprintf("fill-%d", i), fmt.Sprintf("octo/repo-%d", i%4)); code {
		case http.StatusAccepted:
			refused = 0
		case http.StatusServiceUnavailable:
			refused++
		default:
			t.Fatalf("event %d answered %d while the disk filled, want 202 or 503: %s\n%s", i, code, s.summary(), d.logTail())
		}
	}
	t.Logf("disk full: %s", s.summary())
	if resp, err := http.Get(d.admin + "/healthz"); err != nil {
		t.Fatalf("relayd died with a full disk: %v\n%s", err, d.logTail())
	} else {
		resp.Body.Close()
	}

	// Space returns: ingest recovers by itself.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "ingest to accept again after space returned", func() (bool, string) {
		code := s.send(ctx, fmt.Sprintf("after-%d", time.Now().UnixNano()), "octo/repo-0")
		return code == http.StatusAccepted, fmt.Sprintf("last answer %d", code)
	})

	// Nothing accepted was lost: all of it reaches the API.
	api.SetDown(false)
	accepted := s.acceptedIDs()
	eventually(t, 60*time.Second, "every accepted delivery to reach the API", func() (bool, string) {
		m := missing(accepted, api.deliveries())
		return len(m) == 0, fmt.Sprintf("%d of %d missing, e.g. %v", len(m), len(accepted), first(m, 5))
	})

	eventually(t, 30*time.Second, "the queue to drain", func() (bool, string) {
		n, err := d.pending()
		return err == nil && n == 0, fmt.Sprintf("pending %d, %v", n, err)
	})

	// The file survived the failed writes: a restarted daemon opens it,
	// has nothing pending, and takes new events.
	d.kill()
	d = start(t, cfg)
	s.target(d)
	if n, err := d.pending(); err != nil || n != 0 {
		t.Errorf("after restart: %d pending, %v; want 0", n, err)
	}
	if code := s.send(ctx, "after-restart", "octo/repo-1"); code != http.StatusAccepted {
		t.Fatalf("after restart: answer %d, want 202", code)
	}
	eventually(t, 30*time.Second, "the event after the restart to be delivered", func() (bool, string) {
		return api.deliveries()["after-restart"] > 0, ""
	})
	d.stop()
}
