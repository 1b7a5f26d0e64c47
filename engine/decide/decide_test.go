package decide

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/engine/source"
	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
)

const decideRules = `rules:
  - id: key-created
    title: Access key created
    severity: high
    when: eventName == "CreateAccessKey"
    dedup: {window: 1h}
  - id: deny-burst
    title: Denied burst
    severity: medium
    when: errorCode == "AccessDenied"
    threshold: {count: 3, window: 10m, group_by: [sourceIPAddress]}
  - id: bucket-deleted
    title: Bucket deleted
    severity: low
    when: eventName == "DeleteBucket"
`

var t0 = time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC)

// rec is a CloudTrail record made for the test.
type rec struct {
	id, name, code string
	at             int // minutes after t0
}

func (r rec) raw() []byte {
	if r.name == "" {
		r.name = "GetObject"
	}
	b, _ := json.Marshal(map[string]any{
		"eventVersion": "1.08", "eventID": r.id, "eventName": r.name, "errorCode": r.code,
		"eventTime": t0.Add(time.Duration(r.at) * time.Minute).Format(time.RFC3339), "eventSource": "iam.amazonaws.com",
		"sourceIPAddress": "203.0.113.9", "awsRegion": "us-east-1",
		"userIdentity": map[string]any{"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/alice", "userName": "alice"},
	})
	return b
}

func records(rs ...rec) []source.Record {
	out := make([]source.Record, len(rs))
	for i, r := range rs {
		out[i] = source.Record{Data: r.raw(), Place: source.Place{LogGroup: "trail", EventID: fmt.Sprint(i)}}
	}
	return out
}

