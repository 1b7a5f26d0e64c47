package hugeheap

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// childEnv makes TestMain report what the package's init did, instead of
// running the tests: TestInit starts the test binary again with
// os.Args[1] set to a command's name.
const childEnv = "HUGEHEAP_TEST_REPORT"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		report()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// report prints what init left: the ballast's size and how many of its
// pages are resident, whether an 8 MiB block allocated now lies in
// advised memory, how many collections have run, the GC percentage in
// force (GOGC's), how many pages of the huge page holding the byte below
// the ballast are resident, and whether the advised range is the heap's
// mapping from its first pages (see coverage).
func report() {
	var stats runtime.MemStats
	runtime.ReadMemStats(&stats) // before the 8 MiB block below, which may start a cycle
	gogc := debug.SetGCPercent(-1)
	debug.SetGCPercent(gogc)
	resident, head := 0, 0
	if len(ballast) > 0 {
		head = residentPages((uintptr(unsafe.Pointer(&ballast[0]))-1)&^(hugePage-1), hugePage)
		pages := (len(ballast) + os.Getpagesize() - 1) / os.Getpagesize()
		vec := make([]byte, pages)
		if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, uintptr(unsafe.Pointer(&ballast[0])), uintptr(len(ballast)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			fmt.Printf("mincore: %v\n", e)
			return
		}
		for _, v := range vec {
			resident += int(v & 1)
		}
	}
	covers := coverage()
	b := make([]byte, 8<<20)
	advised, err := hugeAdvisedAt(uintptr(unsafe.Pointer(&b[len(b)/2])))
	if err != nil {
		fmt.Printf("smaps: %v\n", err)
		return
	}
	runtime.KeepAlive(b)
	fmt.Printf("ballast=%d advised=%v gc=%d gogc=%d %s\n%d\n%d\n", len(ballast), advised, stats.NumGC, gogc, covers, resident, head)
}

// coverage describes the range init advised: "covers=none" when it
// advised nothing, "covers=heap" when the range is one mapping of its own
// in /proc/self/maps (madvise split it off, so it lies within the heap's
// mapping and ends where the advice does) with the hg flag, holding
// os.Args' backing array (allocated by the runtime before any package
// initialised: the heap's first pages), and otherwise what is wrong.
func coverage() string {
	if advisedHi == 0 {
		return "covers=none"
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return "covers=" + err.Error()
	}
	s, e, ok := mappingOf(maps, advisedLo)
	if !ok || s != advisedLo || e != advisedHi {
		return fmt.Sprintf("covers=mapping[%#x,%#x),advised[%#x,%#x)", s, e, advisedLo, advisedHi)
	}
	if first := uintptr(unsafe.Pointer(unsafe.SliceData(os.Args))); first < advisedLo || first >= advisedHi {
		return fmt.Sprintf("covers=not-os.Args@%#x", first)
	}
	if hg, err := hugeAdvisedAt(advisedLo); err != nil || !hg {
		return fmt.Sprintf("covers=no-hg(%v)", err)
	}
	return "covers=heap"
}

// residentPages counts the resident pages of [p, p+n) (mincore).
func residentPages(p, n uintptr) int {
	vec := make([]byte, (n+uintptr(os.Getpagesize())-1)/uintptr(os.Getpagesize()))
	if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, p, n, uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		return -1
	}
	count := 0
	for _, v := range vec {
		count += int(v & 1)
	}
	return count
}

// runInit runs the test binary as `trailwatch command` with env added and
// returns the lines report printed.
func runInit(t *testing.T, command string, env []string) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Args = []string{"trailwatch", command}
	cmd.Env = append(append(os.Environ(), childEnv+"=1", "GOGC=", "GOMEMLIMIT=", EnvVar+"="), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", command, env, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 {
		t.Fatalf("%s %v: report printed %q, want three lines", command, env, out)
	}
	return lines
}

// TestInit runs the package's init as trailwatch would, with os.Args[1]
// the command: a batch command's new heap lies in advised memory and it
// keeps an untouched ballast (none when GOGC is set); `run`, and any
// command with TRAILWATCH_HUGEPAGES=off, get neither. The advice costs
// one collection, not two (the block's size must not start one of its
// own), and leaves GOGC's setting (or the default) in force. At most the
// huge pages at the ballast's two ends may be resident (a huge page the
// heap faults in next to it covers part of it); a ballast cleared on
// allocation would be resident throughout.
func TestInit(t *testing.T) {
	if !available() {
		t.Skip("transparent huge pages are set to never here (or disabled for this process): init does nothing")
	}
	for _, c := range []struct {
		command string
		env     []string
		want    string
	}{
		{"replay", nil, fmt.Sprintf("ballast=%d advised=true gc=1 gogc=100 covers=heap", Ballast)},
		{"validate", nil, fmt.Sprintf("ballast=%d advised=true gc=1 gogc=100 covers=heap", Ballast)},
		{"search", []string{"GOGC=150"}, "ballast=0 advised=true gc=1 gogc=150 covers=heap"},
		{"test", []string{"GOGC=off"}, "ballast=0 advised=true gc=1 gogc=-1 covers=heap"},
		{"replay", []string{"GOMEMLIMIT=1GiB"}, "ballast=0 advised=true gc=1 gogc=100 covers=heap"},
		{"run", nil, "ballast=0 advised=false gc=0 gogc=100 covers=none"},
		{"replay", []string{EnvVar + "=off"}, "ballast=0 advised=false gc=0 gogc=100 covers=none"},
	} {
		lines := runInit(t, c.command, c.env)
		if lines[0] != c.want {
			t.Errorf("trailwatch %s with %v: init left %q, want %q", c.command, c.env, lines[0], c.want)
		}
		if n, err := strconv.Atoi(lines[1]); err != nil || n > 2*hugePage/os.Getpagesize() {
			t.Errorf("trailwatch %s with %v: %s of the ballast's pages are resident, want at most two huge pages' worth", c.command, c.env, lines[1])
		}
	}
}

