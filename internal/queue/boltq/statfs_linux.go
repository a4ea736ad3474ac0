//go:build linux

package boltq

import "syscall"

// freeBytes is the space an unprivileged writer can still use on the file
// system that holds dir.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}
