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
const DefaultFloor = 24 << 20

// maxPercent bounds the GOGC the floor asks for: a live heap of a few
// hundred kilobytes must not let the next goal run far past the floor.
const maxPercent = 2000

// percent is the GOGC that puts the next heap goal, live × (1 + GOGC/100),
// at the floor, never below base and never above maxPercent. Changes
// smaller than a tenth are not worth making: it returns current then.
func percent(live, floor uint64, base, current int) int {
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
//
// GOGC is set after a collection, for the live heap that collection found;
// until the next one the goal is that GOGC times whatever is live then. A
// live heap that grows quickly (a burst of requests, an index being built)
// would let a GOGC made for a small heap take the goal far past the floor.
// So while GOGC is raised, a memory limit of the floor plus what the runtime
// holds besides the heap (or the operator's limit, if lower) makes the
// runtime collect there, and the next adjustment sees the larger heap and
// lowers GOGC.
func Start(floor uint64) (stop func()) {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	base := debug.SetGCPercent(100)
	if base < 0 {
		debug.SetGCPercent(base)
		return func() {}
	}
	limit := debug.SetMemoryLimit(-1)
	if limit > 0 && uint64(limit)/2 < floor {
		floor = uint64(limit) / 2
	}
	t := &tuner{floor: floor, base: base, current: base, limit: limit, currentLimit: limit}
	for i, name := range sampleNames {
		t.samples[i].Name = name
	}
	t.adjust()
	t.arm()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if !t.stopped {
			t.stopped = true
			debug.SetGCPercent(base)
			debug.SetMemoryLimit(limit)
		}
	}
}

type tuner struct {
	floor uint64
	base  int
	limit int64 // the operator's memory limit (math.MaxInt64: none)

	mu           sync.Mutex
	current      int   // GOGC set
	currentLimit int64 // memory limit set
	stopped      bool
	samples      [len(sampleNames)]metrics.Sample
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
	metrics.Read(t.samples[:])
	for _, x := range t.samples {
		if x.Value.Kind() != metrics.KindUint64 {
			return true
		}
	}
	live := t.samples[0].Value.Uint64()
	// What the runtime holds besides the heap (stacks, its own structures)
	// counts against a memory limit as well.
	heap := t.samples[2].Value.Uint64() + t.samples[3].Value.Uint64() + t.samples[4].Value.Uint64() + t.samples[5].Value.Uint64()
	other := t.samples[1].Value.Uint64() - min(heap, t.samples[1].Value.Uint64())
	p := percent(live, t.floor, t.base, t.current)
	limit := t.limit
	if p > t.base {
		limit = min(limit, int64(t.floor+other))
	}
	// Lower the limit before GOGC rises, and GOGC before the limit rises:
	// at no moment are both raised.
	if limit < t.currentLimit {
		debug.SetMemoryLimit(limit)
		t.currentLimit = limit
	}
	if p != t.current {
		debug.SetGCPercent(p)
		t.current = p
	}
	if limit != t.currentLimit {
		debug.SetMemoryLimit(limit)
		t.currentLimit = limit
	}
	return true
}

var sampleNames = [...]string{
	"/gc/heap/live:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/released:bytes",
}
