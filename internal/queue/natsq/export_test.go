package natsq

import "slices"

// KillConn closes the store's NATS connection without ending its leases,
// as a crashed process would.
func (s *Store) KillConn() { s.nc.Close() }

// PartitionOf exposes the partition hash to tests.
func PartitionOf(route, key string, n int) int { return partitionOf(route, key, n) }

// SetHistoryScanMax sets the messages one listing reads, for the test's
// duration.
func SetHistoryScanMax(n int) (restore func()) {
	old := historyScanMax
	historyScanMax = n
	return func() { historyScanMax = old }
}

// Owned lists the partitions the store owns and reads.
func (s *Store) Owned() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for n, p := range s.owned {
		if p.mode == modeNone && !p.stopped {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// PauseClaims stops or restarts the store's membership and claim
// refreshes, as a replica stalled or cut off from NATS would.
func (s *Store) PauseClaims(paused bool) { s.paused.Store(paused) }

// Resync makes the store read every partition it owns again, as after a
// reconnect.
func (s *Store) Resync() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.owned {
		s.signalLocked(p, modeResync)
	}
}

// Held counts the messages the store holds over the partitions it owns,
// and of those the ones whose body it keeps in memory.
func (s *Store) Held() (held, bodies int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.owned {
		held += p.held
		bodies += p.bodies
	}
	return held, bodies
}

// KeepBodies is how many messages of a conversation keep their body, at
// least.
const KeepBodies = keepBodies

// FailReads makes reading held messages back from the stream fail with
// err, or work again (nil).
func (s *Store) FailReads(err error) {
	if err == nil {
		s.readFault.Store(nil)
		return
	}
	s.readFault.Store(&err)
}
