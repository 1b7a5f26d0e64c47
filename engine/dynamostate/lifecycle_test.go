package dynamostate_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/trailwatch/trailwatch/engine/decide"
	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/rules"
)

// sharedRules exercise every kind of state: a threshold (with dedup of
// its group), dedup by the default key, dedup by an expression, and a
// plain rule.
const sharedRules = `
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

var lt0 = time.Date(2024, 5, 1, 9, 0, 0, 0, time.UTC)

type rec struct {
	id, name, ip, code, user, bucket string
	at                               time.Duration
}

func (r rec) raw() []byte {
	m := map[string]any{
		"eventVersion": "1.08",
		"userIdentity": map[string]any{"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/" + r.user, "accountId": "111122223333"},
		"eventTime":    lt0.Add(r.at).Format(time.RFC3339),
		"eventSource":  "iam.amazonaws.com", "eventName": r.name, "awsRegion": "us-east-1",
		"sourceIPAddress": r.ip, "eventID": r.id, "recipientAccountId": "111122223333",
	}
	if r.code != "" {
		m["errorCode"] = r.code
	}
	if r.bucket != "" {
		m["requestParameters"] = map[string]any{"bucketName": r.bucket}
	}
	b, _ := json.Marshal(m)
	return b
}

// proc is one process: its own evaluator and lifecycle, on the shared
// store.
type proc struct {
	t   *testing.T
	set *rules.Set
	ev  *decide.Evaluator
	lc  *lifecycle.Lifecycle
}

func newProc(t *testing.T, set *rules.Set, shared lifecycle.Shared) *proc {
	t.Helper()
	lc, err := lifecycle.Open(lifecycle.Config{}, lifecycle.Options{Shared: shared})
	if err != nil {
		t.Fatal(err)
	}
	return &proc{t: t, set: set, lc: lc, ev: decide.NewEvaluator(set, decide.EvaluatorOptions{DedupWindow: -1})}
}

// run processes recs as one batch; commit decides between Commit and
// Rollback (a failed delivery).
func (p *proc) run(commit bool, recs ...rec) ([]lifecycle.Output, error) {
	b := p.lc.BeginContext(context.Background())
	var outs []lifecycle.Output
	for _, r := range recs {
		alerts, err := p.ev.Evaluate(r.raw(), nil)
		if err != nil {
			p.t.Fatal(err)
		}
		for _, a := range alerts {
			outs = append(outs, b.Process(a.Alert, a.Rule, a.Event)...)
		}
	}
	if err := b.Err(); err != nil {
		b.Rollback()
		return nil, err
	}
	if !commit {
		b.Rollback()
		return outs, nil
	}
	return outs, b.Commit()
}

func (p *proc) mustRun(recs ...rec) []lifecycle.Output {
	p.t.Helper()
	outs, err := p.run(true, recs...)
	if err != nil {
		p.t.Fatal(err)
	}
	return outs
}

func loadSharedRules(t *testing.T) *rules.Set {
	t.Helper()
	set, err := rules.LoadFiles([]rules.File{{Name: "shared.yaml", Data: []byte(sharedRules)}})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// newLifecycleStore returns a lifecycle store on a fresh table of moto.
func newLifecycleStore(t *testing.T, client *dynamodb.Client) *dynamostate.LifecycleStore {
	t.Helper()
	table := fmt.Sprintf("trailwatch-state-%d", tableSeq.Add(1))
	if err := dynamostate.CreateTable(context.Background(), client, table); err != nil {
		t.Fatal(err)
	}
	ls, err := dynamostate.NewLifecycleStore(client, table, dynamostate.Options{Now: newClock().Now})
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// describe is what must agree between one process and several sharing
// the store: which alerts go out, and what they say.
func describe(outs []lifecycle.Output) []string {
	var s []string
	for _, o := range outs {
		a := o.Alert
		s = append(s, fmt.Sprintf("%s %s key=%s dedup=%s count=%d suppressed=%d first=%s last=%s group=%v samples=%d summary=%q",
			a.RuleID, a.EventID, o.Key, a.DedupKey, a.Count, a.Suppressed, a.FirstTime.Format(time.RFC3339),
			a.LastTime.Format(time.RFC3339), a.Group, len(a.Samples), a.Summary))
	}
	return s
}

func TestLifecycleStoreConditions(t *testing.T) {
	ls := newLifecycleStore(t, motoClient(t))
	ctx := context.Background()

	if _, found, err := ls.Decision(ctx, "alert-1"); err != nil || found {
		t.Fatalf("Decision of a new alert = found %v, %v; want none", found, err)
	}
	w := lifecycle.SharedWrite{Key: "d\x00rule\x00alice", Data: []byte(`{"key":"k1"}`), Keep: time.Hour}
	if err := ls.Apply(ctx, "alert-1", []byte(`{"notify":true}`), []lifecycle.SharedWrite{w}); err != nil {
		t.Fatalf("first Apply: %v", err)
	}
	data, found, err := ls.Decision(ctx, "alert-1")
	if err != nil || !found || string(data) != `{"notify":true}` {
		t.Fatalf("Decision = %q, %v, %v; want the applied one", data, found, err)
	}
	got, ver, err := ls.Entry(ctx, w.Key)
	if err != nil || ver != 1 || string(got) != `{"key":"k1"}` {
		t.Fatalf("Entry = %q v%d, %v; want the written one at version 1", got, ver, err)
	}

	// A second decision for the same alert, or a write on a stale
	// version, is a conflict, and nothing of it is applied.
	if err := ls.Apply(ctx, "alert-1", []byte(`{}`), nil); !errors.Is(err, lifecycle.ErrConflict) {
		t.Fatalf("second decision for one alert: err = %v, want ErrConflict", err)
	}
	stale := w
	stale.Data = []byte(`{"key":"stale"}`) // read at version 0, but it is at 1 now
	if err := ls.Apply(ctx, "alert-2", []byte(`{}`), []lifecycle.SharedWrite{stale}); !errors.Is(err, lifecycle.ErrConflict) {
		t.Fatalf("write on a stale version: err = %v, want ErrConflict", err)
	}
	if _, found, _ := ls.Decision(ctx, "alert-2"); found {
		t.Fatal("the decision of a cancelled transaction was written")
	}
	next := w
	next.Version, next.Data = 1, []byte(`{"key":"k2"}`)
	if err := ls.Apply(ctx, "alert-2", []byte(`{}`), []lifecycle.SharedWrite{next}); err != nil {
		t.Fatalf("write on the current version: %v", err)
	}
	if got, ver, _ := ls.Entry(ctx, w.Key); ver != 2 || string(got) != `{"key":"k2"}` {
		t.Fatalf("Entry after update = %q v%d, want k2 at version 2", got, ver)
	}
	del := lifecycle.SharedWrite{Key: w.Key, Version: 2}
	if err := ls.Apply(ctx, "alert-3", []byte(`{}`), []lifecycle.SharedWrite{del}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if got, ver, _ := ls.Entry(ctx, w.Key); got != nil || ver != 0 {
		t.Fatalf("Entry after delete = %q v%d, want none", got, ver)
	}
}

// sequence is a day of records in time order: access key creations by a
// few users (dedup by principal), bucket deletions (dedup by bucket),
// access denied from a few addresses (threshold), and plain matches.
func sequence(n int) []rec {
	rng := rand.New(rand.NewPCG(7, 11))
	var out []rec
	at := time.Duration(0)
	for i := range n {
		at += time.Duration(rng.IntN(240)) * time.Second
		r := rec{id: fmt.Sprintf("ev-%04d", i), at: at, ip: fmt.Sprintf("198.51.100.%d", rng.IntN(3)),
			user: []string{"alice", "bob", "carol"}[rng.IntN(3)]}
		switch rng.IntN(4) {
		case 0:
			r.name = "CreateAccessKey"
		case 1:
			r.name, r.bucket = "DeleteBucket", fmt.Sprintf("bucket-%d", rng.IntN(2))
		case 2:
			r.name, r.code = "ListUsers", "AccessDenied"
		default:
			r.name = "StopLogging"
		}
		out = append(out, r)
	}
	return out
}

// TestSharedLifecycleMatchesOneProcess runs one sequence through a single
// in-memory lifecycle, and through three processes that take turns (a
// batch each) on the shared store: the alerts must be the same, down to
// their counts, times and summaries.
func TestSharedLifecycleMatchesOneProcess(t *testing.T) {
	set := loadSharedRules(t)
	seq := sequence(120)

	single, err := lifecycle.Open(lifecycle.Config{}, lifecycle.Options{})
	if err != nil {
		t.Fatal(err)
	}
	one := &proc{t: t, set: set, lc: single, ev: decide.NewEvaluator(set, decide.EvaluatorOptions{DedupWindow: -1})}
	var want []lifecycle.Output
	for i := 0; i < len(seq); i += 4 {
		want = append(want, one.mustRun(seq[i:min(i+4, len(seq))]...)...)
	}

	ls := newLifecycleStore(t, motoClient(t))
	procs := []*proc{newProc(t, set, ls), newProc(t, set, ls), newProc(t, set, ls)}
	var got []lifecycle.Output
	for i, turn := 0, 0; i < len(seq); i, turn = i+4, turn+1 {
		got = append(got, procs[turn%len(procs)].mustRun(seq[i:min(i+4, len(seq))]...)...)
	}

	w, g := describe(want), describe(got)
	if len(w) == 0 || len(w) == len(seq) {
		t.Fatalf("the sequence gives %d alerts for %d records: it does not exercise dedup and thresholds", len(w), len(seq))
	}
	for i := range max(len(w), len(g)) {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			t.Errorf("alert %d:\n one process: %s\n shared:      %s", i, a, b)
		}
	}
}

// TestSharedLifecycleConcurrentRepeats has four processes see repeats of
// one finding at the same moment: exactly one alert goes out, and the
// next one after the window reports every repeat held back.
func TestSharedLifecycleConcurrentRepeats(t *testing.T) {
	set := loadSharedRules(t)
	ls := newLifecycleStore(t, motoClient(t))
	const workers = 4
	procs := make([]*proc, workers)
	for i := range procs {
		procs[i] = newProc(t, set, ls)
	}
	var mu sync.Mutex
	var sent []lifecycle.Output
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for j := range 3 {
				// Each worker: three key creations by alice and one
				// access denied from one address, inside the windows.
				i := w*3 + j
				outs, err := procs[w].run(true,
					rec{id: fmt.Sprintf("key-%d", i), name: "CreateAccessKey", user: "alice", ip: "203.0.113.9", at: time.Duration(i) * time.Second},
					rec{id: fmt.Sprintf("deny-%d", i), name: "ListUsers", code: "AccessDenied", user: "bob", ip: "203.0.113.7", at: time.Duration(i) * time.Second})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				sent = append(sent, outs...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	byRule := map[string]int{}
	for _, o := range sent {
		byRule[o.Alert.RuleID]++
	}
	// 12 key creations in one hour: one alert. 12 denials from one
	// address, threshold 3 in 10 minutes (no dedup): one alert per three,
	// four in all, however the processes interleave.
	if byRule["key-created"] != 1 || byRule["deny-burst"] != 4 {
		t.Fatalf("alerts by rule = %v, want one key-created and four deny-burst:\n%s", byRule, describe(sent))
	}
	for _, o := range sent {
		if o.Alert.RuleID == "deny-burst" && o.Alert.Count != 3 {
			t.Errorf("threshold alert counts %d events, want 3: %s", o.Alert.Count, describe([]lifecycle.Output{o}))
		}
	}
	after := procs[0].mustRun(rec{id: "key-late", name: "CreateAccessKey", user: "alice", ip: "203.0.113.9", at: 2 * time.Hour})
	if len(after) != 1 || after[0].Alert.Suppressed != 11 || after[0].Alert.Count != 12 {
		t.Fatalf("alert after the window = %v, want one reporting 11 repeats held back (count 12)", describe(after))
	}
}

// TestSharedLifecycleRetriedBatch: a batch whose delivery failed (rolled
// back) is read again, by the same process or another: it gets the same
// alerts, and nothing it counted is counted twice.
func TestSharedLifecycleRetriedBatch(t *testing.T) {
	set := loadSharedRules(t)
	ls := newLifecycleStore(t, motoClient(t))
	a, b := newProc(t, set, ls), newProc(t, set, ls)
	batch := []rec{
		{id: "k1", name: "CreateAccessKey", user: "alice", ip: "203.0.113.9"},
		{id: "k2", name: "CreateAccessKey", user: "alice", ip: "203.0.113.9", at: time.Minute},
		{id: "d1", name: "ListUsers", code: "AccessDenied", user: "bob", ip: "203.0.113.7"},
		{id: "d2", name: "ListUsers", code: "AccessDenied", user: "bob", ip: "203.0.113.7", at: time.Second},
	}
	first, err := a.run(false, batch...) // delivery failed: rolled back
	if err != nil {
		t.Fatal(err)
	}
	again := b.mustRun(batch...)
	if fmt.Sprint(describe(first)) != fmt.Sprint(describe(again)) {
		t.Fatalf("the retried batch was decided differently:\n first: %s\n again: %s", describe(first), describe(again))
	}
	if len(first) != 1 || first[0].Alert.EventID != "k1" {
		t.Fatalf("first batch alerts = %s, want only k1's", describe(first))
	}
	// Had the retry counted its records again, the third denial would be
	// the fifth of its group (no alert) and the next key creation after
	// the window would report two repeats.
	third := a.mustRun(rec{id: "d3", name: "ListUsers", code: "AccessDenied", user: "bob", ip: "203.0.113.7", at: 2 * time.Second})
	if len(third) != 1 || third[0].Alert.Count != 3 {
		t.Fatalf("third denial: %s, want the threshold alert with count 3", describe(third))
	}
	late := b.mustRun(rec{id: "k3", name: "CreateAccessKey", user: "alice", ip: "203.0.113.9", at: 2 * time.Hour})
	if len(late) != 1 || late[0].Alert.Suppressed != 1 {
		t.Fatalf("key creation after the window: %s, want one reporting 1 repeat", describe(late))
	}
}

// TestSharedLifecycleStoreDown: when the table cannot be reached the
// batch fails (nothing is sent) instead of deciding without the state.
func TestSharedLifecycleStoreDown(t *testing.T) {
	set := loadSharedRules(t)
	client := motoClient(t)
	ls, err := dynamostate.NewLifecycleStore(client, "no-such-table", dynamostate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := newProc(t, set, ls)
	b := p.lc.BeginContext(context.Background())
	alerts, err := p.ev.Evaluate(rec{id: "k1", name: "CreateAccessKey", user: "alice", ip: "203.0.113.9"}.raw(), nil)
	if err != nil || len(alerts) != 1 {
		t.Fatalf("Evaluate = %d alerts, %v", len(alerts), err)
	}
	if outs := b.Process(alerts[0].Alert, alerts[0].Rule, alerts[0].Event); len(outs) != 0 {
		t.Errorf("Process without the store returned %d outputs, want none", len(outs))
	}
	if b.Err() == nil {
		t.Fatal("Batch.Err() = nil with the table missing")
	}
	if err := b.Commit(); err == nil {
		t.Fatal("Commit of a failed batch succeeded")
	}
	// The lifecycle is usable again (the failed batch let go of it).
	p.lc.Begin().Rollback()
}

// TestSharedSilences: a silence added once (as `trailwatch silence add`
// does with shared_state) holds back the alerts of every process, and
// expiring it lets them through again. Concurrent adds all land.
func TestSharedSilences(t *testing.T) {
	set := loadSharedRules(t)
	ls := newLifecycleStore(t, motoClient(t))
	ctx := context.Background()
	open := func() *proc {
		lc, err := lifecycle.Open(lifecycle.Config{}, lifecycle.Options{Shared: ls, SharedSilences: ls, SilenceRefresh: time.Nanosecond})
		if err != nil {
			t.Fatal(err)
		}
		return &proc{t: t, set: set, lc: lc, ev: decide.NewEvaluator(set, decide.EvaluatorOptions{DedupWindow: -1})}
	}
	a, b := open(), open()
	stop := rec{name: "StopLogging", user: "deployer", ip: "203.0.113.5", at: time.Minute}

	var wg sync.WaitGroup
	ids := make([]string, 3)
	for i := range ids {
		wg.Go(func() {
			s, err := lifecycle.AddSharedSilence(ctx, ls, lifecycle.Silence{
				Rule: "plain", Match: fmt.Sprintf(`userIdentity.arn endsWith "/deployer" || %d == 0`, i),
				Comment: "change window", StartsAt: lt0, EndsAt: lt0.Add(time.Hour),
			}, lt0)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = s.ID
		})
	}
	wg.Wait()
	list, err := lifecycle.LoadSharedSilences(ctx, ls)
	if err != nil || len(list) != 3 {
		t.Fatalf("shared silences after three concurrent adds: %d, %v; want 3", len(list), err)
	}

	stop.id = "stop-1"
	if outs := a.mustRun(stop); len(outs) != 0 {
		t.Fatalf("process a sent a silenced alert: %s", describe(outs))
	}
	stop.id = "stop-2"
	if outs := b.mustRun(stop); len(outs) != 0 {
		t.Fatalf("process b sent a silenced alert: %s", describe(outs))
	}
	for _, id := range ids {
		if err := lifecycle.ExpireSharedSilence(ctx, ls, id, lt0); err != nil {
			t.Fatal(err)
		}
	}
	stop.id = "stop-3"
	if outs := b.mustRun(stop); len(outs) != 1 {
		t.Fatalf("after the silences expired, process b sent %d alerts, want 1", len(outs))
	}
	if err := lifecycle.ExpireSharedSilence(ctx, ls, "nope", lt0); err == nil || !strings.Contains(err.Error(), `no silence "nope"`) {
		t.Fatalf("expire of an unknown silence: %v", err)
	}
}
