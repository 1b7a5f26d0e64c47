package engine_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine"
	"github.com/trailwatch/trailwatch/engine/decide"
	"github.com/trailwatch/trailwatch/engine/files"
	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/engine/outbox"
	"github.com/trailwatch/trailwatch/engine/source"
	"github.com/trailwatch/trailwatch/internal/cli"
	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"

	"github.com/trailwatch/trailwatch/internal/corpus"
)

// corpusFiles returns the shared CloudTrail corpus, or skips.
func corpusFiles(t *testing.T) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(corpus.Dir(), "*.jsonl"))
	if len(files) == 0 {
		t.Skip("the CloudTrail corpus (../shared/corpus/*.jsonl beside the checkout) is absent")
	}
	return files
}

// records is raw as a batch.
func records(raw [][]byte) source.Batch {
	var b source.Batch
	for _, r := range raw {
		b.Records = append(b.Records, source.Record{Data: r})
	}
	return b
}

type nopNotifier struct {
	mu sync.Mutex
	n  int
}

func (n *nopNotifier) Notify(context.Context, notifiers.Alert) error {
	n.mu.Lock()
	n.n++
	n.mu.Unlock()
	return nil
}

// alertID is what must be equal between replay and the live pipeline.
func alertID(a *notifiers.Alert) string {
	b, _ := json.Marshal(struct {
		Rule, Event, DedupKey, Summary string
		Count, Suppressed              int
		Samples                        int
	}{a.RuleID, a.EventID, a.DedupKey, a.Summary, a.Count, a.Suppressed, len(a.Samples)})
	return string(b)
}

