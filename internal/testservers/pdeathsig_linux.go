package testservers

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes the kernel kill the server when the test process ends,
// however it ends: a test binary that times out panics without running its
// cleanups, and its servers used to live on, each holding a port and CPU.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
