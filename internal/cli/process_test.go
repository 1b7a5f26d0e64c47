package cli

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"testing"
)

// proc is one run of trailwatch as a real process: this test binary
// through TestMain and Exec, as cmd/trailwatch runs.
type proc struct {
	Dir   string    // working directory ("" = the test's)
	Env   []string  // added to the environment
	Stdin io.Reader // nil: empty
}

// run runs trailwatch with args and returns its exit code, standard
// output and standard error.
func (p proc) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := p.command(args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	}
	t.Fatalf("run trailwatch %v: %v", args, err)
	return 0, "", ""
}

// command returns the process, not started.
func (p proc) command(args ...string) *exec.Cmd {
	self, _ := os.Executable()
	cmd := exec.Command(self, append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Dir = p.Dir
	cmd.Env = append(append(os.Environ(), "TRAILWATCH_TEST_MAIN=1"), p.Env...)
	cmd.Stdin = p.Stdin
	return cmd
}
