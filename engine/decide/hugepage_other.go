//go:build !linux

package decide

// adviseHugePages is Linux's advice only (see hugepage_linux.go).
func adviseHugePages([][16]byte) {}
