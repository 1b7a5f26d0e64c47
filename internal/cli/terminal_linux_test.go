package cli

import (
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pipeDrained waits until the process has read everything written to w.
func pipeDrained(t *testing.T, w *os.File) {
	t.Helper()
	var none syncBuffer
	waitFor(t, &none, "trailwatch to read its standard input", func() bool {
		n, err := unix.IoctlGetInt(int(w.Fd()), unix.TIOCINQ) // FIONREAD: bytes not yet read
		return err == nil && n == 0
	})
}

// TestInterruptedStdinRead is issue 15's item 8: Ctrl-C while replay and
// search wait for standard input stops them with what they have and exit
// 130, as their help says.
func TestInterruptedStdinRead(t *testing.T) {
	for _, args := range [][]string{
		{"replay", "--rules", "builtin:aws", "-"},
		{"search", "--event-name", "ConsoleLogin", "--output", "jsonl", "-"},
	} {
		t.Run(args[0], func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			cmd := proc{}.command(args...)
			var out, errs syncBuffer
			cmd.Stdin, cmd.Stdout, cmd.Stderr = r, &out, &errs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			r.Close()
			t.Cleanup(func() { cmd.Process.Kill() })
			// Once the third line is read, the first was handed on: the
			// reader takes a line only after the one before it.
			for _, line := range []string{rootLoginLine("int-1"), noiseLine("int-2"), noiseLine("int-3")} {
				io.WriteString(w, line)
				pipeDrained(t, w)
			}
			// Standard input stays open: trailwatch is waiting for more.
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			done := make(chan int, 1)
			go func() { done <- exitOf(t, cmd) }()
			select {
			case code := <-done:
				if code != 130 {
					t.Errorf("exit %d, want 130\n%s", code, errs.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("Ctrl-C did not stop %s reading standard input:\n%s", args[0], errs.String())
			}
			if !strings.Contains(out.String(), "int-1") {
				t.Errorf("the partial result lacks the record read before Ctrl-C:\nstdout: %s\nstderr: %s", out.String(), errs.String())
			}
		})
	}
}
