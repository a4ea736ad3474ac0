//go:build !linux

package boltq

import "errors"

// freeBytes is not measured here: the floor and the reserve are off.
func freeBytes(string) (int64, error) { return 0, errNoStatfs }

var errNoStatfs = errors.New("free space is not measured on this system")
