//go:build !purego

package jsonscan

import "golang.org/x/sys/cpu"

// hasAVX2 and hasAVX512 report whether the CPU (and OS) can run
// classifyAVX2 and classifyAVX512; use is the classifier Mark uses (tests
// switch it to run the others).
var (
	hasAVX2   = cpu.X86.HasAVX2
	hasAVX512 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW
	use       = best()
)

// classifyAVX2 is classify with AVX2 (marks_amd64.s): 64 bytes a round,
// in two 32-byte halves.
//
//go:noescape
func classifyAVX2(src []byte, out []uint64)

// classifyAVX512 is classify with AVX-512 (F and BW, marks_amd64.s): 64
// bytes a round, one compare into a mask register per class.
//
//go:noescape
func classifyAVX512(src []byte, out []uint64)