// TestDecision is the decision function's behaviour, once for every path
// that uses it (run, the Lambda, Kinesis, replay): evaluate, lifecycle,
// route, storm control, items.
func TestDecision(t *testing.T) {
	set, err := rules.LoadFiles([]rules.File{{Name: "r.yaml", Data: []byte(decideRules)}})
	if err != nil {
		t.Fatal(err)
	}
	everyone := func(*notifiers.Alert, *rules.Rule) []string { return []string{"pager", "chat"} }
	bySeverity := func(a *notifiers.Alert, _ *rules.Rule) []string {
		if a.Severity == "high" {
			return []string{"pager"}
		}
		if a.Severity == "low" {
			return nil // no route
		}
		return []string{"chat"}
	}
	tests := []struct {
		name      string
		lifecycle bool
		storm     map[string]lifecycle.StormConfig
		silence   *lifecycle.Silence
		route     Router
		batches   [][]source.Record
		builtin   []notifiers.Alert
		flush     bool
		// want are the items of the last batch: rule/event->notifier (an
		// event of "" is a digest); wantAlerts the lifecycle's alerts of
		// the last batch; wantSkipped the places skipped in all batches.
		want        []string
		wantAlerts  int
		wantSkipped []string
	}{
		{
			name:  "without a lifecycle every match goes to every routed notifier",
			route: everyone,
			batches: [][]source.Record{records(
				rec{id: "k1", name: "CreateAccessKey"}, rec{id: "k2", name: "CreateAccessKey", at: 1},
				rec{id: "quiet"}, rec{id: "d1", code: "AccessDenied"},
			)},
			want:       []string{"deny-burst/d1->chat", "deny-burst/d1->pager", "key-created/k1->chat", "key-created/k1->pager", "key-created/k2->chat", "key-created/k2->pager"},
			wantAlerts: 3,
		},
		{
			name:      "the lifecycle folds repeats and holds a threshold until its count",
			lifecycle: true,
			route:     everyone,
			batches: [][]source.Record{records(
				rec{id: "k1", name: "CreateAccessKey"}, rec{id: "k2", name: "CreateAccessKey", at: 1},
				rec{id: "d1", code: "AccessDenied"}, rec{id: "d2", code: "AccessDenied", at: 1},
			), records(rec{id: "d3", code: "AccessDenied", at: 2})},
			want:       []string{"deny-burst/d3->chat", "deny-burst/d3->pager"},
			wantAlerts: 1,
		},
		{
			name:  "the route picks notifiers per alert; an alert with no route is dropped",
			route: bySeverity,
			batches: [][]source.Record{records(
				rec{id: "k1", name: "CreateAccessKey"}, rec{id: "b1", name: "DeleteBucket"}, rec{id: "d1", code: "AccessDenied"},
			)},
			want:       []string{"deny-burst/d1->chat", "key-created/k1->pager"},
			wantAlerts: 3,
		},
		{
			name:    "without a router nothing is delivered but the alerts are decided (replay without --notify)",
			batches: [][]source.Record{records(rec{id: "b1", name: "DeleteBucket"})},
			want:    nil, wantAlerts: 1,
		},
		{
			name:      "storm control folds what is above the rate into a digest that comes due",
			lifecycle: true,
			storm:     map[string]lifecycle.StormConfig{"pager": {Max: 1, Per: time.Hour, DigestEvery: 10 * time.Minute}},
			route:     func(*notifiers.Alert, *rules.Rule) []string { return []string{"pager"} },
			batches: [][]source.Record{
				records(rec{id: "b1", name: "DeleteBucket"}, rec{id: "b2", name: "DeleteBucket", at: 1}, rec{id: "b3", name: "DeleteBucket", at: 2}),
				records(rec{id: "b4", name: "DeleteBucket", at: 20}),
			},
			want:       []string{"trailwatch-storm-digest/->pager"},
			wantAlerts: 1,
		},
		{
			name:      "pending digests are flushed at the end when asked (replay)",
			lifecycle: true,
			storm:     map[string]lifecycle.StormConfig{"pager": {Max: 1, Per: time.Hour, DigestEvery: 10 * time.Minute}},
			route:     func(*notifiers.Alert, *rules.Rule) []string { return []string{"pager"} },
			batches: [][]source.Record{
				records(rec{id: "b1", name: "DeleteBucket"}, rec{id: "b2", name: "DeleteBucket", at: 1}),
				nil,
			},
			flush:      true,
			want:       []string{"trailwatch-storm-digest/->pager"},
			wantAlerts: 0,
		},
		{
			name:      "a silence holds the alert back",
			lifecycle: true,
			silence:   &lifecycle.Silence{Rule: "key-created", Comment: "rotation", StartsAt: t0.Add(-time.Hour), EndsAt: t0.Add(time.Hour)},
			route:     everyone,
			batches:   [][]source.Record{records(rec{id: "k1", name: "CreateAccessKey"}, rec{id: "b1", name: "DeleteBucket"})},
			want:      []string{"bucket-deleted/b1->chat", "bucket-deleted/b1->pager"}, wantAlerts: 1,
		},
		{
			name:  "a record delivered twice in a batch is one delivery a notifier",
			route: everyone,
			batches: [][]source.Record{records(
				rec{id: "b1", name: "DeleteBucket"}, rec{id: "b1", name: "DeleteBucket"},
			)},
			want:       []string{"bucket-deleted/b1->chat", "bucket-deleted/b1->pager"},
			wantAlerts: 2,
		},
		{
			name:      "records that are not CloudTrail are skipped with their place",
			lifecycle: true,
			route:     everyone,
			batches: [][]source.Record{append(records(rec{id: "b1", name: "DeleteBucket"}),
				source.Record{Data: []byte("START RequestId: 42"), Place: source.Place{LogGroup: "trail", LogStream: "s", EventID: "cw-7"}})},
			want:        []string{"bucket-deleted/b1->chat", "bucket-deleted/b1->pager"},
			wantAlerts:  1,
			wantSkipped: []string{"log group trail stream s event cw-7"},
		},
		{
			name:      "built-in alerts are routed but bypass the lifecycle and storm control",
			lifecycle: true,
			storm:     map[string]lifecycle.StormConfig{"pager": {Max: 1, Per: time.Hour}},
			route:     func(*notifiers.Alert, *rules.Rule) []string { return []string{"pager"} },
			batches:   [][]source.Record{records(rec{id: "b1", name: "DeleteBucket"})},
			builtin:   []notifiers.Alert{{RuleID: "trailwatch-log-group-resumed", DedupKey: "r1", EventTime: t0}},
			want:      []string{"bucket-deleted/b1->pager", "trailwatch-log-group-resumed/->pager"}, wantAlerts: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts Options
			if tt.lifecycle {
				dir := t.TempDir()
				if tt.silence != nil {
					if _, err := lifecycle.AddSilence(dir, *tt.silence, t0); err != nil {
						t.Fatal(err)
					}
				}
				lc, err := lifecycle.Open(lifecycle.Config{}, lifecycle.Options{StateDir: dir, Storm: tt.storm})
				if err != nil {
					t.Fatal(err)
				}
				opts.Lifecycle = lc
			}
			d := New(NewEvaluator(set, EvaluatorOptions{DedupWindow: -1}), tt.route, opts)
			var skipped []string
			var res Result
			for i, b := range tt.batches {
				last := i == len(tt.batches)-1
				x := d.Begin(context.Background())
				x.Records(b, func(r source.Record, err error) { skipped = append(skipped, r.Place.String()) })
				if last {
					x.Builtin(tt.builtin...)
				}
				var err error
				if res, err = x.Finish(last && tt.flush); err != nil {
					t.Fatal(err)
				}
				if err := x.Commit(); err != nil {
					t.Fatal(err)
				}
				x.Rollback() // after Commit: nothing
			}
			var got []string
			for _, it := range res.Items {
				if it.Key == "" {
					t.Errorf("item %s->%s has no key", it.Alert.RuleID, it.Notifier)
				}
				got = append(got, it.Alert.RuleID+"/"+it.Alert.EventID+"->"+it.Notifier)
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("items = %v, want %v", got, tt.want)
			}
			if len(res.Alerts) != tt.wantAlerts {
				t.Errorf("%d alerts, want %d", len(res.Alerts), tt.wantAlerts)
			}
			if !slices.Equal(skipped, tt.wantSkipped) {
				t.Errorf("skipped %v, want %v", skipped, tt.wantSkipped)
			}
		})
	}
}

