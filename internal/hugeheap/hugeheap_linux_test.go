package hugeheap

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// TestHeapSpansComeFromAdvisedPages checks the whole point: after advise,
// the heap's next allocations sit in a mapping whose VmFlags carry "hg"
// (MADV_HUGEPAGE), including one bigger than any free space the heap had
// before (so it must reuse the dropped block, which only a collection
// frees).
func TestHeapSpansComeFromAdvisedPages(t *testing.T) {
	lo, hi, err := advise(Size)
	if errors.Is(err, syscall.EINVAL) {
		t.Skipf("madvise(MADV_HUGEPAGE): %v: this kernel has no transparent huge pages", err)
	}
	if err != nil {
		t.Fatalf("advise: %v", err)
	}
	if hi-lo < Size/2 {
		t.Fatalf("advised only [%#x, %#x): %d MiB of %d", lo, hi, (hi-lo)>>20, Size>>20)
	}
	if !hugeAdvised(t, lo) {
		t.Fatalf("the advised range at %#x has no hg flag in /proc/self/smaps", lo)
	}
	big := make([]byte, 8<<20) // larger than the heap's free space before advise
	small := make([]byte, 64<<10)
	for name, b := range map[string][]byte{"an 8 MiB block": big, "a 64 KiB block": small} {
		mid := uintptr(unsafe.Pointer(&b[len(b)/2]))
		if !hugeAdvised(t, mid) {
			t.Errorf("%s allocated after advise lies at %#x, outside the advised pages [%#x, %#x)", name, mid, lo, hi)
		}
	}
	runtime.KeepAlive(big)
	runtime.KeepAlive(small)
}

// hugeAdvised reports whether the mapping holding p has the hg VmFlag.
func hugeAdvised(t *testing.T, p uintptr) bool {
	t.Helper()
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	in := false
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	for sc.Scan() {
		line := sc.Text()
		if s, e, ok := mappingOf([]byte(line), p); ok {
			in = s <= p && p < e
			continue
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			for _, f := range strings.Fields(line[len("VmFlags:"):]) {
				if f == "hg" {
					return true
				}
			}
			return false
		}
	}
	return false
}

func TestMappingOf(t *testing.T) {
	maps := []byte("00400000-00540000 r-xp 00000000 fe:00 1 /bin/x\n" +
		"221553c00000-221555c00000 rw-p 00000000 00:00 0 \n" +
		"VmFlags: rd wr\n" +
		"7ffe419b0000-7ffe419d1000 rw-p 00000000 00:00 0                          [stack]")
	for _, c := range []struct {
		p          uintptr
		start, end uintptr
		ok         bool
	}{
		{0x221553c00000, 0x221553c00000, 0x221555c00000, true},
		{0x221555bfffff, 0x221553c00000, 0x221555c00000, true},
		{0x221555c00000, 0, 0, false},
		{0x7ffe419b0010, 0x7ffe419b0000, 0x7ffe419d1000, true},
		{0x00400000, 0x00400000, 0x00540000, true},
	} {
		s, e, ok := mappingOf(maps, c.p)
		if s != c.start || e != c.end || ok != c.ok {
			t.Errorf("mappingOf(%#x) = %#x, %#x, %v; want %#x, %#x, %v", c.p, s, e, ok, c.start, c.end, c.ok)
		}
	}
}
