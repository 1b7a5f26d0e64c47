package hugeheap

import (
	"os"
	"runtime"
	"syscall"
	"unsafe"
)

const hugePage = 2 << 20

// available reports whether transparent huge pages can be had: not set to
// "never" system-wide, nor disabled for this process (prctl
// PR_SET_THP_DISABLE, inherited from the parent).
func available() bool {
	if disabled, _, e := syscall.Syscall(syscall.SYS_PRCTL, prGetTHPDisable, 0, 0); e == 0 && disabled != 0 {
		return false
	}
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	return err == nil && !contains(mode, "[never]")
}

// prGetTHPDisable is PR_GET_THP_DISABLE (linux/prctl.h).
const prGetTHPDisable = 42

func contains(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if string(b[i:i+len(s)]) == s {
			return true
		}
	}
	return false
}

// advise allocates n bytes of heap, advises MADV_HUGEPAGE the huge pages
// wholly inside the heap mapping that holds them, drops them and collects
// them, so that the heap's next spans come from advised pages. The advice
// covers the whole mapping [lo, hi), not only the block: the runtime
// reuses the lowest free pages first, those of the heap mapped before the
// block (package initialisation before this one's) and of the block's
// first, unaligned megabytes.
//
// With withBallast it first allocates the ballast, from fresh memory at
// the top of the heap, which needs no zeroing (freed memory would be
// cleared, every page of it touched); the block comes after it. The
// ballast so also holds the free rest of the huge page the heap had
// begun to fill with 4 KiB pages, which spans carved after the
// collection would otherwise fault in page by page. That page, and any
// other the heap had touched before the advice, is collapsed into a huge
// page (see collapse). Where the advice fails the ballast is dropped with
// the block.
//
// Collection is off while the two are allocated (setGCPercent(-1)), or
// the block's size would start a cycle of its own (the heap's first goal
// is 4 MiB) before the one that frees it: one collection instead of two.
// Each cycle hands every cached span back and touches fresh off-heap
// pages for the span sets of its sweep generation. The previous setting
// (GOGC's, or the default) is restored just before the collection, so
// that it runs as any forced one (with collection off the runtime takes
// the heap goal for unbounded and turns on huge pages for metadata it
// sizes for heaps over 1 GiB). err is madvise's error (EINVAL where the
// kernel has no transparent huge pages).
func advise(n int, withBallast bool) (lo, hi uintptr, ballast []byte, err error) {
	prev := setGCPercent(-1)
	if withBallast {
		ballast = make([]byte, Ballast)
	}
	b := make([]byte, n)
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	fresh := p
	if len(ballast) > 0 {
		fresh = uintptr(unsafe.Pointer(unsafe.SliceData(ballast)))
	}
	lo, hi = heapMapping(uintptr(unsafe.Pointer(unsafe.SliceData(os.Args))), fresh, p+uintptr(n))
	lo = heapBegunBelow(lo)
	if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, lo, hi-lo, syscall.MADV_HUGEPAGE); e != 0 && e != syscall.ENOMEM {
		err = e
	}
	if err != nil {
		ballast = nil
	} else {
		collapse(lo, fresh)
	}
	runtime.KeepAlive(b)
	setGCPercent(prev)
	// Free the block now: until a collection finds it unreachable, new
	// spans come from fresh memory above it, mapped without the advice.
	runtime.GC()
	return lo, hi, ballast, err
}

