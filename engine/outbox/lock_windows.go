//go:build windows

package outbox

import (
	"os"

	"golang.org/x/sys/windows"
)

// lockShared takes a shared, non-blocking lock on the byte range bbolt
// locks on Windows (offset -1, one byte; etcd-io/bbolt#121): it fails
// while another process (trailwatch run, through bbolt) holds the file
// exclusively. The lock goes with f's close.
func lockShared(f *os.File) error {
	const m1 = 1<<32 - 1 // -1 in a uint32
	ol := windows.Overlapped{Offset: m1, OffsetHigh: m1}
	return windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ol)
}
