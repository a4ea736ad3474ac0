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

// readyz returns /readyz's status code.
func (d *daemon) readyz() int {
	resp, err := http.Get(d.admin + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// fill sends events, none of which the API takes, until ingest refuses five
// in a row: every answer must be 202 or 503, never a 500 or a 202 it cannot
// keep.
func fill(t *testing.T, d *daemon, s *sender, prefix string) {
	t.Helper()
	refused := 0
	for i := 0; refused < 5; i++ {
		if i == 4000 {
			t.Fatalf("the disk never filled: %s", s.summary())
		}
		switch code := s.send(context.Background(), fmt.Sprintf("%s-%d", prefix, i), fmt.Sprintf("octo/repo-%d", i%4)); code {
		case http.StatusAccepted:
			refused = 0
		case http.StatusServiceUnavailable:
			refused++
		default:
			t.Fatalf("event %d answered %d while the disk filled, want 202 or 503: %s\n%s", i, code, s.summary(), d.logTail())
		}
	}
}

// fillDisk writes a ballast file in dir until the disk is full.
func fillDisk(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			return p
		}
	}
}

// TestDiskFull puts the bbolt file on a small tmpfs beside a ballast file
// and fills it with messages the API does not take. Ingest stops at
// storage.min_free_bytes (503, /readyz not ready, relayd_storage_low_space
// 1), before the disk is full. Once the API is back every accepted message
// is delivered and acked with the ballast still there and without a
// restart, and ingest accepts again. Filled again and killed, with the
// rest of the disk then taken, relayd starts (its reserve gives the log's
// replay room) and delivers everything once space returns.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("builds relayd and mounts a tmpfs")
	}
	mnt := mountTmpfs(t, "8m")
	ballast := filepath.Join(mnt, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 3<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	api := newOperator(t)
	api.SetDown(true) // nothing leaves the queue: it fills the disk
	cfg := writeConfig(t, settings{db: filepath.Join(mnt, "data", "relayd.db"), apiURL: api.URL, minFree: 1 << 20})
	d := start(t, cfg)
	s := newSender(8 << 10)
	s.target(d)
	ctx := context.Background()

	fill(t, d, s, "fill")
	t.Logf("at the floor: %s", s.summary())
	if code := d.readyz(); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz answered %d below the free-space floor, want 503", code)
	}
	if v, err := d.metric("relayd_storage_low_space"); err != nil || v != 1 {
		t.Errorf("relayd_storage_low_space = %v, %v below the floor; want 1", v, err)
	}

	// The API comes back; the disk stays as it is. Acks commit: everything
	// accepted is delivered and the queue drains, no restart.
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
	eventually(t, 30*time.Second, "ready and accepting again", func() (bool, string) {
		code := s.send(ctx, fmt.Sprintf("after-%d", time.Now().UnixNano()), "octo/repo-0")
		return code == http.StatusAccepted && d.readyz() == http.StatusOK, fmt.Sprintf("last answer %d, readyz %d", code, d.readyz())
	})
	if v, err := d.metric("relayd_storage_low_space"); err != nil || v != 0 {
		t.Errorf("relayd_storage_low_space = %v, %v above the floor; want 0", v, err)
	}

	// Filled again and killed; then something else takes the rest of the
	// disk. relayd must start all the same and lose nothing.
	api.SetDown(true)
	fill(t, d, s, "refill")
	d.kill()
	full := fillDisk(t, mnt, "ballast2")
	d = start(t, cfg)
	s.target(d)
	if err := os.Remove(full); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	api.SetDown(false)
	accepted = s.acceptedIDs()
	eventually(t, 60*time.Second, "every accepted delivery to reach the API after the restart", func() (bool, string) {
		m := missing(accepted, api.deliveries())
		return len(m) == 0, fmt.Sprintf("%d of %d missing, e.g. %v", len(m), len(accepted), first(m, 5))
	})
	eventually(t, 30*time.Second, "the queue to drain after the restart", func() (bool, string) {
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