// TestInitCollapsesTheHugePageTheHeapBeganIn checks that the huge page
// where the heap stood when the package initialised (mapped and partly
// touched before its advice: the one holding the byte just below the
// ballast, which is allocated first, at the heap's top) has become one
// huge page: then all of its 4 KiB pages count as resident, though its
// free pages and the ballast's are never touched. Without MADV_COLLAPSE
// it would stay a patchwork of 4 KiB pages, each faulting on first use.
func TestInitCollapsesTheHugePageTheHeapBeganIn(t *testing.T) {
	if !available() {
		t.Skip("transparent huge pages are set to never here (or disabled for this process): init does nothing")
	}
	if err := collapseWorks(); err != nil {
		t.Skipf("madvise(MADV_COLLAPSE) on a test mapping: %v (Linux 6.1 or later collapses)", err)
	}
	lines := runInit(t, "replay", nil)
	if want := strconv.Itoa(hugePage / os.Getpagesize()); lines[2] != want {
		t.Errorf("%s of the pages of the huge page below the ballast are resident, want %s: it was not collapsed", lines[2], want)
	}
}

// collapseWorks tries MADV_COLLAPSE on a huge page of a mapping of its own
// with one page touched.
func collapseWorks() error {
	m, err := syscall.Mmap(-1, 0, 2*hugePage, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return err
	}
	defer syscall.Munmap(m)
	p := (uintptr(unsafe.Pointer(&m[0])) + hugePage - 1) &^ (hugePage - 1)
	m[p-uintptr(unsafe.Pointer(&m[0]))] = 1
	if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, p, hugePage, madvCollapse); e != 0 {
		return e
	}
	return nil
}

// TestHeapSpansComeFromAdvisedPages checks the whole point: after advise,
// the heap's next allocations sit in a mapping whose VmFlags carry "hg"
// (MADV_HUGEPAGE), including one bigger than any free space the heap had
// before (so it must reuse the dropped block, which only a collection
// frees).
func TestHeapSpansComeFromAdvisedPages(t *testing.T) {
	lo, hi, _, err := advise(Size, false)
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
	advised, err := hugeAdvisedAt(p)
	if err != nil {
		t.Fatal(err)
	}
	return advised
}

func hugeAdvisedAt(p uintptr) (bool, error) {
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return false, err
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
					return true, nil
				}
			}
			return false, nil
		}
	}
	return false, nil
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

// TestHeapMappingStartsAtTheHeapsFirstChunk: the heap does not begin at a
// chunk's start (Go 1.26 starts it at a random page of its first chunk,
// without -race), so the few megabytes before advise may cross into the
// next chunk: the advised range must still start at the chunk holding the
// heap's first pages (first), not at the one below fresh. A first that is
// not in the heap a little below fresh (an empty os.Args points at the
// runtime's zero-size base) is ignored.
func TestHeapMappingStartsAtTheHeapsFirstChunk(t *testing.T) {
	const base = uintptr(0x3768f8000000) // a chunk boundary
	for _, tt := range []struct {
		name              string
		first, fresh, top uintptr
		wantLo, wantHi    uintptr
	}{
		{"heap within one chunk", base + 0x1000, base + 0x200000, base + 0x200000 + Size, base, base + 0x200000 + Size + 0x200000},
		{"heap crossing into the next chunk", base + 0x3f0000, base + heapChunk + 0x180000, base + heapChunk + 0x180000 + Size, base, base + 2*heapChunk + Size},
		{"fresh at a chunk's start", base + 0x3f0000, base + heapChunk, base + heapChunk + Size, base, base + heapChunk + Size},
		{"first not in the heap", 0x5a0000, base + heapChunk + 0x180000, base + heapChunk + 0x180000 + Size, base + heapChunk, base + 2*heapChunk + Size},
		{"no first", 0, base + heapChunk + 0x180000, base + heapChunk + 0x180000 + Size, base + heapChunk, base + 2*heapChunk + Size},
	} {
		lo, hi := heapMapping(tt.first, tt.fresh, tt.top)
		if lo != tt.wantLo || hi != tt.wantHi {
			t.Errorf("%s: heapMapping(%#x, %#x, %#x) = [%#x, %#x), want [%#x, %#x)", tt.name, tt.first, tt.fresh, tt.top, lo, hi, tt.wantLo, tt.wantHi)
		}
	}
}
