package lifecycle_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailwatch/trailwatch/engine/decide"
	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
)

// testRules are the rules the lifecycle tests use.
const testRules = `
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
  - id: bucket-deleted
    title: Bucket deleted
    severity: low
    when: eventName == "DeleteBucket"
    dedup: {key: requestParameters.bucketName, window: 30m}
  - id: plain
    title: Plain match
    severity: info
    when: eventName == "StopLogging"
`

func loadRules(t *testing.T) *rules.Set {
	t.Helper()
	set, err := rules.LoadFiles([]rules.File{{Name: "test.yaml", Data: []byte(testRules)}})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

var t0 = time.Date(2024, 5, 1, 9, 0, 0, 0, time.UTC)

// event is a CloudTrail record for the tests, at t0+offset.
type event struct {
	id, name, ip, code, principal, bucket string
	at                                    time.Duration
}

func (e event) raw() []byte {
	if e.principal == "" {
		e.principal = "arn:aws:iam::111122223333:user/alice"
	}
	if e.ip == "" {
		e.ip = "198.51.100.1"
	}
	if e.name == "" {
		e.name = "ListBuckets"
	}
	rec := map[string]any{
		"eventVersion": "1.08",
		"userIdentity": map[string]any{"type": "IAMUser", "arn": e.principal, "accountId": "111122223333"},
		"eventTime":    t0.Add(e.at).Format(time.RFC3339Nano),
		"eventSource":  "s3.amazonaws.com", "eventName": e.name, "awsRegion": "us-east-1",
		"sourceIPAddress": e.ip, "eventID": e.id, "recipientAccountId": "111122223333",
	}
	if e.code != "" {
		rec["errorCode"] = e.code
	}
	if e.bucket != "" {
		rec["requestParameters"] = map[string]any{"bucketName": e.bucket}
	}
	b, _ := json.Marshal(rec)
	return b
}

// harness runs events through an evaluator and a lifecycle, one batch per
// call.
type harness struct {
	t   *testing.T
	set *rules.Set
	ev  *decide.Evaluator
	lc  *lifecycle.Lifecycle
}

func newHarness(t *testing.T, cfg lifecycle.Config, opts lifecycle.Options) *harness {
	t.Helper()
	set := loadRules(t)
	lc, err := lifecycle.Open(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, set: set, lc: lc, ev: decide.NewEvaluator(set, decide.EvaluatorOptions{DedupWindow: -1})}
}

// batch processes events as one batch and commits it.
func (h *harness) batch(events ...event) []lifecycle.Output {
	h.t.Helper()
	b := h.lc.Begin()
	outs := h.process(b, events...)
	if err := b.Commit(); err != nil {
		h.t.Fatal(err)
	}
	return outs
}

func (h *harness) process(b *lifecycle.Batch, events ...event) []lifecycle.Output {
	h.t.Helper()
	var outs []lifecycle.Output
	for _, e := range events {
		alerts, err := h.ev.Evaluate(e.raw(), nil)
		if err != nil {
			h.t.Fatal(err)
		}
		for _, a := range alerts {
			outs = append(outs, b.Process(a.Alert, a.Rule, a.Event)...)
		}
	}
	return outs
}

type want struct {
	rule              string
	eventID           string
	count, suppressed int
}

func check(t *testing.T, got []lifecycle.Output, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		var s []string
		for _, o := range got {
			s = append(s, fmt.Sprintf("%s/%s count %d", o.Alert.RuleID, o.Alert.EventID, o.Alert.Count))
		}
		t.Fatalf("got %d alerts %v, want %d", len(got), s, len(wants))
	}
	for i, w := range wants {
		a := got[i].Alert
		if a.RuleID != w.rule || a.EventID != w.eventID || a.Count != w.count || a.Suppressed != w.suppressed {
			t.Errorf("alert %d: got %s/%s count %d suppressed %d, want %s/%s count %d suppressed %d",
				i, a.RuleID, a.EventID, a.Count, a.Suppressed, w.rule, w.eventID, w.count, w.suppressed)
		}
	}
}

