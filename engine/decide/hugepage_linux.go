package decide

import (
	"syscall"
	"unsafe"
)

// adviseHugePages asks Linux to back the eventID window's table with huge
// pages. Its lookups land anywhere in megabytes of memory, one per record,
// so with 4 KiB pages nearly every one also misses the TLB. Only advice:
// where transparent huge pages are off, or none is free, nothing changes.
func adviseHugePages(slots [][16]byte) {
	if len(slots) == 0 {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&slots[0])), len(slots)*16)
	// Whole huge pages only: the advice applies to the 2 MiB ranges
	// inside the slice.
	const huge = 2 << 20
	start := (uintptr(unsafe.Pointer(&b[0])) + huge - 1) &^ (huge - 1)
	end := (uintptr(unsafe.Pointer(&b[0])) + uintptr(len(b))) &^ (huge - 1)
	if end <= start {
		return
	}
	off := start - uintptr(unsafe.Pointer(&b[0]))
	_ = syscall.Madvise(b[off:off+(end-start)], syscall.MADV_HUGEPAGE)
}
