package cli

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// TestRunKinesisKill9 runs two `trailwatch run` processes on one Kinesis
// stream (source.kinesis, shared_state), writes records while they read,
// and kills one with SIGKILL mid-stream: the other takes its shards over
// once their leases expire and reads on from the checkpoints, the killed
// one is started again from its state dir (a new worker, as a new pod
// would be) and delivers what its outbox still held. Every record is
// alerted once, none twice.
func TestRunKinesisKill9(t *testing.T) {
	rig := newKinesisRig(t)
	a, b := rig.instance("a", ""), rig.instance("b", "")
	a.writeFile(rig.rulesPath, runRootLoginRule)
	var logs syncBuffer
	start := func(e *runEnv) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$", "--", "run", "--config", e.cfgPath, "--log-level", "debug")
		cmd.Env = append(os.Environ(), "TRAILWATCH_TEST_MAIN=1")
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		waitFor(t, &logs, "the instance to be ready", func() bool { return e.get("/readyz") == http.StatusOK })
		return cmd
	}
	var want []string
	write := func(from, to int) {
		for i := from; i < to; i++ {
			id := fmt.Sprintf("k9-%02d", i)
			want = append(want, "e2e-root-login/"+id)
			putKinesis(t, rig.kin, rig.stream, fmt.Sprint(i), rootLogin(id), apiCall(fmt.Sprintf("noise-%02d", i), "ListBuckets"))
		}
	}
	alertIDs := func() []string {
		ids := alertEventIDs(a.readAlerts())
		sort.Strings(ids)
		return ids
	}

	pa := start(a)
	start(b)
	waitFor(t, &logs, "each process to hold a lease", func() bool { return len(rig.owners()) == 2 })
	write(0, 8)
	waitFor(t, &logs, "the first alerts", func() bool { return len(alertIDs()) >= 4 })
	// More records, and SIGKILL while they are being read.
	write(8, 16)
	if err := pa.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	pa.Wait()
	// Records written while it is down: the survivor reads its shard now,
	// and the dead one's after its lease expires.
	write(16, 24)
	waitFor(t, &logs, "the survivor to take every shard", func() bool { return len(rig.owners()) == 1 })

	// The killed one comes back on its state dir and delivers what its
	// outbox held; it may take shards back and read on from checkpoints.
	start(a)
	write(24, 28)
	sort.Strings(want)
	waitFor(t, &logs, "every alert", func() bool { return len(alertIDs()) >= len(want) })
	// A duplicate would come from an outbox: wait until both are empty.
	waitFor(t, &logs, "both outboxes to be empty", func() bool {
		for _, e := range []*runEnv{a, b} {
			m := e.scrape()
			if v, ok := m[`trailwatch_outbox_depth{notifier="out"}`]; !ok || v != 0 {
				return false
			}
		}
		return true
	})
	if got := alertIDs(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("alerts after kill -9 and restart:\n%s\nwant each once of:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
