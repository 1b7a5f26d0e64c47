package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

// rootLoginLine is a CloudTrail record the built-in rules alert on.
func rootLoginLine(id string) string {
	return `{"eventVersion":"1.08","eventID":"` + id + `","eventTime":"2024-05-01T08:00:00Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.1","userIdentity":{"type":"Root","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333"},"responseElements":{"ConsoleLogin":"Success"},"recipientAccountId":"111122223333"}` + "\n"
}

// noiseLine is a record no built-in rule alerts on.
func noiseLine(id string) string {
	return `{"eventVersion":"1.08","eventID":"` + id + `","eventTime":"2024-05-01T08:00:01Z","eventSource":"ec2.amazonaws.com","eventName":"DescribeInstances","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.1","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/a","accountId":"111122223333"},"recipientAccountId":"111122223333"}` + "\n"
}

// ttyRun starts trailwatch with standard input from stdin and, on a
// pseudo-terminal of 120 columns, its standard error and, unless stdout
// is given, its standard output. It returns the process and what the
// terminal shows.
func ttyRun(t *testing.T, stdin *os.File, stdout io.Writer, env []string, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	return ttyRunCols(t, 120, stdin, stdout, env, args...)
}

// ttyRunCols is ttyRun on a terminal cols columns wide.
func ttyRunCols(t *testing.T, cols uint16, stdin *os.File, stdout io.Writer, env []string, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: cols}); err != nil {
		t.Fatal(err)
	}
	cmd := proc{Env: env}.command(args...)
	cmd.Stdout, cmd.Stderr = tty, tty
	if stdin != nil {
		cmd.Stdin = stdin
	}
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	screen := &syncBuffer{}
	go io.Copy(screen, ptmx) // ends with EIO when the process is gone
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, screen
}

func exitOf(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	err := cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatal(err)
	return -1
}

// progressOnTerminal runs trailwatch on a terminal with its standard
// output piped, writes first and then records no rule alerts on to its
// standard input until the terminal shows progress, closes the input, and
// returns, once the terminal shows summary, what the terminal showed and
// what went to standard output.
func progressOnTerminal(t *testing.T, first, progress, summary string, args ...string) (screen, piped string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var out syncBuffer
	cmd, term := ttyRun(t, r, &out, []string{"TERM=xterm"}, args...)
	r.Close()
	io.WriteString(w, first)
	feedUntilShown(t, w, term, progress)
	w.Close()
	if code := exitOf(t, cmd); code != 0 {
		t.Fatalf("exit %d:\n%s", code, term.String())
	}
	var none syncBuffer
	waitFor(t, &none, "the summary on the terminal", func() bool { return strings.Contains(term.String(), summary) })
	return term.String(), out.String()
}

// feedUntilShown writes records no rule alerts on to w, 512 every 20ms,
// until the terminal shows want (a progress line), failing t after 60s.
func feedUntilShown(t *testing.T, w io.Writer, screen *syncBuffer, want string) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for i := 0; !strings.Contains(screen.String(), want); i++ {
		select {
		case <-tick.C:
			var b strings.Builder
			for j := 0; j < 512; j++ {
				b.WriteString(noiseLine(fmt.Sprintf("noise-%d-%d", i, j)))
			}
			io.WriteString(w, b.String())
		case <-deadline.C:
			t.Fatalf("no progress line on the terminal:\n%q", screen.String())
		}
	}
}

// TestReplayOnATerminal is issue 15's item 8, through the real binary on
// a pseudo-terminal: alerts on a terminal are coloured by severity (not
// with NO_COLOR), a per-rule count ends the run, and a replay that takes a
// while, its alerts going elsewhere, shows a progress line on the
// terminal (records, rate, input).
func TestReplayOnATerminal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		env    []string
		colour bool
	}{
		{"colour", []string{"TERM=xterm"}, true},
		{"NO_COLOR", []string{"TERM=xterm", "NO_COLOR=1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, screen := ttyRun(t, nil, nil, tc.env, "replay", "--rules", "builtin:aws", "../../examples/events/sample-trail.jsonl")
			if code := exitOf(t, cmd); code != 0 {
				t.Fatalf("exit %d:\n%s", code, screen.String())
			}
			var none syncBuffer
			waitFor(t, &none, "the summary on the terminal", func() bool { return strings.Contains(screen.String(), "alerts by rule:") })
			out := screen.String()
			if !strings.Contains(out, "1  aws-root-console-login") && !strings.Contains(out, "2  aws-root-console-login") {
				t.Errorf("no per-rule count:\n%q", out)
			}
			red := "\x1b[1m\x1b[31mCRITICAL"
			if strings.Contains(out, red) != tc.colour {
				t.Errorf("coloured severity shown = %v, want %v:\n%q", strings.Contains(out, red), tc.colour, out)
			}
		})
	}
	t.Run("progress", func(t *testing.T) {
		out, piped := progressOnTerminal(t, rootLoginLine("tty-1"), "/s)", "alerts by rule:", "replay", "--rules", "builtin:aws", "-")
		for _, want := range []string{"\r\x1b[Kread ", " records (", "<stdin>", "alerts by rule:"} {
			if !strings.Contains(out, want) {
				t.Errorf("the terminal lacks %q:\n%q", want, out)
			}
		}
		if a := piped; !strings.Contains(a, "aws-root-console-login") || strings.ContainsRune(a, '\x1b') {
			t.Errorf("the alerts, piped, should be plain:\n%q", a)
		}
	})
}

