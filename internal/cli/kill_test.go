package cli

import (
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets a test run this test binary as `trailwatch` itself
// (TRAILWATCH_TEST_MAIN=1, arguments after "--"), through Exec as
// cmd/trailwatch does, so that a real process can be killed with SIGKILL,
// interrupted, and given real standard streams.
func TestMain(m *testing.M) {
	if os.Getenv("TRAILWATCH_TEST_MAIN") == "1" {
		args := os.Args[1:]
		for i, a := range args {
			if a == "--" {
				args = args[i+1:]
				break
			}
		}
		os.Exit(Exec(args))
	}
	os.Exit(m.Run())
}

// TestRunSurvivesKill9 runs `trailwatch run` as a real process against
// moto, kills it with SIGKILL mid-stream, writes records while it is down,
// and starts it again: every alert arrives, none twice. The position,
// dedup window and outbox on disk must be consistent whenever the process
// dies.
func TestRunSurvivesKill9(t *testing.T) {
	e := newRunEnv(t, "")
	var logs syncBuffer
	startProc := func() *exec.Cmd { return startRunProcess(t, &logs, e) }
	alertIDs := func() []string {
		ids := alertEventIDs(e.readAlerts())
		sort.Strings(ids)
		return ids
	}

	p := startProc()
	e.put(rootLogin("kill-1"), apiCall("noise-1", "DescribeInstances"), rootLogin("kill-2"))
	waitFor(t, &logs, "the first two alerts to be delivered", func() bool {
		return e.scrape()[`trailwatch_alerts_total{notifier="out",outcome="sent"}`] == 2
	})
	// More records, and SIGKILL while they are being read.
	e.put(rootLogin("kill-3"), apiCall("noise-2", "ListBuckets"))
	if err := p.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.Wait()

	// Records written while it is down.
	e.put(rootLogin("kill-4"), rootLogin("kill-5"))
	startProc()
	want := []string{"e2e-root-login/kill-1", "e2e-root-login/kill-2", "e2e-root-login/kill-3", "e2e-root-login/kill-4", "e2e-root-login/kill-5"}
	waitFor(t, &logs, "every alert after the restart", func() bool { return len(alertIDs()) >= len(want) })
	// Give a duplicate, if there were one, the time to show up: one more
	// full sweep of the lookback after the last alert.
	waitFor(t, &logs, "a sweep after the last alert", func() bool {
		return e.scrape()[`trailwatch_source_rereads_total{log_group="`+e.group+`"}`] > 0
	})
	if got := alertIDs(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("alerts after kill -9 and restart:\n%s\nwant each of:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// startRunProcess starts `trailwatch run --config` on e's configuration as
// a real process (this test binary, through TestMain), logging to logs,
// with args added, and waits until it is ready. It is killed at the end
// of the test.
func startRunProcess(t *testing.T, logs *syncBuffer, e *runEnv, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--", "run", "--config", e.cfgPath, "--log-level", "debug"}, args...)...)
	cmd.Env = append(append(os.Environ(), "TRAILWATCH_TEST_MAIN=1"), e.env...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, logs, "the service to be ready", func() bool { return e.get("/readyz") == http.StatusOK })
	return cmd
}

// waitFor polls cond until it holds, or fails the test with the process's
// log after a deadline.
func waitFor(t *testing.T, logs *syncBuffer, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; log:\n%s", what, logs.String())
		case <-tick.C:
		}
	}
}
