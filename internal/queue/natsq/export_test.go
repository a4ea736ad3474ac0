package natsq

// KillConn closes the store's NATS connection without ending its leases,
// as a crashed process would.
func (s *Store) KillConn() { s.nc.Close() }

// PartitionOf exposes the partition hash to tests.
func PartitionOf(route, key string, n int) int { return partitionOf(route, key, n) }