func TestWindows(t *testing.T) {
	deny := func(id string, at time.Duration, ip string) event {
		return event{id: id, code: "AccessDenied", at: at, ip: ip}
	}
	key := func(id string, at time.Duration) event { return event{id: id, name: "CreateAccessKey", at: at} }
	tests := []struct {
		name   string
		events []event
		want   []want
	}{
		{"threshold fires at the count inside the window",
			[]event{deny("a", 0, ""), deny("b", 5*time.Minute, ""), deny("c", 10*time.Minute-time.Second, "")},
			[]want{{"deny-burst", "c", 3, 0}}},
		{"threshold window is half-open: the count exactly a window later does not fire",
			[]event{deny("a", 0, ""), deny("b", 5*time.Minute, ""), deny("c", 10*time.Minute, "")},
			nil},
		{"threshold counts groups apart",
			[]event{deny("a", 0, "192.0.2.1"), deny("b", time.Minute, "192.0.2.2"), deny("c", 2*time.Minute, "192.0.2.3")},
			nil},
		{"threshold starts over after firing",
			[]event{deny("a", 0, ""), deny("b", 1, ""), deny("c", 2, ""), deny("d", 3, ""), deny("e", 4, "")},
			[]want{{"deny-burst", "c", 3, 0}}},
		{"threshold with out-of-order event times",
			[]event{deny("late", 9*time.Minute, ""), deny("early", 0, ""), deny("mid", 5*time.Minute, "")},
			[]want{{"deny-burst", "mid", 3, 0}}},
		{"threshold ignores an event older than the group's window",
			[]event{deny("a", 20*time.Minute, ""), deny("old", 0, ""), deny("b", 21*time.Minute, "")},
			nil},
		{"dedup holds repeats inside the window and reports them after",
			[]event{key("k1", 0), key("k2", 10*time.Minute), key("k3", time.Hour-time.Nanosecond), key("k4", time.Hour)},
			[]want{{"key-created", "k1", 1, 0}, {"key-created", "k4", 3, 2}}},
		{"dedup key per principal",
			[]event{key("k1", 0), {id: "k2", name: "CreateAccessKey", principal: "bob", at: time.Minute}},
			[]want{{"key-created", "k1", 1, 0}, {"key-created", "k2", 1, 0}}},
		{"dedup with an out-of-order repeat inside the window",
			[]event{key("k1", 30*time.Minute), key("k0", 0), key("k2", 90*time.Minute)},
			[]want{{"key-created", "k1", 1, 0}, {"key-created", "k2", 2, 1}}},
		{"dedup notifies an event older than the whole window",
			[]event{key("k1", 3*time.Hour), key("k0", 0), key("k2", 3*time.Hour+time.Minute)},
			[]want{{"key-created", "k1", 1, 0}, {"key-created", "k0", 1, 0}}},
		{"dedup key expression",
			[]event{{id: "b1", name: "DeleteBucket", bucket: "x"}, {id: "b2", name: "DeleteBucket", bucket: "y"}, {id: "b3", name: "DeleteBucket", bucket: "x", at: time.Minute}},
			[]want{{"bucket-deleted", "b1", 1, 0}, {"bucket-deleted", "b2", 1, 0}}},
		{"rules without dedup pass every match",
			[]event{{id: "p1", name: "StopLogging"}, {id: "p2", name: "StopLogging"}},
			[]want{{"plain", "p1", 1, 0}, {"plain", "p2", 1, 0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, lifecycle.Config{}, lifecycle.Options{})
			check(t, h.batch(tc.events...), tc.want)
		})
	}
}

func TestThresholdAlertCarriesCountTimesAndSamples(t *testing.T) {
	h := newHarness(t, lifecycle.Config{Samples: 2}, lifecycle.Options{})
	outs := h.batch(event{id: "a", code: "AccessDenied"}, event{id: "b", code: "AccessDenied", at: time.Minute},
		event{id: "c", code: "AccessDenied", at: 2 * time.Minute})
	if len(outs) != 1 {
		t.Fatalf("got %d alerts, want 1", len(outs))
	}
	a := outs[0].Alert
	if !a.FirstTime.Equal(t0) || !a.LastTime.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("got first %s last %s", a.FirstTime, a.LastTime)
	}
	if len(a.Samples) != 2 || a.Samples[0].EventID != "a" || a.Samples[1].EventID != "b" {
		t.Errorf("got samples %+v, want a and b", a.Samples)
	}
	if len(a.Group) != 1 || a.Group[0] != "198.51.100.1" {
		t.Errorf("got group %q", a.Group)
	}
	if a.EventID != "c" || outs[0].Key == a.DedupKey {
		t.Errorf("got event %s key %s dedup key %s: the outbox key must be per event, the dedup key per group", a.EventID, outs[0].Key, a.DedupKey)
	}
}