// TestSearchOnATerminal is issue 15's item 8 for search, through the real
// binary on a pseudo-terminal: a search that takes a while shows a
// progress line (records, rate, input) on the terminal while its results
// go elsewhere, and on a narrow terminal the table keeps event IDs and
// source addresses whole, dropping columns instead.
func TestSearchOnATerminal(t *testing.T) {
	t.Run("progress", func(t *testing.T) {
		out, piped := progressOnTerminal(t, rootLoginLine("tty-search-1"), "/s), ", "matching records", "search", "--event-name", "ConsoleLogin", "--output", "jsonl", "-")
		if !regexp.MustCompile(`\r\x1b\[Kscanned \d+ records \([^)]*/s\), 1 matching: <stdin>`).MatchString(out) {
			t.Errorf("the terminal lacks the progress line:\n%q", out)
		}
		if got := piped; !strings.Contains(got, "tty-search-1") || strings.ContainsRune(got, '\x1b') {
			t.Errorf("the results, piped, should be the one record, plain:\n%q", got)
		}
	})
	t.Run("narrow table", func(t *testing.T) {
		const id = "3f0c2a9e-1b7d-4c5e-8a6f-000000d11101"
		const ip = "2001:db8:85a3::8a2e:370:7334"
		dir := t.TempDir()
		rec := strings.Replace(strings.Replace(rootLoginLine(id), `"203.0.113.1"`, `"`+ip+`"`, 1), `"type":"Root"`,
			`"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_AdministratorAccess_0123456789abcdef/someone.with.a.long.name@example.com"`, 1)
		writeTree(t, dir, map[string]string{"trail.jsonl": rec})
		for _, cols := range []uint16{100, 80} {
			cmd, screen := ttyRunCols(t, cols, nil, nil, []string{"TERM=xterm"}, "search", "--event-name", "ConsoleLogin", filepath.Join(dir, "trail.jsonl"))
			if code := exitOf(t, cmd); code != 0 {
				t.Fatalf("exit %d:\n%s", code, screen.String())
			}
			var none syncBuffer
			waitFor(t, &none, "the summary on the terminal", func() bool { return strings.Contains(screen.String(), "matching records") })
			out := screen.String()
			if !strings.Contains(out, id) {
				t.Errorf("%d columns: the event ID is not shown whole:\n%s", cols, out)
			}
			if strings.Contains(out, "SOURCE IP") != strings.Contains(out, ip) {
				t.Errorf("%d columns: the source address is cut short:\n%s", cols, out)
			}
			if cols == 100 && !strings.Contains(out, ip) {
				t.Errorf("%d columns: the source address should fit, with other columns dropped:\n%s", cols, out)
			}
		}
	})
}

// TestNoColourWhenPiped: output that is not a terminal carries no escape
// sequence and no progress line.
func TestNoColourWhenPiped(t *testing.T) {
	code, out, errs := proc{Env: []string{"TERM=xterm"}}.run(t, "replay", "../../examples/events/sample-trail.jsonl")
	if code != 0 || strings.ContainsRune(out+errs, '\x1b') {
		t.Errorf("exit %d; escape sequences in piped output:\n%q\n%q", code, out, errs)
	}
	if !strings.Contains(errs, "alerts by rule:") {
		t.Errorf("no per-rule counts:\n%s", errs)
	}
	code, out, _ = proc{}.run(t, "test", "--rules", "../../examples/rules")
	if code != 0 || !strings.Contains(out, "test events each rule matched:\n") || !strings.Contains(out, "  1  team-backup-bucket-deleted\n") || strings.ContainsRune(out, '\x1b') {
		t.Errorf("test: exit %d, want per-rule counts and no colour:\n%q", code, out)
	}
}

// TestTruncatedLogFileIsReported: a CloudTrail log file cut after its
// opening ({"Records":[) is reported as truncated, not taken for an empty
// one.
func TestTruncatedLogFileIsReported(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"cut.json": `{"Records":[`})
	for _, args := range [][]string{{"replay", dir + "/cut.json"}, {"search", "--event-name", "ConsoleLogin", dir + "/cut.json"}} {
		code, _, errs := proc{}.run(t, args...)
		if code != 0 || !strings.Contains(errs, "cut.json") || !strings.Contains(errs, "truncated") || !strings.Contains(errs, "1 inputs skipped") {
			t.Errorf("%s: exit %d, stderr:\n%s", args[0], code, errs)
		}
	}
}
