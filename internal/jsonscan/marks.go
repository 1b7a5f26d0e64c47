package jsonscan

import (
	"encoding/binary"
	"math/bits"
)

// Marks: a first pass over a record classifies its bytes, 64 at a time,
// into three bit sets per 64-byte block (bit k of a block's word is byte
// k of the block):
//
//	quote:   a '"';
//	special: a backslash or a control byte (< 0x20);
//	stop:    a special byte or a byte >= 0x80 (not plain ASCII).
//
// With them a string's end is found without reading its bytes: in the 64
// bits from the byte after the opening quote on (two neighbouring words
// shifted together), the first quote bit is the closing quote if no stop
// bit comes before it (then the string is plain ASCII: no escape, control
// byte nor byte >= 0x80, the usual case, see PlainLen); anything else
// (an escape, a control byte, a byte >= 0x80, a string of 64 bytes or
// more) takes strMarked or the byte-by-byte scan from the opening quote.
// The marks end with one block of zero words, so that the window of the
// last block can be read like any other. The pass runs with AVX-512 or
// AVX2 where the CPU has them (marks_amd64.s) and in portable Go (SWAR,
// eight bytes a word) elsewhere; all give the same bits, which
// TestClassifyAgrees checks on every run.

// markStride is the number of words per block.
const markStride = 3

// MarkBuf holds the marks of up to 4 KiB of JSON (most CloudTrail records
// are shorter): a buffer for Mark that can live on the caller's stack.
type MarkBuf [markStride * (4096/64 + 2)]uint64

// markWords returns how many words Mark needs for n bytes of JSON: the
// blocks' words and two blocks of zero words after them, so that a window
// (two neighbouring blocks) can be read from any place up to n.
func markWords(n int) int { return markStride * ((n+63)/64 + 2) }

// Mark classifies data and returns its marks, for StrAt, PlainLen and
// SkipAt: in buf when it is large enough (see MarkBuf), else in a new
// slice.
func Mark(data []byte, buf []uint64) []uint64 {
	n := markWords(len(data))
	if len(buf) < n {
		buf = make([]uint64, n)
	}
	buf = buf[:n]
	full := len(data) &^ 63
	classify(data[:full], buf)
	end := full / 64 * markStride
	if full < len(data) {
		// The last, partial block: classified from a copy padded with
		// zero bytes, which are control bytes (special bits past the end,
		// where no string can reach: its closing quote comes first).
		var tail [64]byte
		copy(tail[:], data[full:])
		classify(tail[:], buf[end:])
		end += markStride
	}
	clear(buf[end:])
	return buf
}

// The ways classify can run: portable Go, AVX2, AVX-512.
const (
	classGo = iota
	classAVX2
	classAVX512
)

var classNames = [...]string{classGo: "go", classAVX2: "avx2", classAVX512: "avx512"}

// best returns the fastest way this CPU can classify.
func best() int {
	switch {
	case hasAVX512:
		return classAVX512
	case hasAVX2:
		return classAVX2
	}
	return classGo
}

// Classifiers names the ways Mark can classify on this machine: "go"
// (portable) always, "avx2" and "avx512" where the CPU has them.
func Classifiers() []string {
	names := []string{"go"}
	if hasAVX2 {
		names = append(names, "avx2")
	}
	if hasAVX512 {
		names = append(names, "avx512")
	}
	return names
}

// UseClassifier makes Mark classify the named way (one of Classifiers)
// and returns the name of the way it used before. It is for tests, which
// check that every way gives the same results; it is not safe while
// another goroutine marks.
func UseClassifier(name string) (prev string) {
	prev = classNames[use]
	switch name {
	case "go":
		use = classGo
	case "avx2":
		if !hasAVX2 {
			panic("jsonscan: no AVX2 on this CPU")
		}
		use = classAVX2
	case "avx512":
		if !hasAVX512 {
			panic("jsonscan: no AVX-512 on this CPU")
		}
		use = classAVX512
	default:
		panic("jsonscan: no classifier " + name)
	}
	return prev
}