func TestDedupKeyIsTheAlertIdentity(t *testing.T) {
	h := newHarness(t, lifecycle.Config{}, lifecycle.Options{})
	outs := h.batch(event{id: "k1", name: "CreateAccessKey"}, event{id: "k2", name: "CreateAccessKey", at: 2 * time.Hour})
	if len(outs) != 2 {
		t.Fatalf("got %d alerts, want 2", len(outs))
	}
	if outs[0].Alert.DedupKey != outs[1].Alert.DedupKey {
		t.Errorf("two notifications of one dedup key have different DedupKeys %s and %s", outs[0].Alert.DedupKey, outs[1].Alert.DedupKey)
	}
	if outs[0].Key == outs[1].Key {
		t.Errorf("two events share the outbox key %s", outs[0].Key)
	}
}

func TestGlobalDedupWindow(t *testing.T) {
	h := newHarness(t, lifecycle.Config{DedupWindow: 10 * time.Minute}, lifecycle.Options{})
	outs := h.batch(event{id: "p1", name: "StopLogging"}, event{id: "p2", name: "StopLogging", at: time.Minute},
		event{id: "p3", name: "StopLogging", at: 10 * time.Minute})
	check(t, outs, []want{{"plain", "p1", 1, 0}, {"plain", "p3", 2, 1}})
}

func TestRestartInTheMiddleOfAWindow(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, lifecycle.Config{}, lifecycle.Options{StateDir: dir})
	check(t, h.batch(event{id: "a", code: "AccessDenied"}, event{id: "b", code: "AccessDenied", at: time.Minute},
		event{id: "k1", name: "CreateAccessKey"}, event{id: "k2", name: "CreateAccessKey", at: time.Minute}),
		[]want{{"key-created", "k1", 1, 0}})

	// A new process: the windows continue where they were.
	h2 := newHarness(t, lifecycle.Config{}, lifecycle.Options{StateDir: dir})
	check(t, h2.batch(event{id: "c", code: "AccessDenied", at: 2 * time.Minute},
		event{id: "k3", name: "CreateAccessKey", at: time.Hour}),
		[]want{{"deny-burst", "c", 3, 0}, {"key-created", "k3", 2, 1}})
}

func TestRereadBatchIsNotCountedTwice(t *testing.T) {
	dir := t.TempDir()
	events := []event{{id: "a", code: "AccessDenied"}, {id: "b", code: "AccessDenied", at: time.Minute},
		{id: "k1", name: "CreateAccessKey"}}
	h := newHarness(t, lifecycle.Config{}, lifecycle.Options{StateDir: dir})
	check(t, h.batch(events...), []want{{"key-created", "k1", 1, 0}})

	// The process crashed after the lifecycle committed but before the
	// source saved its position: the batch comes again after a restart.
	h2 := newHarness(t, lifecycle.Config{}, lifecycle.Options{StateDir: dir})
	check(t, h2.batch(events...), nil)
	check(t, h2.batch(event{id: "c", code: "AccessDenied", at: 2 * time.Minute}), []want{{"deny-burst", "c", 3, 0}})
}

func TestRollbackLeavesNoTrace(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, lifecycle.Config{}, lifecycle.Options{StateDir: dir})
	events := []event{{id: "k1", name: "CreateAccessKey"}, {id: "a", code: "AccessDenied"}}
	b := h.lc.Begin()
	check(t, h.process(b, events...), []want{{"key-created", "k1", 1, 0}})
	b.Rollback() // the outbox write failed

	check(t, h.batch(events...), []want{{"key-created", "k1", 1, 0}})
	if _, err := os.Stat(filepath.Join(dir, lifecycle.StateFileName)); err != nil {
		t.Errorf("state file not written after a commit: %v", err)
	}
}

func TestHighCardinalityStaysBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	const maxKeys = 200
	h := newHarness(t, lifecycle.Config{MaxKeys: maxKeys}, lifecycle.Options{Registerer: reg})
	const groups = 5_000
	for i := 0; i < groups; i += 1000 {
		var events []event
		for j := i; j < i+1000; j++ {
			events = append(events, event{id: fmt.Sprint("e", j), code: "AccessDenied",
				ip: fmt.Sprintf("10.%d.%d.%d", j>>16&255, j>>8&255, j&255), at: time.Duration(j) * time.Millisecond})
		}
		h.batch(events...)
		if n := h.lc.Len(); n > maxKeys {
			t.Fatalf("after %d groups the lifecycle holds %d keys, more than %d", i+1000, n, maxKeys)
		}
	}
	if got := counterValue(t, reg, "trailwatch_lifecycle_evictions_total"); got != groups-maxKeys {
		t.Errorf("evictions = %v, want %d", got, groups-maxKeys)
	}
}

