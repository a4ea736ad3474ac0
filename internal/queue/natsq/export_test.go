package natsq

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
