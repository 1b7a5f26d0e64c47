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
// first, unaligned megabytes. With withBallast, and the advice taken, it
// also allocates the ballast while the block is still live, so that the
// ballast comes from fresh memory, which needs no zeroing (freed memory
// would be cleared, every page of it touched). err is madvise's error
// (EINVAL where the kernel has no transparent huge pages).
func advise(n int, withBallast bool) (lo, hi uintptr, ballast []byte, err error) {
	b := make([]byte, n)
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	start, end := p, p+uintptr(n)
	if maps, rerr := os.ReadFile("/proc/self/maps"); rerr == nil {
		if s, e, ok := mappingOf(maps, p); ok && s <= start && e >= end {
			start, end = s, e
		}
	}
	lo = (start + hugePage - 1) &^ (hugePage - 1)
	hi = end &^ (hugePage - 1)
	if lo < hi {
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, lo, hi-lo, syscall.MADV_HUGEPAGE); e != 0 {
			err = e
		}
	}
	if withBallast && err == nil {
		ballast = make([]byte, Ballast)
	}
	runtime.KeepAlive(b)
	// Free the block now: until a collection finds it unreachable, new
	// spans come from fresh memory above it, mapped without the advice.
	runtime.GC()
	return lo, hi, ballast, err
}

// mappingOf returns the bounds of the line of /proc/self/maps whose range
// holds p ("start-end perms ...", hexadecimal).
func mappingOf(maps []byte, p uintptr) (start, end uintptr, ok bool) {
	for len(maps) > 0 {
		line := maps
		maps = nil
		for i, c := range line {
			if c == '\n' {
				line, maps = line[:i], line[i+1:]
				break
			}
		}
		s, rest, ok1 := hex(line)
		if !ok1 || len(rest) == 0 || rest[0] != '-' {
			continue
		}
		e, _, ok2 := hex(rest[1:])
		if ok2 && s <= p && p < e {
			return s, e, true
		}
	}
	return 0, 0, false
}

// hex reads a hexadecimal number at the start of b.
func hex(b []byte) (v uintptr, rest []byte, ok bool) {
	i := 0
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | uintptr(c-'0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | uintptr(c-'a'+10)
		default:
			return v, b[i:], i > 0
		}
	}
	return v, nil, i > 0
}
