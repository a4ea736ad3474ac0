package xtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

var (
	relaydDir  string
	relaydOnce = sync.OnceValues(func() (string, error) {
		dir, err := os.MkdirTemp("", "relayd-bin-")
		if err != nil {
			return "", err
		}
		relaydDir = dir
		bin := filepath.Join(dir, "relayd")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/relayd/relayd/cmd/relayd").CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go build: %v\n%s", err, out)
		}
		return bin, nil
	})
)

// RelaydBinary builds cmd/relayd once per test binary and returns its path,
// for tests that run relayd as a child process (to SIGKILL it, say).
func RelaydBinary() (string, error) { return relaydOnce() }

// RemoveRelaydBinary deletes what RelaydBinary built; call it from TestMain
// after m.Run.
func RemoveRelaydBinary() {
	if relaydDir != "" {
		os.RemoveAll(relaydDir)
	}
}
