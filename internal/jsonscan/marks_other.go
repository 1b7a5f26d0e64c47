//go:build !amd64 || purego

package jsonscan

// Without AVX2 assembly for this platform, Marked classifies in portable Go.
const hasAVX2 = false

var useAVX2 = false

func classifyAVX2(src []byte, out []uint64) { classifyGo(src, out) }