// classify fills out (markStride words per block) for src, whose length is
// a multiple of 64. (Direct calls, not a function value, so that buffers
// on the caller's stack stay there.)
func classify(src []byte, out []uint64) {
	switch use {
	case classAVX512:
		classifyAVX512(src, out)
	case classAVX2:
		classifyAVX2(src, out)
	default:
		classifyGo(src, out)
	}
}

const lo7 = 0x7f7f7f7f7f7f7f7f

// classifyGo is the portable classify: eight bytes at a time, each test
// exact per byte (no borrow crosses a byte), the bytes' flags gathered
// into eight bits.
func classifyGo(src []byte, out []uint64) {
	for b := 0; b+64 <= len(src); b += 64 {
		var quote, special, stop uint64
		for k := 0; k < 64; k += 8 {
			x := binary.LittleEndian.Uint64(src[b+k:])
			q := x ^ (lsb * '"')
			bs := x ^ (lsb * '\\')
			qt := ^(((q & lo7) + lo7) | q | lo7)      // byte == '"'
			sp := ^(((bs & lo7) + lo7) | bs | lo7)    // byte == '\\'
			sp |= ^(((x & lo7) + lsb*0x60) | x | lo7) // byte < 0x20
			quote |= gather(qt) << k
			special |= gather(sp) << k
			stop |= gather(x&msb|sp) << k
		}
		o := out[b/64*markStride:]
		o[0], o[1], o[2] = quote, special, stop
	}
}

// gather packs the top bits of x's eight bytes (the only bits set) into
// the low eight bits, byte k's to bit k.
func gather(x uint64) uint64 {
	return (x >> 7) * 0x0102040810204080 >> 56
}

// PlainLen returns the length of the contents of the string whose
// contents start at data[j] (right after its opening quote), if the string
// is shorter than 64 bytes and holds only plain ASCII (no escape, control
// byte nor byte >= 0x80): the usual case, which it decides from marks
// (Mark's, for data; j <= len(data)) without reading the string: the
// first quote must come before the first stop. Else it returns -1, and
// the caller takes StrAt. Small enough to inline.
func PlainLen(marks []uint64, j uint) int {
	b := (*[2 * markStride]uint64)(marks[j>>6*markStride:])
	sh := j & 63
	q := b[0]>>sh | b[markStride]<<(64-sh)
	t := q | b[2]>>sh | b[markStride+2]<<(64-sh)
	if q&(t&-t) == 0 {
		// No quote in the window, or a stop byte before the first
		// (t&-t: the lowest quote or stop bit).
		return -1
	}
	return bits.TrailingZeros64(q)
}

// strMarked is StrAt on marked data for a string whose contents start at
// i and which PlainLen does not take: it returns the end of the contents
// (the closing quote's place) and whether they hold a byte >= 0x80 (the
// stop bits before the first quote or special byte), or
// ok=false when the first quote or special byte is special (an escape, a
// control byte) or the marks end first: the caller then scans byte by
// byte.
func strMarked(data []byte, marks []uint64, i int) (end int, high, ok bool) {
	w := i >> 6 * markStride
	sh := uint(i & 63)
	if w+2 >= len(marks) {
		return 0, false, false
	}
	q, sp, h := marks[w]>>sh, marks[w+1]>>sh, marks[w+2]>>sh
	base := i
	var hi uint64
	for {
		if stop := q | sp; stop != 0 {
			n := bits.TrailingZeros64(stop)
			if sp&(1<<uint(n)) != 0 {
				return 0, false, false
			}
			end = base + n
			if end >= len(data) {
				return 0, false, false
			}
			return end, hi != 0 || h&(1<<uint(n)-1) != 0, true
		}
		hi |= h
		w += markStride
		if w+2 >= len(marks) {
			return 0, false, false
		}
		base = w / markStride << 6
		q, sp, h = marks[w], marks[w+1], marks[w+2]
	}
}
