//go:build !purego

package jsonscan

import "golang.org/x/sys/cpu"

// hasAVX2 reports whether the CPU (and OS) can run classifyAVX2; useAVX2
// is whether Marked does (tests switch it off to run the portable Go).
var (
	hasAVX2 = cpu.X86.HasAVX2
	useAVX2 = hasAVX2
)

// classifyAVX2 is classify with AVX2 (marks_amd64.s): 64 bytes a round.
//
//go:noescape
func classifyAVX2(src []byte, out []uint64)
