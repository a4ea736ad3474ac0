package dispatch

import (
	"testing"
	"time"
)

// The wait before a pause's first probe doubles while pauses follow
// resumes closely, stops at the ceiling, and starts over once dispatch
// stayed running for the relapse window.
func TestPauserResumeBackoff(t *testing.T) {
	const initial, ceiling = time.Second, 8 * time.Second
	type step struct {
		after    time.Duration // clock advance before pausing again
		wantWait time.Duration
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"first pause waits initial", []step{{0, initial}}},
		{"relapses double up to the ceiling", []step{
			{0, initial}, {time.Millisecond, 2 * time.Second}, {time.Millisecond, 4 * time.Second},
			{time.Millisecond, 8 * time.Second}, {time.Millisecond, 8 * time.Second},
		}},
		{"running through the window resets", []step{
			{0, initial}, {time.Second, 2 * time.Second}, {time.Second, 4 * time.Second},
			{relapseWindow, initial}, {time.Second, 2 * time.Second},
		}},
		{"just inside the window is a relapse", []step{
			{0, initial}, {relapseWindow - time.Nanosecond, 2 * time.Second},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			p := newPauser(initial, ceiling, nil)
			p.now = func() time.Time { return clock }
			for i, s := range tc.steps {
				clock = clock.Add(s.after)
				if !p.pause(pausedUnauthorized) {
					t.Fatalf("step %d: pause did not change the state", i)
				}
				if p.wait != s.wantWait {
					t.Errorf("step %d: wait = %v, want %v", i, p.wait, s.wantWait)
				}
				// A second 401 while paused changes nothing.
				p.pause(pausedUnauthorized)
				if p.wait != s.wantWait {
					t.Errorf("step %d: wait after a repeated 401 = %v, want %v", i, p.wait, s.wantWait)
				}
				p.resume()
			}
		})
	}
}

// A window shorter than the ceiling would let a key that flaps at the
// ceiling reset its own backoff.
func TestPauserRelapseWindowCoversCeiling(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newPauser(time.Second, 2*relapseWindow, nil)
	p.now = func() time.Time { return clock }
	p.pause(pausedUnauthorized)
	p.resume()
	clock = clock.Add(relapseWindow + time.Second)
	p.pause(pausedUnauthorized)
	if p.wait != 2*time.Second {
		t.Errorf("wait = %v, want 2s: a pause within the ceiling of a resume is a relapse", p.wait)
	}
}