// decideRulesAndLifecycle loads decideRules and opens a lifecycle with the
// defaults.
func decideRulesAndLifecycle(t testing.TB) (*rules.Set, *lifecycle.Lifecycle) {
	t.Helper()
	set, err := rules.LoadFiles([]rules.File{{Name: "r.yaml", Data: []byte(decideRules)}})
	if err != nil {
		t.Fatal(err)
	}
	lc, err := lifecycle.Open(lifecycle.Config{}, lifecycle.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return set, lc
}

// TestDecisionRollback checks that a decision that was not committed (the
// items could not be handed on) leaves the lifecycle as it was: the batch
// read again is decided the same way.
func TestDecisionRollback(t *testing.T) {
	set, lc := decideRulesAndLifecycle(t)
	d := New(NewEvaluator(set, EvaluatorOptions{DedupWindow: -1}),
		func(*notifiers.Alert, *rules.Rule) []string { return []string{"pager"} }, Options{Lifecycle: lc})
	batch := records(rec{id: "d1", code: "AccessDenied"}, rec{id: "d2", code: "AccessDenied", at: 1},
		rec{id: "d3", code: "AccessDenied", at: 2}, rec{id: "k1", name: "CreateAccessKey"})
	decideOnce := func(commit bool) []string {
		x := d.Begin(context.Background())
		defer x.Rollback()
		x.Records(batch, nil)
		res, err := x.Finish(false)
		if err != nil {
			t.Fatal(err)
		}
		if commit {
			if err := x.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		var out []string
		for _, it := range res.Items {
			out = append(out, it.Alert.RuleID+"/"+it.Alert.EventID)
		}
		return out
	}
	first := decideOnce(false)
	if want := "deny-burst/d3,key-created/k1"; strings.Join(first, ",") != want {
		t.Fatalf("first decision = %v, want %s", first, want)
	}
	if again := decideOnce(true); !slices.Equal(again, first) {
		t.Errorf("after a rollback the batch gave %v, want %v again", again, first)
	}
	if after := decideOnce(true); len(after) != 0 {
		t.Errorf("after a commit the batch read again gave %v, want nothing (already processed)", after)
	}
}

// TestSwapWaitsForTheDecision checks that a reload never lands inside a
// batch: Swap waits until the decision under way ends.
func TestSwapWaitsForTheDecision(t *testing.T) {
	set, err := rules.LoadFiles([]rules.File{{Name: "r.yaml", Data: []byte(decideRules)}})
	if err != nil {
		t.Fatal(err)
	}
	empty, err := rules.LoadFiles([]rules.File{{Name: "r.yaml", Data: []byte("rules: []\n")}})
	if err != nil {
		t.Fatal(err)
	}
	d := New(NewEvaluator(set, EvaluatorOptions{DedupWindow: -1}), nil, Options{})
	x := d.Begin(context.Background())
	started, swapped := make(chan struct{}), make(chan struct{})
	go func() {
		close(started)
		d.Swap(empty, nil)
		close(swapped)
	}()
	<-started
	runtime.Gosched() // give a Swap that did not wait every chance to land
	x.Records(records(rec{id: "b1", name: "DeleteBucket"}), nil)
	res, _ := x.Finish(false)
	x.Rollback()
	<-swapped
	if len(res.Alerts) != 1 {
		t.Errorf("the batch under way decided with %d alerts, want 1 (the old rules)", len(res.Alerts))
	}
	if d.Evaluator().Rules() != empty {
		t.Error("the new rule set is not in force after the decision")
	}
}

// TestSummaryRenderedOnlyForAlertsThatGoOut checks that through Parallel a
// rule's summary (and the record's JSON) is made for the alerts the
// lifecycle lets through, not for every match (they cost more than the rest
// of an alert, and most matches are held back): a threshold rule whose
// summary fails on every event counts one summary failure for three
// matches and one alert, and the alert carries the summary and its record,
// as the sequential path gives them.
func TestSummaryRenderedOnlyForAlertsThatGoOut(t *testing.T) {
	const yaml = `rules:
  - id: burst
    title: Burst
    severity: low
    when: eventName == "ListBuckets"
    threshold: {count: 3, window: 10m, group_by: [sourceIPAddress]}
    summary: "many {{ requestParameters.maxResults > 5 }} from {{ sourceIPAddress }}"
`
	raw := func(i int) []byte {
		return fmt.Appendf(nil, `{"eventVersion":"1.08","eventID":"b%d","eventName":"ListBuckets","eventTime":"2024-05-01T08:0%d:00Z","sourceIPAddress":"203.0.113.9","requestParameters":{"maxResults":"many"}}`, i, i)
	}
	for _, withLifecycle := range []bool{true, false} {
		set, err := rules.LoadFiles([]rules.File{{Name: "r.yaml", Data: []byte(yaml)}})
		if err != nil {
			t.Fatal(err)
		}
		var lc *lifecycle.Lifecycle
		if withLifecycle {
			if lc, err = lifecycle.Open(lifecycle.Config{}, lifecycle.Options{}); err != nil {
				t.Fatal(err)
			}
		}
		ev := NewEvaluator(set, EvaluatorOptions{})
		d := New(ev, nil, Options{Lifecycle: lc})
		var got []notifiers.Alert
		p := NewParallel(ev, ParallelOptions{Workers: 1}, func(_ int, ms []Match, err error) error {
			if err != nil {
				return err
			}
			x := d.Begin(context.Background())
			defer x.Rollback()
			x.Matches(ms)
			res, err := x.Finish(false)
			if err != nil {
				return err
			}
			for _, o := range res.Alerts {
				got = append(got, o.Alert)
			}
			return x.Commit()
		})
		for i := range 3 {
			if err := p.Add(raw(i), i); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		_, renderErrs := set.Rules()[0].Stats()
		wantAlerts, wantSummary := 1, "3 matching events in 10m0s (2024-05-01T08:00:00Z to 2024-05-01T08:02:00Z): many ? from 203.0.113.9"
		if !withLifecycle {
			wantAlerts, wantSummary = 3, "many ? from 203.0.113.9"
		}
		if len(got) != wantAlerts || got[len(got)-1].Summary != wantSummary {
			t.Fatalf("lifecycle %v: got %d alerts, last summary %q; want %d, %q", withLifecycle, len(got), got[len(got)-1].Summary, wantAlerts, wantSummary)
		}
		for _, a := range got {
			if want := notifiers.RecordJSON(raw(int(a.EventID[1] - '0'))); string(a.Event) != string(want) {
				t.Errorf("lifecycle %v: alert's record %s, want %s", withLifecycle, a.Event, want)
			}
		}
		if renderErrs != uint64(wantAlerts) {
			t.Errorf("lifecycle %v: the summary was rendered (and failed) %d times for %d alerts out of 3 matches; want once per alert", withLifecycle, renderErrs, wantAlerts)
		}
	}
}

// TestDecideMatchesReusesItsDecision checks that DecideMatches, called
// record after record as replay does, makes no Decision, lifecycle batch
// or result slice anew: deciding a match that dedup holds back allocates
// only what the lifecycle needs for it (its dedup key), and a match that
// goes out is handed on as Begin…Commit would.
func TestDecideMatchesReusesItsDecision(t *testing.T) {
	set, lc := decideRulesAndLifecycle(t)
	ev := NewEvaluator(set, EvaluatorOptions{DedupWindow: -1})
	d := New(ev, nil, Options{Lifecycle: lc})
	var ms [][]Match
	for i := range 200 {
		m, err := ev.Evaluate(rec{id: fmt.Sprintf("k%d", i), name: "CreateAccessKey"}.raw(), nil)
		if err != nil || len(m) != 1 {
			t.Fatalf("evaluate: %v, %d matches", err, len(m))
		}
		ms = append(ms, m)
	}
	res, err := d.DecideMatches(context.Background(), ms[0], false)
	if err != nil || len(res.Alerts) != 1 || res.Alerts[0].Alert.EventID != "k0" {
		t.Fatalf("first match: %v, %+v", err, res.Alerts)
	}
	i := 1
	allocs := testing.AllocsPerRun(150, func() {
		res, err := d.DecideMatches(context.Background(), ms[i], false)
		if err != nil || len(res.Alerts) != 0 {
			t.Fatalf("match %d: %v, %d alerts (dedup should hold it back)", i, err, len(res.Alerts))
		}
		i++
	})
	if allocs > 1 {
		t.Errorf("deciding a held-back match allocated %v times, want at most 1 (its dedup key)", allocs)
	}
}