// collapse asks the kernel to turn into huge pages the huge pages from lo
// up to the one holding fresh that already have 4 KiB pages: the heap
// mapped before this package's advice, of which package initialisation
// and the runtime touched some pages and left the others (the rest of
// their spans, stacks) to fault in one by one later; the advice does not
// change pages already mapped. Huge pages with no page mapped yet are
// left alone (they fault in whole when touched). MADV_COLLAPSE (Linux
// 6.1) copies the pages into a new huge page; where it fails or is
// unknown nothing changes.
func collapse(lo, fresh uintptr) {
	var vec [hugePage / 4096]byte
	resident := vec[:hugePage/os.Getpagesize()]
	for h := lo; h <= fresh; h += hugePage {
		if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, h, hugePage, uintptr(unsafe.Pointer(&resident[0]))); e != 0 {
			continue
		}
		for _, r := range resident {
			if r&1 != 0 {
				syscall.Syscall(syscall.SYS_MADVISE, h, hugePage, madvCollapse)
				break
			}
		}
	}
}

// madvCollapse is MADV_COLLAPSE (linux/mman.h).
const madvCollapse = 25

// setGCPercent is runtime/debug.SetGCPercent without importing
// runtime/debug: that package imports fmt, strconv, strings and time, and
// Go initialises a package only after its imports, choosing among the
// ready ones by import path; this package would then initialise after
// the AWS SDK's (github.com/aws/... sorts first), whose schemas fill
// megabytes of heap before the advice. The runtime defines the function
// under this name (a push linkname), which the linker allows referring
// to; TestInit checks it reads and restores GOGC.
//
//go:linkname setGCPercent runtime/debug.setGCPercent
func setGCPercent(percent int32) int32

// heapMapping returns the part of the heap mapping from the 4 MiB chunk
// holding the heap's first pages to the end of the chunk holding the
// block's last byte, given first, an object allocated early (os.Args'
// backing array, made as package os initialises: in the heap's first
// pages), fresh, the first of the two objects advise allocates (the top
// of the heap before them), and top, the block's end. The runtime maps the
// heap in chunks of pallocChunkBytes (4 MiB), aligned, one after the
// other: they make one mapping, and with them the runtime and package
// initialisation's heap (well under a chunk). The heap does not begin at
// a chunk's start, though: Go 1.26 (without -race) starts it at a random
// page of its first chunk, so the few megabytes allocated before advise
// can cross into the next chunk, and the chunk below fresh is then not the
// heap's first; hence first. A first that is not a little below fresh
// (not in the heap: an empty os.Args is the runtime's zero-size base) is
// not used. Computing the range saves reading /proc/self/maps, the
// slowest step here; TestInit (coverage) checks it against the
// file. If a runtime mapped smaller chunks, the range could run into the
// arena's reserved, unmapped rest: madvise then advises the mapped part
// and reports ENOMEM, which advise ignores.
func heapMapping(first, fresh, top uintptr) (lo, hi uintptr) {
	lo = (fresh - 1) &^ (heapChunk - 1)
	if first != 0 && first < lo && lo-first < heapArena {
		lo = first &^ (heapChunk - 1)
	}
	return lo, (top + heapChunk - 1) &^ (heapChunk - 1)
}

// heapBegunBelow returns lo, the start of a chunk holding the heap's
// first objects, or the chunk below it when the heap began there: the
// runtime's own first allocations (before package os initialises) lie
// below os.Args', and the heap may have begun a few pages before the end
// of that chunk. That chunk is taken when its last huge page has resident
// pages (mincore) and it lies in the same arena as lo, whose reservation
// is mapped whole (the part below the heap without access, never
// resident), so the range never runs into another mapping.
func heapBegunBelow(lo uintptr) uintptr {
	if lo%heapArena == 0 {
		return lo
	}
	var vec [hugePage / 4096]byte
	resident := vec[:hugePage/os.Getpagesize()]
	if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, lo-hugePage, hugePage, uintptr(unsafe.Pointer(&resident[0]))); e != 0 {
		return lo
	}
	for _, r := range resident {
		if r&1 != 0 {
			return lo - heapChunk
		}
	}
	return lo
}

// heapChunk is the runtime's pallocChunkBytes.
const heapChunk = 4 << 20

// heapArena is the runtime's heapArenaBytes (linux/amd64, arm64): the
// heap before advise lies well within one arena's span below fresh.
const heapArena = 64 << 20
