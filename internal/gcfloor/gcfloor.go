// Package gcfloor keeps the garbage collector's heap goal at or above a
// floor, so a process with a small live heap does not collect dozens of
// times a second.
//
// The runtime's default (GOGC=100) sets the next collection at twice the
// live heap. relayd's live heap is small (some megabytes) while it
// allocates quickly when busy (each turn builds a request, parses an
// answer, encodes records), so at the default it collects every few tens
// of milliseconds and spends a tenth of its CPU time doing so. Letting the
// heap reach the floor first costs at most the floor in memory; above it
// the collector behaves as GOGC says.
package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// DefaultFloor is the heap goal relayd keeps at least.
const DefaultFloor = 32 << 20

// maxPercent bounds the GOGC the floor asks for: a live heap of a few
// hundred kilobytes must not let the next goal run far past the floor.
const maxPercent = 2000

// Percent is the GOGC that puts the next heap goal, live × (1 + GOGC/100),
// at the floor, never below base and never above maxPercent. Changes
// smaller than a tenth are not worth making: it returns current then.
func Percent(live, floor uint64, base, current int) int {
	want := base
	if live > 0 && floor > live {
		want = max(base, int((floor-live)*100/live))
	}
	want = min(want, max(base, maxPercent))
	if d := want - current; current > 0 && d*10 < current && -d*10 < current {
		return current
	}
	return want
}

// Start keeps the heap goal at or above floor until stop is called. It does
// nothing when GOGC is set in the environment (the operator chose) or when
// the collector is off. A memory limit (GOMEMLIMIT) still applies: the
// runtime collects as it approaches it whatever GOGC is, so the floor is
// capped at half of it.
func Start(floor uint64) (stop func()) {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	base := debug.SetGCPercent(100)
	if base < 0 {
		debug.SetGCPercent(base)
		return func() {}
	}
	if limit := debug.SetMemoryLimit(-1); limit > 0 && uint64(limit)/2 < floor {
		floor = uint64(limit) / 2
	}
	t := &tuner{floor: floor, base: base, current: base}
	t.adjust()
	t.arm()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if !t.stopped {
			t.stopped = true
			debug.SetGCPercent(base)
		}
	}
}

type tuner struct {
	floor uint64
	base  int

	mu      sync.Mutex
	current int
	stopped bool
	sample  [1]metrics.Sample
}

// sentinel holds a pointer so that it is not packed with other small
// objects (a cleanup on such a block runs only once all of them are gone).
type sentinel struct {
	_ *byte
	_ [8]byte
}

// arm runs adjust after the next collection: a cleanup attached to an
// object nothing refers to runs once a collection has found it gone.
func (t *tuner) arm() {
	runtime.AddCleanup(new(sentinel), func(t *tuner) {
		if t.adjust() {
			t.arm()
		}
	}, t)
}

// adjust sets GOGC for the live heap the last collection found; false once
// stopped.
func (t *tuner) adjust() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	t.sample[0].Name = "/gc/heap/live:bytes"
	metrics.Read(t.sample[:])
	if t.sample[0].Value.Kind() != metrics.KindUint64 {
		return true
	}
	if p := Percent(t.sample[0].Value.Uint64(), t.floor, t.base, t.current); p != t.current {
		debug.SetGCPercent(p)
		t.current = p
	}
	return true
}
