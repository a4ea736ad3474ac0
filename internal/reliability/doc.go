// Package reliability holds crash, disk and soak tests of a whole relayd.
//
// The tests build cmd/relayd, run it as a child process against the fake
// Operator API served from the test process, drive signed webhooks at it,
// and check from the fake's records that everything relayd answered 202
// for was delivered (or dead-lettered with a reason), whatever happened to
// the process or its disk in between:
//
//   - TestCrashLoop SIGKILLs the daemon five times under load, against a
//     slow and an instant API, and bounds the turns each kill sends again.
//   - TestDiskFull puts the bbolt file on a small tmpfs, fills it, and
//     frees space again (skipped where tmpfs cannot be mounted).
//   - TestSoak runs a flapping Operator for a while and checks that memory
//     and goroutines stay flat. It is skipped with -short; RELAYD_SOAK=10m
//     runs it for ten minutes instead of the default 30s.
//
// The package has no code outside its tests.
package reliability
