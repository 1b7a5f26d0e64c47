package cloudwatch

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestStart checks where a first run begins with records already present.
func TestStart(t *testing.T) {
	env := startMoto(t)
	now := time.Now()
	tests := []struct {
		start      string
		wantOld    bool // a record stamped 30 minutes ago, already ingested
		wantRecent bool // a record stamped 1 minute ago, already ingested
	}{
		{start: "beginning", wantOld: true, wantRecent: true},
		{start: "now", wantOld: false, wantRecent: false},
		{start: "-10m", wantOld: false, wantRecent: true},
		{start: now.Add(-time.Hour).UTC().Format(time.RFC3339), wantOld: true, wantRecent: true},
	}
	for i, tt := range tests {
		t.Run("start "+tt.start, func(t *testing.T) {
			group := fmt.Sprintf("start-%d", i)
			createGroup(t, env.client, group, "s1")
			put(t, env.client, group, "s1", ct("old", now.Add(-30*time.Minute)), ct("recent", now.Add(-time.Minute)))
			col := newCollector()
			s := newSource(t, env.client, testConfig(tt.start, group), testOptions(t, t.TempDir(), nil))
			r := start(t, s, col.handle)
			// A live record written after start always arrives; once it
			// has, the records before it have had their chance.
			put(t, env.client, group, "s1", ct("live", time.Now()))
			eventually(t, 20*time.Second, "the live record", func() bool { return col.has("live") })
			put(t, env.client, group, "s1", ct("live2", time.Now()))
			eventually(t, 20*time.Second, "the second live record", func() bool { return col.has("live2") })
			if err := r.stop(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got := col.has("old"); got != tt.wantOld {
				t.Errorf("old record handed on = %v, want %v", got, tt.wantOld)
			}
			if got := col.has("recent"); got != tt.wantRecent {
				t.Errorf("recent record handed on = %v, want %v", got, tt.wantRecent)
			}
			if rep := col.repeated(); len(rep) > 0 {
				t.Errorf("records handed on more than once: %v", rep)
			}
		})
	}
}

// TestLive covers records written while the source runs: several streams,
// late ingestion, a record delivered twice, and lines that are not
// CloudTrail records.
func TestLive(t *testing.T) {
	env := startMoto(t)
	const group = "live"
	createGroup(t, env.client, group, "a", "b", "c")
	reg := prometheus.NewRegistry()
	col := newCollector()
	s := newSource(t, env.client, testConfig("now", group), testOptions(t, t.TempDir(), reg))
	r := start(t, s, col.handle)

	now := time.Now()
	put(t, env.client, group, "a", ct("a1", now), ct("a2", now.Add(time.Millisecond)))
	put(t, env.client, group, "b", ct("b1", now.Add(-2*time.Minute)))
	put(t, env.client, group, "c", event{ts: now, msg: "not json at all"}, event{ts: now, msg: "not json at all"})
	eventually(t, 20*time.Second, "records from every stream", func() bool { return col.has("a1", "a2", "b1") })

	// Ingested 10 minutes after its timestamp: older than the tail span,
	// within the lookback, so a sweep must find it.
	put(t, env.client, group, "b", ct("late10m", time.Now().Add(-10*time.Minute)))
	// The same CloudTrail record delivered twice, to two streams.
	put(t, env.client, group, "a", ct("twice", time.Now()))
	put(t, env.client, group, "b", ct("twice", time.Now()))
	eventually(t, 20*time.Second, "the late record and the duplicate", func() bool { return col.has("late10m", "twice") })
	// Both copies of the non-JSON line are distinct log events.
	eventually(t, 20*time.Second, "both non-CloudTrail lines", func() bool { return col.distinct() == 7 })
	// Wait for a few more sweeps over the same records, then stop.
	sweeps := metric(t, reg, "trailwatch_filterlogevents_calls_total", group)
	eventually(t, 20*time.Second, "more polls", func() bool {
		return metric(t, reg, "trailwatch_filterlogevents_calls_total", group) > sweeps+20
	})
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep := col.repeated(); len(rep) > 0 {
		t.Errorf("records handed on more than once: %v", rep)
	}
	for _, m := range []struct {
		name string
		want float64
	}{
		{"trailwatch_source_records_total", 7},
		{"trailwatch_source_duplicates_total", 1},
		{"trailwatch_source_late_records_total", 0},
	} {
		if got := metric(t, reg, m.name, group); got != m.want {
			t.Errorf("%s = %v, want %v", m.name, got, m.want)
		}
	}
	if got := metric(t, reg, "trailwatch_source_position_seconds", group); got < float64(now.Unix()) {
		t.Errorf("position = %v, want at least %v", got, now.Unix())
	}
}

// TestLateBeyondLookback checks that a record ingested later than the
// lookback, when it is seen at all, is handed on and counted as late.
func TestLateBeyondLookback(t *testing.T) {
	env := startMoto(t)
	const group = "toolate"
	createGroup(t, env.client, group, "a")
	reg := prometheus.NewRegistry()
	col := newCollector()
	cfg := testConfig("-1h", group)
	cfg.Lookback = 2 * time.Minute
	s := newSource(t, env.client, cfg, testOptions(t, t.TempDir(), reg))
	// Stamped 30 minutes ago, ingested now, before the first run: the
	// first sweep reads from an hour back and sees it, 28 minutes late.
	put(t, env.client, group, "a", ct("late30m", time.Now().Add(-30*time.Minute)))
	r := start(t, s, col.handle)
	eventually(t, 20*time.Second, "the late record", func() bool { return col.has("late30m") })
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := metric(t, reg, "trailwatch_source_late_records_total", group); got != 1 {
		t.Errorf("late records = %v, want 1", got)
	}
}

// TestRestart checks that records written while the source was stopped are
// read on restart, and none twice.
func TestRestart(t *testing.T) {
	env := startMoto(t)
	const group = "restart"
	createGroup(t, env.client, group, "a", "b")
	dir := t.TempDir()
	col := newCollector()
	cfg := testConfig("now", group)

	s := newSource(t, env.client, cfg, testOptions(t, dir, nil))
	r := start(t, s, col.handle)
	put(t, env.client, group, "a", ct("before", time.Now()))
	eventually(t, 20*time.Second, "the first record", func() bool { return col.has("before") })
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// While down: records in both streams, one stamped before the stop.
	put(t, env.client, group, "a", ct("down1", time.Now()), ct("down2", time.Now().Add(time.Millisecond)))
	put(t, env.client, group, "b", ct("down-old", time.Now().Add(-7*time.Minute)))

	s = newSource(t, env.client, cfg, testOptions(t, dir, nil))
	r = start(t, s, col.handle)
	eventually(t, 20*time.Second, "the records written while down", func() bool { return col.has("down1", "down2", "down-old") })
	put(t, env.client, group, "b", ct("after", time.Now()))
	eventually(t, 20*time.Second, "a live record after restart", func() bool { return col.has("after") })
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep := col.repeated(); len(rep) > 0 {
		t.Errorf("records handed on more than once: %v", rep)
	}
}

// TestCrashBetweenHandleAndSave simulates kill -9 after the handler
// accepted a batch and before the state recording it was saved: on restart
// nothing is missed, and only that batch is handed on again.
func TestCrashBetweenHandleAndSave(t *testing.T) {
	env := startMoto(t)
	const group = "crash"
	createGroup(t, env.client, group, "a", "b")
	dir := t.TempDir()
	cfg := testConfig("now", group)
	opts := testOptions(t, dir, nil)
	opts.PageLimit = 3 // many small batches

	col := newCollector()
	s := newSource(t, env.client, cfg, opts)
	var crashed []Record
	batches := 0
	s.afterHandle = func(_ string, batch []Record) error {
		batches++
		if batches == 2 {
			crashed = append(crashed, batch...)
			return errCrash
		}
		return nil
	}
	r := start(t, s, col.handle)
	var want []string
	now := time.Now()
	var evs []event
	for i := range 10 {
		id := fmt.Sprintf("r%02d", i)
		want = append(want, id)
		evs = append(evs, ct(id, now.Add(time.Duration(i)*time.Millisecond)))
	}
	put(t, env.client, group, "a", evs...)
	if err := r.wait(t); !errors.Is(err, errCrash) {
		t.Fatalf("Run = %v, want the simulated crash", err)
	}
	// Written after the crash, before the restart.
	put(t, env.client, group, "b", ct("after-crash", time.Now().Add(-time.Minute)))
	want = append(want, "after-crash")

	s = newSource(t, env.client, cfg, opts)
	r = start(t, s, col.handle)
	eventually(t, 20*time.Second, "every record", func() bool { return col.has(want...) })
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	allowed := map[string]bool{}
	for _, rec := range crashed {
		allowed[dedupKey(string(rec.Message), rec.CWEventID)] = true
	}
	for _, k := range col.repeated() {
		if !allowed[k] {
			t.Errorf("record %s handed on twice, but its state save was not lost", k)
		}
	}
	if len(crashed) == 0 {
		t.Fatal("the crash hook never ran")
	}
}

// TestBacklog reads 50,000 records written before the first run.
func TestBacklog(t *testing.T) {
	if testing.Short() {
		t.Skip("50,000 records: skipped in -short mode")
	}
	env := startMoto(t)
	const group = "backlog"
	streams := []string{"s0", "s1", "s2", "s3", "s4"}
	createGroup(t, env.client, group, streams...)
	now := time.Now().Add(-time.Hour)
	for si, st := range streams {
		evs := make([]event, 0, 10000)
		for i := range 10000 {
			evs = append(evs, ct(fmt.Sprintf("%d-%05d", si, i), now.Add(time.Duration(i)*time.Millisecond)))
		}
		put(t, env.client, group, st, evs...)
	}
	col := newCollector()
	s := newSource(t, env.client, testConfig("beginning", group), testOptions(t, t.TempDir(), nil))
	r := start(t, s, col.handle)
	eventually(t, 50*time.Second, "50,000 records", func() bool { return col.distinct() == 50000 })
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep := col.repeated(); len(rep) > 0 {
		t.Errorf("%d records handed on more than once, e.g. %v", len(rep), rep[0])
	}
}

// TestPositionInTheFuture: a saved position an hour ahead of the clock (it
// was stepped back) used to skip every record until the clock caught up,
// with nothing said; it is clamped to now, with a warning, and the records
// written since are read.
func TestPositionInTheFuture(t *testing.T) {
	env := startMoto(t)
	const group = "future"
	createGroup(t, env.client, group, "a")
	dir := t.TempDir()
	ahead := time.Now().Add(time.Hour).UnixMilli()
	if err := saveState(dir, group, &groupState{Position: ahead, Floor: ahead, Seen: map[string]seenEntry{}}); err != nil {
		t.Fatal(err)
	}
	var logs syncLog
	opts := testOptions(t, dir, nil)
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	col := newCollector()
	r := start(t, newSource(t, env.client, testConfig("now", group), opts), col.handle)
	put(t, env.client, group, "a", ct("after-clock-step", time.Now()))
	eventually(t, 20*time.Second, "the record written after the clock stepped back", func() bool { return col.has("after-clock-step") })
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !strings.Contains(logs.String(), "saved position is in the future") {
		t.Errorf("no warning:\n%s", logs.String())
	}
	st, _, err := loadState(dir, group)
	if err != nil || st.Position >= ahead {
		t.Errorf("saved position after the run = %v (%v), want it back from the future", st.Position, err)
	}
}

// syncLog is a log sink safe for concurrent writes.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
