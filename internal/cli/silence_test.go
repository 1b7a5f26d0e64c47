package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/internal/testservers"
)

func silenceCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), append([]string{"silence"}, args...), Stdio{In: strings.NewReader(""), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

// silenceRow returns the list row of silence id, or "".
func silenceRow(list, id string) string {
	for _, line := range strings.Split(list, "\n") {
		if strings.HasPrefix(line, id+" ") {
			return line
		}
	}
	return ""
}

// exerciseSilences adds a silence through the CLI, lists it, expires it
// and checks what list shows, with where as the flags that say where
// silences live. read returns the silences as stored.
func exerciseSilences(t *testing.T, where []string, read func() []lifecycle.Silence) {
	t.Helper()
	code, out, errOut := silenceCLI(t, append([]string{"add", "--rule", "aws-security-group-created",
		"--match", `userIdentity.arn endsWith "/terraform"`, "--for", "4h", "--comment", "CHG-1234 <b>migration</b>"}, where...)...)
	if code != 0 {
		t.Fatalf("silence add: exit %d: %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	if len(id) != 12 || !strings.Contains(errOut, "until 2024-05-01T13:00:00Z") {
		t.Fatalf("silence add printed id %q and %q; want a 12-hex id and the end time", id, errOut)
	}
	stored := read()
	if len(stored) != 1 || stored[0].ID != id || stored[0].Rule != "aws-security-group-created" ||
		!stored[0].StartsAt.Equal(time.Date(2024, 5, 1, 8, 30, 0, 0, time.UTC)) {
		t.Fatalf("stored silences = %+v, want the one added, starting 30m (lookback) before now", stored)
	}

	code, out, errOut = silenceCLI(t, append([]string{"list"}, where...)...)
	if code != 0 || !strings.Contains(silenceRow(out, id), "active") || !strings.Contains(silenceRow(out, id), "CHG-1234") {
		t.Fatalf("silence list: exit %d, out:\n%s\nerr: %s", code, out, errOut)
	}

	silenceNow = func() time.Time { return time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC) }
	if code, _, errOut := silenceCLI(t, append([]string{"expire", id}, where...)...); code != 0 {
		t.Fatalf("silence expire: exit %d: %s", code, errOut)
	}
	if code, _, errOut := silenceCLI(t, append([]string{"expire", id}, where...)...); code == 0 || !strings.Contains(errOut, "already expired") {
		t.Fatalf("second expire: exit %d: %s; want already expired", code, errOut)
	}
	if code, _, errOut := silenceCLI(t, append([]string{"expire", "000000000000"}, where...)...); code == 0 || !strings.Contains(errOut, "no silence") {
		t.Fatalf("expire of an unknown id: exit %d: %s", code, errOut)
	}
	_, out, _ = silenceCLI(t, append([]string{"list"}, where...)...)
	if silenceRow(out, id) != "" {
		t.Fatalf("list shows an expired silence without --all:\n%s", out)
	}
	_, out, _ = silenceCLI(t, append([]string{"list", "--all"}, where...)...)
	if !strings.Contains(silenceRow(out, id), "expired") {
		t.Fatalf("list --all does not show the expired silence:\n%s", out)
	}
	if got := read(); len(got) != 1 || !got[0].EndsAt.Equal(silenceNow()) {
		t.Fatalf("stored after expire = %+v, want it ending now", got)
	}

	// Bad input: no comment, a match that does not compile.
	if code, _, errOut := silenceCLI(t, append([]string{"add", "--rule", "x", "--for", "1h"}, where...)...); code == 0 || !strings.Contains(errOut, "--comment is required") {
		t.Fatalf("add without comment: exit %d: %s", code, errOut)
	}
	if code, _, errOut := silenceCLI(t, append([]string{"add", "--match", "eventName ==", "--for", "1h", "--comment", "c"}, where...)...); code == 0 || !strings.Contains(errOut, "match") {
		t.Fatalf("add with a broken match: exit %d: %s", code, errOut)
	}
}

func fixSilenceClock(t *testing.T) {
	old := silenceNow
	silenceNow = func() time.Time { return time.Date(2024, 5, 1, 9, 0, 0, 0, time.UTC) }
	t.Cleanup(func() { silenceNow = old })
}

func TestSilenceCommandStateDir(t *testing.T) {
	fixSilenceClock(t)
	dir := t.TempDir()
	exerciseSilences(t, []string{"--state-dir", dir}, func() []lifecycle.Silence {
		list, err := lifecycle.LoadSilences(dir)
		if err != nil {
			t.Fatal(err)
		}
		return list
	})
	if code, _, errOut := silenceCLI(t, "list"); code != 2 || !strings.Contains(errOut, "--state-dir DIR or --config FILE") {
		t.Fatalf("list with nowhere to look: exit %d: %s", code, errOut)
	}
}

// TestSilenceCommandSharedState: with a shared_state config the silences
// live in the DynamoDB table, where every instance reads them.
func TestSilenceCommandSharedState(t *testing.T) {
	fixSilenceClock(t)
	moto := testservers.StartMoto(t)
	testservers.SetFakeAWSEnv(t)
	t.Setenv("AWS_ENDPOINT_URL", moto.Endpoint)
	ctx := context.Background()
	client, err := dynamostate.NewClient(ctx, "us-east-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	const table = "trailwatch-shared"
	if err := dynamostate.CreateTable(ctx, client, table); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `source:
  cloudwatch:
    log_groups: [trail]
shared_state:
  dynamodb_table: %s
notifiers:
  - name: out
    type: file
    path: %s
`, table, filepath.Join(dir, "alerts.jsonl")), 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := dynamostate.NewLifecycleStore(client, table, dynamostate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	exerciseSilences(t, []string{"--config", cfg}, func() []lifecycle.Silence {
		list, err := lifecycle.LoadSharedSilences(ctx, store)
		if err != nil {
			t.Fatal(err)
		}
		return list
	})
	if _, err := os.Stat(filepath.Join(dir, lifecycle.SilencesFileName)); err == nil {
		t.Fatal("a silences file was written beside the config; shared silences belong in the table")
	}
}