// counterValue returns the sum of the named counter's series.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.Metric {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func TestExpiredStateIsPruned(t *testing.T) {
	h := newHarness(t, lifecycle.Config{}, lifecycle.Options{})
	var events []event
	for i := 0; i < 100; i++ {
		events = append(events, event{id: fmt.Sprint("e", i), code: "AccessDenied", ip: fmt.Sprint("10.0.0.", i)})
	}
	h.batch(events...)
	if h.lc.Len() != 100 {
		t.Fatalf("got %d groups, want 100", h.lc.Len())
	}
	// A day later in event time every group is outside its window.
	h.batch(event{id: "late", name: "StopLogging", at: 24 * time.Hour})
	if h.lc.Len() != 0 {
		t.Errorf("got %d groups a day later, want 0", h.lc.Len())
	}
}

func TestAlertPublicForm(t *testing.T) {
	h := newHarness(t, lifecycle.Config{}, lifecycle.Options{})
	outs := h.batch(event{id: "k1", name: "CreateAccessKey"}, event{id: "k2", name: "CreateAccessKey", at: time.Minute},
		event{id: "k3", name: "CreateAccessKey", at: 2 * time.Hour})
	var got notifiers.Alert
	b, _ := json.Marshal(outs[1].Alert)
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Count != 2 || got.Suppressed != 1 || !got.FirstTime.Equal(t0.Add(time.Minute)) || !got.LastTime.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("got %+v", got)
	}
}