// TestReplayEqualsLivePipeline replays the corpus with the built-in rules
// (threshold rules among them) through `trailwatch replay`, and feeds the
// same files through run's files source and engine.Service with a real
// outbox; both must raise the same alerts.
func TestReplayEqualsLivePipeline(t *testing.T) {
	corpusPaths := corpusFiles(t)
	for _, dedup := range []string{"0s", "1h"} {
		t.Run("global dedup window "+dedup, func(t *testing.T) {
			// Replay.
			var out, errOut bytes.Buffer
			args := append([]string{"replay", "-q", "-o", "json", "--rules", "builtin", "--dedup-window", dedup}, corpusPaths...)
			if code := cli.Main(context.Background(), args, cli.Stdio{In: strings.NewReader(""), Out: &out, Err: &errOut}); code != 0 {
				t.Fatalf("replay exit %d: %s", code, errOut.String())
			}
			var replayed []string
			thresholds := 0
			sc := bufio.NewScanner(&out)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				var a notifiers.Alert
				if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
					t.Fatal(err)
				}
				if len(a.Group) > 0 {
					thresholds++
				}
				replayed = append(replayed, alertID(&a))
			}
			if thresholds == 0 {
				t.Fatal("the corpus raised no threshold alert; the comparison would prove little")
			}

			// The live pipeline: run's files source over the same files, in
			// batches of 64 records, stopped after its first listing.
			dir := t.TempDir()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			src, err := files.NewSource(files.Config{Paths: corpusPaths, BatchRecords: 64, PollInterval: time.Hour, Start: "beginning"},
				files.SourceOptions{StateDir: dir, After: func(time.Duration) <-chan time.Time {
					cancel()
					return nil
				}})
			if err != nil {
				t.Fatal(err)
			}
			set, err := rules.Load("builtin")
			if err != nil {
				t.Fatal(err)
			}
			ob, err := outbox.Open(filepath.Join(dir, outbox.FileName), outbox.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer ob.Close()
			window, _ := rules.ParseWindow(dedup)
			if dedup == "0s" {
				window = 0
			}
			lc, err := lifecycle.Open(lifecycle.Config{DedupWindow: window}, lifecycle.Options{StateDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			svc := &engine.Service{
				Source: src,
				Decider: decide.New(decide.NewEvaluator(set, decide.EvaluatorOptions{DedupWindow: -1}),
					func(*notifiers.Alert, *rules.Rule) []string { return []string{"rec"} }, decide.Options{Lifecycle: lc}),
				Outbox:    ob,
				Notifiers: map[string]notifiers.Notifier{"rec": &nopNotifier{}},
			}
			if err := svc.Run(ctx); err != nil {
				t.Fatal(err)
			}
			entries, err := ob.List(outbox.All)
			if err != nil {
				t.Fatal(err)
			}
			var live []string
			for i := range entries {
				live = append(live, alertID(&entries[i].Alert))
			}
			slices.Sort(live)
			slices.Sort(replayed)
			if !slices.Equal(live, replayed) {
				t.Errorf("replay raised %d alerts, the live pipeline %d", len(replayed), len(live))
				for _, r := range replayed {
					if !slices.Contains(live, r) {
						t.Errorf("only in replay: %s", r)
					}
				}
				for _, l := range live {
					if !slices.Contains(replayed, l) {
						t.Errorf("only live: %s", l)
					}
				}
			}
		})
	}
}

// rollbackRules are the rollback test's rules: a threshold, whose count
// must be undone, and a plain match.
const rollbackRules = `
rules:
  - id: deny-burst
    title: Denied burst
    severity: medium
    when: errorCode == "AccessDenied"
    threshold: {count: 3, window: 10m, group_by: [sourceIPAddress]}
  - id: key-created
    title: Access key created
    severity: high
    when: eventName == "CreateAccessKey"
    dedup: {window: 1h}
`

var t0 = time.Date(2024, 5, 1, 9, 0, 0, 0, time.UTC)

// event is a CloudTrail record for the tests, at t0+at.
type event struct {
	id, name, code string
	at             time.Duration
}

func (e event) raw() []byte {
	if e.name == "" {
		e.name = "ListBuckets"
	}
	rec := map[string]any{
		"eventVersion": "1.08",
		"userIdentity": map[string]any{"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/alice", "accountId": "111122223333"},
		"eventTime":    t0.Add(e.at).Format(time.RFC3339Nano),
		"eventSource":  "s3.amazonaws.com", "eventName": e.name, "awsRegion": "us-east-1",
		"sourceIPAddress": "198.51.100.1", "eventID": e.id, "recipientAccountId": "111122223333",
	}
	if e.code != "" {
		rec["errorCode"] = e.code
	}
	b, _ := json.Marshal(rec)
	return b
}

// TestServiceRollsBackWhenTheOutboxFails checks that a batch whose alerts
// could not be written leaves the lifecycle as it was, so the batch read
// again raises the same alerts.
func TestServiceRollsBackWhenTheOutboxFails(t *testing.T) {
	dir := t.TempDir()
	set, err := rules.LoadFiles([]rules.File{{Name: "test.yaml", Data: []byte(rollbackRules)}})
	if err != nil {
		t.Fatal(err)
	}
	lc, err := lifecycle.Open(lifecycle.Config{}, lifecycle.Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	newService := func(ob *outbox.Outbox) *engine.Service {
		return &engine.Service{
			Decider: decide.New(decide.NewEvaluator(set, decide.EvaluatorOptions{DedupWindow: -1}),
				func(*notifiers.Alert, *rules.Rule) []string { return []string{"rec"} }, decide.Options{Lifecycle: lc}),
			Outbox: ob,
			Now:    func() time.Time { return t0 },
			Logger: slog.New(slog.DiscardHandler),
		}
	}
	batch := [][]byte{
		event{id: "a", code: "AccessDenied"}.raw(), event{id: "b", code: "AccessDenied", at: 1}.raw(),
		event{id: "c", code: "AccessDenied", at: 2}.raw(), event{id: "k1", name: "CreateAccessKey"}.raw(),
	}
	broken, err := outbox.Open(filepath.Join(dir, "broken.db"), outbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	broken.Close()
	if err := newService(broken).HandleBatch(context.Background(), records(batch)); err == nil {
		t.Fatal("HandleBatch with a closed outbox succeeded")
	}
	ob, err := outbox.Open(filepath.Join(dir, outbox.FileName), outbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	if err := newService(ob).HandleBatch(context.Background(), records(batch)); err != nil {
		t.Fatal(err)
	}
	entries, err := ob.List(outbox.All)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Alert.RuleID+"/"+e.Alert.EventID)
	}
	slices.Sort(got)
	if want := []string{"deny-burst/c", "key-created/k1"}; !slices.Equal(got, want) {
		t.Errorf("outbox holds %v, want %v", got, want)
	}
}
