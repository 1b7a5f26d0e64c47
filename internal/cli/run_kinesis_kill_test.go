package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// receiver is a webhook endpoint for several processes, one path each.
// Requests on a held path are never answered: the process sending them
// is stuck mid-send (its delivery claimed in the ledger) until it dies.
type receiver struct {
	mu       sync.Mutex
	held     map[string]bool
	accepted []string // rule/event, in order
	hanging  int
}

func (rv *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	rv.mu.Lock()
	if rv.held[r.URL.Path] {
		rv.hanging++
		rv.mu.Unlock()
		<-r.Context().Done() // until the sender gives up or dies
		return
	}
	var a struct {
		RuleID  string `json:"rule_id"`
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		rv.mu.Unlock()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rv.accepted = append(rv.accepted, a.RuleID+"/"+a.EventID)
	rv.mu.Unlock()
}

func (rv *receiver) got() []string {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	out := slices.Clone(rv.accepted)
	slices.Sort(out)
	return out
}

func (rv *receiver) hangingSends() int {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return rv.hanging
}

// TestRunKinesisKill9 runs two `trailwatch run` processes on one Kinesis
// stream (source.kinesis, shared_state), writes records while they read,
// and kills one with SIGKILL while it is in the middle of a send (the
// webhook never answers it) and records keep arriving. The other takes
// its shards over once their leases expire and reads on from the
// checkpoints; the killed one is started again from its state dir (a new
// worker, as a new pod would be) and delivers what its outbox still held,
// once the dead process's claim on the delivery it was sending has run
// out. Every record is alerted once, none twice.
func TestRunKinesisKill9(t *testing.T) {
	rig := newKinesisRig(t)
	rv := &receiver{held: map[string]bool{"/a": true}}
	srv := httptest.NewServer(rv)
	t.Cleanup(srv.Close)
	rig.notifier = func(name string) string {
		return fmt.Sprintf("  - name: out\n    type: webhook\n    url: %s/%s\n", srv.URL, name)
	}
	// A claim of the dead process holds this long before another may
	// send the delivery: the shortest lease a 1s send allows.
	rig.sharedState = "\n  lease: 11s"
	rig.extra = "outbox:\n  send_timeout: 1s\n"
	a, b := rig.instance("a", ""), rig.instance("b", "")
	a.writeFile(rig.rulesPath, runRootLoginRule)
	var logs syncBuffer
	start := func(e *runEnv) *exec.Cmd { return startRunProcess(t, &logs, e) }
	var want []string
	write := func(from, to int) {
		for i := from; i < to; i++ {
			id := fmt.Sprintf("k9-%02d", i)
			want = append(want, "e2e-root-login/"+id)
			putKinesis(t, rig.kin, rig.stream, fmt.Sprint(i), rootLogin(id), apiCall(fmt.Sprintf("noise-%02d", i), "ListBuckets"))
		}
	}

	pa := start(a)
	start(b)
	waitFor(t, &logs, "each process to hold a lease", func() bool { return len(rig.owners()) == 2 })
	write(0, 8)
	waitFor(t, &logs, "the first process to be stuck sending", func() bool { return rv.hangingSends() > 0 })
	write(8, 16)
	if err := pa.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	pa.Wait()
	// Records written while it is down: the survivor reads its own shard
	// at once, the dead one's after its lease expires.
	write(16, 24)
	waitFor(t, &logs, "the survivor to take every shard", func() bool { return len(rig.owners()) == 1 })

	// The killed one comes back on its state dir (sending to a path that
	// answers) and delivers what its outbox held.
	a2 := rig.instance("a2", "")
	if err := os.Rename(rig.dir+"/a-state", rig.dir+"/a2-state"); err != nil {
		t.Fatal(err)
	}
	start(a2)
	write(24, 28)
	slices.Sort(want)
	waitFor(t, &logs, "every alert", func() bool { return len(rv.got()) >= len(want) })
	// A duplicate would come from an outbox: wait until both are empty.
	waitOutboxesEmpty(t, &logs, a2, b)
	if got := rv.got(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("alerts after kill -9 and restart:\n%s\nwant each once of:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// waitOutboxesEmpty waits until the outbox of every instance has nothing
// pending for its notifier "out".
func waitOutboxesEmpty(t *testing.T, logs *syncBuffer, envs ...*runEnv) {
	t.Helper()
	waitFor(t, logs, "the outboxes to be empty", func() bool {
		for _, e := range envs {
			if v, ok := e.scrape()[`trailwatch_outbox_depth{notifier="out"}`]; !ok || v != 0 {
				return false
			}
		}
		return true
	})
}
