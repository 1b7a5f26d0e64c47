package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/trailwatch/trailwatch/notifiers"

	"github.com/trailwatch/trailwatch/internal/corpus"
)

// TestRunMatchesReplayOverCorpus writes the whole real corpus to a moto log
// group, runs `trailwatch run` with all built-in rules (threshold and dedup
// rules included) and checks that it raises exactly the alerts `trailwatch
// replay` raises over the same records: the live service and replay share
// one lifecycle, windowed on event time.
func TestRunMatchesReplayOverCorpus(t *testing.T) {
	files := corpus.Files(t)
	sort.Strings(files)

	// What replay says.
	code, out, errs := runArgs(t, append([]string{"replay", "--rules", "builtin", "--output", "json", "--quiet"}, files...)...)
	if code != 0 {
		t.Fatalf("replay: exit %d\n%s", code, errs)
	}
	want := alertSignatures(t, out)
	if len(want) == 0 {
		t.Fatal("replay raised no alert over the corpus")
	}

	// The same records through the live service.
	e := newRunEnv(t, "")
	cfg, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	e.writeFile(e.cfgPath, strings.Replace(string(cfg), "rules: [rules.yaml]", "rules: [builtin]", 1))
	r := e.start()
	var batch []record
	flush := func() {
		if len(batch) > 0 {
			e.put(batch...)
			batch = batch[:0]
		}
	}
	n := 0
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			// put() fills a "%s" with a time: escape any in the record.
			batch = append(batch, record{msg: strings.ReplaceAll(sc.Text(), "%", "%%")})
			n++
			if len(batch) == 400 { // PutLogEvents takes at most 1 MB a call
				flush()
			}
		}
		fh.Close()
	}
	flush()

	var got []string
	e.eventually(r, fmt.Sprintf("%d alerts from %d records", len(want), n), func() bool {
		got = signaturesOf(e.readAlerts())
		return len(got) >= len(want)
	})
	if code := r.stop(t); code != 0 {
		t.Fatalf("run exited %d", code)
	}
	got = signaturesOf(e.readAlerts())
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("run and replay disagree.\nreplay (%d):\n%s\nrun (%d):\n%s", len(want), strings.Join(want, "\n"), len(got), strings.Join(got, "\n"))
	}
}

func alertSignatures(t *testing.T, jsonl string) []string {
	t.Helper()
	var alerts []notifiers.Alert
	sc := bufio.NewScanner(strings.NewReader(jsonl))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var a notifiers.Alert
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("replay output %q: %v", sc.Text(), err)
		}
		alerts = append(alerts, a)
	}
	return signaturesOf(alerts)
}

// signaturesOf identifies each alert by rule, event, count and dedup key,
// sorted, so two runs compare as multisets.
func signaturesOf(alerts []notifiers.Alert) []string {
	out := make([]string, 0, len(alerts))
	for _, a := range alerts {
		out = append(out, fmt.Sprintf("%s %s count=%d suppressed=%d dedup=%s", a.RuleID, a.EventID, a.Count, a.Suppressed, a.DedupKey))
	}
	sort.Strings(out)
	return out
}
