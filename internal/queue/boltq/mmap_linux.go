//go:build linux

package boltq

import (
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// dropMapped unmaps the resident pages of the first size bytes of db's
// memory map. Opening a file without a synced freelist reads every page to
// rebuild it, which would otherwise leave the whole file counted in the
// process's resident set. The pages stay in the page cache; later reads
// fault them back in. Only call it while no write transaction can remap
// the file.
func dropMapped(db *bolt.DB, size int64) {
	info := db.Info()
	if info == nil || info.Data == 0 || size <= 0 {
		return
	}
	_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, info.Data, uintptr(size), syscall.MADV_DONTNEED)
}
