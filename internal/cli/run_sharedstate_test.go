package cli

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunRefusesSharedStateItCannotUse: run (and validate, for what it
// can know without AWS) refuses at start what would otherwise stop it, or
// send twice, later: a shared_state lease shorter than a send, and a
// shared_state table that does not exist.
func TestRunRefusesSharedStateItCannotUse(t *testing.T) {
	t.Run("a lease shorter than a send", func(t *testing.T) {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "config.yaml")
		e := &runEnv{t: t}
		e.writeFile(cfg, fmt.Sprintf(`source:
  kinesis:
    stream: cloudtrail
    lease_table: trailwatch-leases
    region: us-east-1
shared_state:
  dynamodb_table: trailwatch-deliveries
  lease: 5s
state_dir: %s
rules: [builtin]
notifiers:
  - name: out
    type: file
    path: %s
`, filepath.Join(dir, "state"), filepath.Join(dir, "alerts.jsonl")))
		const want = "shared_state: lease 5s must exceed outbox.send_timeout (30s) by at least 10s"
		code, out, _ := runArgs(t, "validate", "--config", cfg)
		if code != 1 || !strings.Contains(out, cfg+":8:10: "+want) {
			t.Errorf("validate: exit %d, want 1 with %q at the lease; output:\n%s", code, want, out)
		}
		code, _, errs := runBounded(t, "run", "--config", cfg)
		if code != 1 || !strings.Contains(errs, want) || strings.Contains(errs, "trailwatch running") {
			t.Errorf("run: exit %d, want 1 with %q before running; log:\n%s", code, want, errs)
		}
	})
	t.Run("a missing shared_state table", func(t *testing.T) {
		rig := newKinesisRig(t)
		rig.ledger = "no-such-table"
		e := rig.instance("a", "a")
		e.writeFile(rig.rulesPath, runRootLoginRule)
		code, _, errs := runBounded(t, "run", "--config", e.cfgPath)
		if code != 1 || !strings.Contains(errs, `check shared state table "no-such-table"`) ||
			!strings.Contains(errs, "ResourceNotFoundException") || strings.Contains(errs, "trailwatch running") {
			t.Errorf("run: exit %d, want 1 naming the missing table before running; log:\n%s", code, errs)
		}
	})
}

// runBounded is runArgs for a command that must end by itself: it is
// cancelled (and the test fails) if it runs for 30 seconds.
func runBounded(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := Main(ctx, args, Stdio{In: strings.NewReader(""), Out: &out, Err: &errb})
	if ctx.Err() != nil {
		t.Fatalf("%v still running after 30s; log:\n%s", args, errb.String())
	}
	return code, out.String(), errb.String()
}
