// Command maxrss runs a command and reports its peak resident memory.
//
// A test that measures a child's memory cannot read the child's own
// getrusage figure: Linux carries the highest RSS of the process that
// started it across exec (Go starts children with vfork), so a large test
// process would inflate it. This small program starts the command instead,
// so what it reports is the command's own peak (plus at most this
// program's few megabytes).
//
// Usage: maxrss FILE COMMAND [ARG...] — runs COMMAND with this process's
// standard streams, writes its peak RSS in bytes to FILE, and exits with
// its exit code.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: maxrss FILE COMMAND [ARG...]")
		os.Exit(2)
	}
	cmd := exec.Command(os.Args[2], os.Args[3:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	if cmd.ProcessState == nil {
		fmt.Fprintln(os.Stderr, "maxrss:", err)
		os.Exit(2)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if werr := os.WriteFile(os.Args[1], fmt.Appendf(nil, "%d\n", ru.Maxrss*1024), 0o644); werr != nil {
		fmt.Fprintln(os.Stderr, "maxrss:", werr)
		os.Exit(2)
	}
	os.Exit(cmd.ProcessState.ExitCode())
}
