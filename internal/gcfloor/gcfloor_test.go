package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name                string
		live, floor         uint64
		base, current, want int
	}{
		{"small heap reaches the floor", 8 * mib, 64 * mib, 100, 100, 700},
		{"heap at half the floor is the default", 32 * mib, 64 * mib, 100, 700, 100},
		{"heap above the floor keeps the base", 100 * mib, 64 * mib, 100, 700, 100},
		{"a higher base is kept", 100 * mib, 64 * mib, 300, 300, 300},
		{"a tiny heap is capped", 100 << 10, 64 * mib, 100, 100, maxPercent},
		{"nothing measured yet", 0, 64 * mib, 100, 100, 100},
		{"a small change is not made", 8*mib + mib/8, 64 * mib, 100, 700, 700},
		{"a large change is made", 16 * mib, 64 * mib, 100, 700, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percent(tt.live, tt.floor, tt.base, tt.current); got != tt.want {
				t.Errorf("percent(%d, %d, %d, %d) = %d, want %d", tt.live, tt.floor, tt.base, tt.current, got, tt.want)
			}
		})
	}
}

func gogc(t *testing.T) uint64 {
	t.Helper()
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// collect runs two collections and gives cleanups that follow them time to
// run: what a test that checks nothing changed waits for.
func collect() {
	runtime.GC()
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
}

// waitRaised collects until the floor has raised GOGC above the default.
func waitRaised(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for gogc(t) <= 100 {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC still %d after collections with a small live heap", gogc(t))
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStartRaisesGOGCAndStopRestoresIt runs real collections: the test
// binary's live heap is far below a 1 GiB floor.
func TestStartRaisesGOGCAndStopRestoresIt(t *testing.T) {
	if os.Getenv("GOGC") != "" {
		t.Skip("GOGC is set in the environment")
	}
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	before := debug.SetMemoryLimit(-1)
	stop := Start(1 << 30)
	defer stop()
	waitRaised(t)
	if got := gogc(t); got > maxPercent {
		t.Errorf("GOGC %d above the cap %d", got, maxPercent)
	}
	// The guard: a limit a little over the 1 GiB floor while GOGC is raised.
	if lim := debug.SetMemoryLimit(-1); lim < 1<<30 || lim > 1<<30+256<<20 {
		t.Errorf("memory limit %d while GOGC is raised, want 1 GiB and the runtime's own", lim)
	}
	stop()
	if got := gogc(t); got != 100 {
		t.Errorf("after stop GOGC = %d, want 100", got)
	}
	if lim := debug.SetMemoryLimit(-1); lim != before {
		t.Errorf("after stop memory limit = %d, want %d", lim, before)
	}
	// Stopped: later collections leave it alone.
	collect()
	if got := gogc(t); got != 100 {
		t.Errorf("a collection after stop set GOGC to %d", got)
	}
}

func TestStartLeavesAnOperatorsGOGC(t *testing.T) {
	t.Setenv("GOGC", "150")
	defer debug.SetGCPercent(debug.SetGCPercent(150))
	stop := Start(1 << 30)
	defer stop()
	collect()
	if got := gogc(t); got != 150 {
		t.Errorf("GOGC = %d, want the environment's 150", got)
	}
}

func TestStartCapsTheFloorAtHalfTheMemoryLimit(t *testing.T) {
	if os.Getenv("GOGC") != "" {
		t.Skip("GOGC is set in the environment")
	}
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(2 << 20))
	stop := Start(1 << 30)
	defer stop()
	waitRaised(t)
	// Uncapped, a 1 GiB floor over this binary's small live heap asks
	// for the most; capped at 1 MiB, for much less.
	if got := gogc(t); got >= maxPercent {
		t.Errorf("GOGC = %d with a 2 MiB memory limit: the floor was not capped", got)
	}
}