// TestSmallBatchesReuseTheirMaps checks that a batch reuses the previous
// batch's working maps (replay decides record by record: making them anew
// was five allocations a record), and that what a batch left in them,
// committed or rolled back, is gone from the next.
func TestSmallBatchesReuseTheirMaps(t *testing.T) {
	h := newHarness(t, lifecycle.Config{}, lifecycle.Options{})
	h.batch(event{id: "warm", name: "StopLogging"})
	allocs := testing.AllocsPerRun(100, func() {
		b := h.lc.Begin()
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("Begin+Commit of an empty batch allocated %v times, want at most 1 (the Batch)", allocs)
	}
	// A rolled-back batch's dedup entry and processed pair must not leak
	// into the next batch through the reused maps.
	b := h.lc.Begin()
	check(t, h.process(b, event{id: "k1", name: "CreateAccessKey"}), []want{{"key-created", "k1", 1, 0}})
	b.Rollback()
	check(t, h.batch(event{id: "k1", name: "CreateAccessKey"}), []want{{"key-created", "k1", 1, 0}})
	check(t, h.batch(event{id: "k2", name: "CreateAccessKey", at: time.Minute}), nil)
	check(t, h.batch(event{id: "k1", name: "CreateAccessKey"}), nil) // processed already
}

// TestRecycledEntriesKeepNothing interleaves two threshold groups and a
// dedup key, one record a batch, so that every commit recycles the entries
// it replaces (their memory serves the next batch's copies): each group's
// alert must carry its own samples and counts only, and a rolled-back
// batch's changes must not come back through a recycled entry.
func TestRecycledEntriesKeepNothing(t *testing.T) {
	h := newHarness(t, lifecycle.Config{Samples: 3}, lifecycle.Options{})
	deny := func(id string, at time.Duration, ip string) event {
		return event{id: id, code: "AccessDenied", at: at, ip: ip}
	}
	ipA, ipB := "198.51.100.1", "203.0.113.9"
	check(t, h.batch(deny("a1", 0, ipA)), nil)
	check(t, h.batch(deny("b1", time.Second, ipB)), nil)
	check(t, h.batch(event{id: "k1", name: "CreateAccessKey", at: 2 * time.Second}), []want{{"key-created", "k1", 1, 0}})
	check(t, h.batch(deny("a2", 3*time.Second, ipA)), nil)
	// A rolled-back third event of group B: its entry copy is dropped.
	b := h.lc.Begin()
	check(t, h.process(b, deny("b2", 4*time.Second, ipB), deny("b3", 5*time.Second, ipB)), []want{{"deny-burst", "b3", 3, 0}})
	b.Rollback()
	check(t, h.batch(event{id: "k2", name: "CreateAccessKey", at: 6 * time.Second}), nil)
	outs := h.batch(deny("a3", 7*time.Second, ipA))
	check(t, outs, []want{{"deny-burst", "a3", 3, 0}})
	if s := outs[0].Alert.Samples; len(s) != 3 || s[0].EventID != "a1" || s[1].EventID != "a2" || s[2].EventID != "a3" {
		t.Errorf("group A's samples %+v, want a1 a2 a3", s)
	}
	check(t, h.batch(deny("b4", 8*time.Second, ipB)), nil) // b2 and b3 were rolled back
	outs = h.batch(deny("b5", 9*time.Second, ipB))
	check(t, outs, []want{{"deny-burst", "b5", 3, 0}})
	if s := outs[0].Alert.Samples; len(s) != 3 || s[0].EventID != "b1" || s[1].EventID != "b4" || s[2].EventID != "b5" {
		t.Errorf("group B's samples %+v, want b1 b4 b5", s)
	}
	// Group A starts over after firing: its next alert has new samples.
	check(t, h.batch(deny("a4", 10*time.Second, ipA), deny("a5", 11*time.Second, ipA)), nil)
	outs = h.batch(deny("a6", 12*time.Second, ipA))
	check(t, outs, []want{{"deny-burst", "a6", 3, 0}})
	if s := outs[0].Alert.Samples; len(s) != 3 || s[0].EventID != "a4" || s[2].EventID != "a6" {
		t.Errorf("group A's second samples %+v, want a4 a5 a6", s)
	}
	check(t, h.batch(event{id: "k3", name: "CreateAccessKey", at: time.Hour + 3*time.Second}), []want{{"key-created", "k3", 2, 1}})
}

// TestHeldBackMatchAllocations bounds what deciding a match that a
// threshold holds back costs in allocations, one batch a record as
// replay decides: the batch, the group's key (its values are gathered on
// the stack), and the copy of the sample's strings (each record is alone
// in its window, so each is kept as a sample); the group's entry is copied
// into recycled memory, its key is not built again, and the LRU makes no
// element.
func TestHeldBackMatchAllocations(t *testing.T) {
	h := newHarness(t, lifecycle.Config{}, lifecycle.Options{})
	ms := make([]decide.Match, 0, 200)
	for i := range cap(ms) {
		// Each record an hour after the last: the group never fires.
		e := event{id: fmt.Sprintf("d%d", i), code: "AccessDenied", at: time.Duration(i) * time.Hour}
		got, err := h.ev.Evaluate(e.raw(), nil)
		if err != nil || len(got) != 1 {
			t.Fatalf("evaluate: %v, %d matches", err, len(got))
		}
		ms = append(ms, got[0])
	}
	i := 0
	decideOne := func() {
		b := h.lc.Begin()
		if outs := b.Process(ms[i].Alert, ms[i].Rule, ms[i].Event); len(outs) != 0 {
			t.Fatalf("match %d went out", i)
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		i++
	}
	for range 10 {
		decideOne()
	}
	if allocs := testing.AllocsPerRun(150, decideOne); allocs > 3 {
		t.Errorf("a held-back threshold match allocated %v times, want at most 3", allocs)
	}
}

// TestProcessedPairsAreBoundedExactly checks the set of processed (rule,
// event) pairs: the last SeenIDs pairs are remembered, in memory and
// through the state file, and the oldest is forgotten first.
func TestProcessedPairsAreBoundedExactly(t *testing.T) {
	dir := t.TempDir()
	opts := lifecycle.Options{StateDir: dir, SeenIDs: 3}
	stop := func(id string) event { return event{id: id, name: "StopLogging"} }
	h := newHarness(t, lifecycle.Config{}, opts)
	for _, id := range []string{"s1", "s2", "s3", "s4"} {
		check(t, h.batch(stop(id)), []want{{"plain", id, 1, 0}})
	}
	// s1 is forgotten (the fourth pair pushed it out); s2..s4 are not,
	// also after a restart.
	h2 := newHarness(t, lifecycle.Config{}, opts)
	check(t, h2.batch(stop("s4")), nil)
	check(t, h2.batch(stop("s2")), nil)
	check(t, h2.batch(stop("s3")), nil)
	check(t, h2.batch(stop("s1")), []want{{"plain", "s1", 1, 0}}) // now s2 is forgotten
	check(t, h2.batch(stop("s2")), []want{{"plain", "s2", 1, 0}})
	check(t, h2.batch(stop("s1"), stop("s4")), nil)
}
