//go:build !linux

package idwindow

// keyMemory returns n zeroed keys from the heap (see hugepage_linux.go).
func keyMemory(n int) (keys [][16]byte, free func()) { return make([][16]byte, n), func() {} }

func freeWithWindow(*Window, func()) {}
