//go:build unix

package outbox

import (
	"os"

	"golang.org/x/sys/unix"
)

// lockShared takes a shared, non-blocking advisory lock on f: it fails
// while another process (trailwatch run, through bbolt) holds the file
// exclusively. The lock goes with f's close.
func lockShared(f *os.File) error {
	return unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
}
