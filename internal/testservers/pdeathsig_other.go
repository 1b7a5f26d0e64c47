//go:build !linux

package testservers

import "os/exec"

// dieWithTest does nothing where the kernel cannot tie a child's life to
// its parent's; the test's cleanup still stops the server.
func dieWithTest(*exec.Cmd) {}
