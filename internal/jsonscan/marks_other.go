//go:build !amd64 || purego

package jsonscan

// Without assembly for this platform, Mark classifies in portable Go.
const (
	hasAVX2   = false
	hasAVX512 = false
)

var use = best()

func classifyAVX2(src []byte, out []uint64)   { classifyGo(src, out) }
func classifyAVX512(src []byte, out []uint64) { classifyGo(src, out) }
