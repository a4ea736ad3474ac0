//go:build !linux

package boltq

import bolt "go.etcd.io/bbolt"

func dropMapped(*bolt.DB, int64) {}
