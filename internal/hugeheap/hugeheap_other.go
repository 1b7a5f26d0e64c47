//go:build !linux

package hugeheap

import "errors"

// advise does nothing where there is no madvise(MADV_HUGEPAGE).
func advise(n int) (lo, hi uintptr, err error) {
	return 0, 0, errors.New("hugeheap: transparent huge pages are a Linux feature")
}
