//go:build !linux

package hugeheap

import "errors"

// available reports false: madvise(MADV_HUGEPAGE) is Linux's.
func available() bool { return false }

// advise does nothing where there is no madvise(MADV_HUGEPAGE).
func advise(n int, withBallast bool) (lo, hi uintptr, ballast []byte, err error) {
	return 0, 0, nil, errors.New("hugeheap: transparent huge pages are a Linux feature")
}
