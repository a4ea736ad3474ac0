//go:build !linux

package boltq

import "os"

func fdatasync(f *os.File) error { return f.Sync() }
