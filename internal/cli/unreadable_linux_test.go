package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nobody is the user the unreadable-input test runs trailwatch as when the
// tests run as root (root reads a file of mode 0000).
const nobody = 65534

// unprivileged returns a command running trailwatch (this test binary,
// through TestMain) with args: as the user nobody, from a copy of the
// binary nobody may run, when the test runs as root; as the test's own user
// otherwise.
func unprivileged(t *testing.T, ctx context.Context, args ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		dir := worldDir(t)
		bin := filepath.Join(dir, "trailwatch")
		src, err := os.Open(self)
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		src.Close()
		if err := dst.Close(); err != nil {
			t.Fatal(err)
		}
		self, cred = bin, &syscall.Credential{Uid: nobody, Gid: nobody}
	}
	cmd := exec.CommandContext(ctx, self, append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), "TRAILWATCH_TEST_MAIN=1", "HOME="+os.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	return cmd
}

// worldDir is a temporary directory everyone may enter and read (with its
// parents), for inputs the user nobody reads.
func worldDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if strings.HasPrefix(d, os.TempDir()) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// TestReplayAndSearchSkipWhatCannotBeRead: in a directory of log files, an
// unreadable file, an unreadable subdirectory, a dangling symbolic link and
// a FIFO are each reported with their place and skipped, and replay and
// search read the rest (one of them used to stop the command, and the FIFO
// hung it forever).
func TestReplayAndSearchSkipWhatCannotBeRead(t *testing.T) {
	dir := worldDir(t)
	write := func(name, id string, mode os.FileMode) {
		t.Helper()
		rec := fmt.Sprintf(rootLogin(id).msg, "2024-05-01T08:00:00Z")
		if err := os.WriteFile(filepath.Join(dir, name), []byte(`{"Records":[`+rec+`]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, name), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("a.json", "a", 0o644)
	if err := os.Symlink(filepath.Join(dir, "gone.json"), filepath.Join(dir, "b-dangling.json")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "c-fifo.json"), 0o666); err != nil {
		t.Fatal(err)
	}
	write("d-unreadable.json", "d", 0)
	if err := os.Mkdir(filepath.Join(dir, "e-sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("e-sub/x.json", "x", 0o644)
	if err := os.Chmod(filepath.Join(dir, "e-sub"), 0); err != nil {
		t.Fatal(err)
	}
	write("z.json", "z", 0o644)

	for _, args := range [][]string{
		{"replay", "--rules", "builtin:aws", "--output", "json", dir},
		{"search", "--event-name", "ConsoleLogin", "--output", "jsonl", "--limit", "0", dir},
	} {
		t.Run(args[0], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := unprivileged(t, ctx, args...)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			_ = cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("%s hung (on the FIFO?):\n%s", args[0], errb.String())
			}
			ids := map[string]bool{}
			for _, id := range []string{"a", "d", "x", "z"} {
				ids[id] = strings.Contains(out.String(), `"event_id":"`+id+`"`) || strings.Contains(out.String(), `"eventID":"`+id+`"`)
			}
			if !ids["a"] || !ids["z"] || ids["d"] || ids["x"] {
				t.Errorf("%s read %v, want a and z only; exit %d\nstdout:\n%.2000s\nstderr:\n%s", args[0], ids, cmd.ProcessState.ExitCode(), out.String(), errb.String())
			}
			for _, place := range []string{"b-dangling.json", "c-fifo.json", "d-unreadable.json", "e-sub"} {
				if !strings.Contains(errb.String(), filepath.Join(dir, place)) {
					t.Errorf("%s does not report %s:\n%s", args[0], place, errb.String())
				}
			}
		})
	}
}

// TestFIFOGivesWayToSIGTERM: replay and search named a FIFO nobody writes
// to block opening it; SIGTERM ends them (it used to be ignored, the
// process blocked in open for ever).
func TestFIFOGivesWayToSIGTERM(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "events.json")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"replay", "--rules", "builtin:aws", fifo},
		{"search", "--event-name", "ConsoleLogin", fifo},
	} {
		t.Run(args[0], func(t *testing.T) {
			cmd := proc{}.command(args...)
			var errb syncBuffer
			cmd.Stderr = &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			defer func() {
				cmd.Process.Kill()
				<-done
			}()
			waitFor(t, &errb, "the process to block opening the FIFO", func() bool { return blockedOnFIFO(cmd.Process.Pid) })
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("%s ignored SIGTERM while opening a FIFO:\n%s", args[0], errb.String())
			}
			if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signaled() {
				t.Errorf("%s was killed by %v: it did not handle SIGTERM", args[0], ws.Signal())
			}
		})
	}
}

// blockedOnFIFO reports whether a thread of process pid waits in the
// kernel for a FIFO's other end.
func blockedOnFIFO(pid int) bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/wchan", pid))
	for _, p := range tasks {
		// wait_for_partner, or fifo_open where the kernel inlined it.
		if b, err := os.ReadFile(p); err == nil && (strings.Contains(string(b), "wait_for_partner") || strings.Contains(string(b), "fifo_open")) {
			return true
		}
	}
	return false
}
