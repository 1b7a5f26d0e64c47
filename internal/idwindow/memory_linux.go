package idwindow

import (
	"runtime"
	"syscall"
	"unsafe"
)

// keyMemory returns n zeroed keys in a mapping of their own, outside the
// Go heap, which Linux is asked to back with huge pages, and a function
// that unmaps it. The eventID window's table and ring are 12 MiB that
// live as long as the process; in the Go heap they counted as live data,
// so the collector let the heap grow 12 MiB further before each cycle, and
// every page the heap grows into costs a page fault (tens of microseconds
// in some virtual machines; about as much as the record's whole
// evaluation per 4 KiB). Outside it they do not move the collector's goal,
// and their lookups, which land anywhere in megabytes, mostly hit one of a
// few huge pages' TLB entries. Where the mapping fails, the keys come from
// the heap.
func keyMemory(n int) (keys [][16]byte, free func()) {
	const huge = 2 << 20
	size := n * 16
	if size < huge {
		return make([][16]byte, n), func() {}
	}
	// Whole huge pages: map one more to align the start.
	mapped := (size+huge-1)/huge*huge + huge
	mem, err := syscall.Mmap(-1, 0, mapped, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return make([][16]byte, n), func() {}
	}
	base := uintptr(unsafe.Pointer(&mem[0]))
	off := int((base+huge-1)&^(huge-1) - base)
	body := mem[off : off+(size+huge-1)/huge*huge]
	_ = syscall.Madvise(body, syscall.MADV_HUGEPAGE) // advice only: where THP is off, 4 KiB pages
	keys = unsafe.Slice((*[16]byte)(unsafe.Pointer(&body[0])), n)
	return keys, func() { _ = syscall.Munmap(mem) }
}

// freeWithWindow unmaps a window's key memory once the window is
// unreachable.
func freeWithWindow(w *Window, free func()) {
	runtime.AddCleanup(w, func(f func()) { f() }, free)
}
