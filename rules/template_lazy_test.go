package rules

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/trailwatch/trailwatch/internal/corpus"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// TestLazySummariesRenderAsEager: a load without tests leaves the built-in
// packs' summary placeholders uncompiled until first rendered, and then
// renders every summary as a load with tests (which compiles them all) on
// the rules' own test records and on every corpus record they match:
// same text, same error.
func TestLazySummariesRenderAsEager(t *testing.T) {
	eager, err := Load("builtin")
	if err != nil {
		t.Fatal(err)
	}
	lazy, err := LoadWith(Options{SkipTests: true}, "builtin")
	if err != nil {
		t.Fatal(err)
	}
	lazyParts := 0
	for _, r := range lazy.Rules() {
		if r.summary == nil {
			continue
		}
		for _, p := range r.summary.parts {
			if p.program == nil {
				continue
			}
			if p.program.lazy == nil || p.program.ready.Load() {
				t.Fatalf("rule %s: placeholder {{ %s }} compiled at load", r.ID, p.src)
			}
			lazyParts++
		}
	}
	if lazyParts < 100 {
		t.Fatalf("only %d lazy placeholders in the built-in packs", lazyParts)
	}
	render := func(r *Rule, ev *cloudtrail.Event) string {
		s, err := r.summary.Render(ev)
		return fmt.Sprintf("%q %v", s, err)
	}
	rendered := 0
	check := func(r *Rule, ev *cloudtrail.Event, where string) {
		if r.summary == nil {
			return
		}
		if ok, err := r.evalQuiet(ev); err != nil || !ok {
			return
		}
		rendered++
		lr := lazy.Rule(r.ID)
		if got, want := render(lr, ev), render(r, ev); got != want {
			t.Errorf("rule %s on %s: lazy summary %s, eager %s", r.ID, where, got, want)
		}
	}
	for _, r := range eager.Rules() {
		for _, tc := range r.Tests {
			for _, rec := range tc.records() {
				if ev, err := cloudtrail.DecodeEvent(rec); err == nil {
					check(r, ev, "test "+tc.Name)
				}
			}
		}
	}
	corpus.ForEachRecord(t, func(place string, line []byte) {
		ev, err := cloudtrail.DecodeEvent(line)
		if err != nil {
			return
		}
		for _, r := range eager.Rules() {
			check(r, ev, place)
		}
	})
	if rendered < 100 {
		t.Errorf("only %d summaries rendered", rendered)
	}
}

// records returns a test's records: its events, or its one event.
func (tc Test) records() []json.RawMessage {
	if tc.Sequence {
		return tc.Events
	}
	return []json.RawMessage{tc.Event}
}

// TestLazySummaryConcurrentFirstUse renders one lazily compiled summary
// from many goroutines at once (run with -race): one compile, one text.
func TestLazySummaryConcurrentFirstUse(t *testing.T) {
	set, err := LoadWith(Options{SkipTests: true}, "builtin")
	if err != nil {
		t.Fatal(err)
	}
	var r *Rule
	for _, c := range set.Rules() {
		if c.summary != nil && len(c.summary.parts) > 2 {
			r = c
			break
		}
	}
	if r == nil {
		t.Fatal("no built-in rule with placeholders")
	}
	ev, err := cloudtrail.DecodeEvent([]byte(`{"eventVersion":"1.08","eventSource":"iam.amazonaws.com","eventName":"CreateUser",` +
		`"awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userIdentity":{"type":"IAMUser","userName":"alice",` +
		`"arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333"},"requestParameters":{"userName":"bob"},` +
		`"recipientAccountId":"111122223333","eventTime":"2026-01-02T03:04:05Z","eventID":"e1"}`))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, 16)
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := r.summary.Render(ev)
			out[i] = fmt.Sprintf("%q %v", s, err)
		}()
	}
	wg.Wait()
	for i := range out {
		if out[i] != out[0] {
			t.Fatalf("rule %s: renders differ: %s and %s", r.ID, out[0], out[i])
		}
	}
}

// TestLazySummaryCompileError: a placeholder that does not compile renders
// as "?", with its error, as a placeholder failing at run time does.
func TestLazySummaryCompileError(t *testing.T) {
	tmpl, err := parseTemplateLazy("made by {{ userIdentity.userName }}, {{ noSuchField.x }}", newNames())
	if err != nil {
		t.Fatal(err)
	}
	ev, err := cloudtrail.DecodeEvent([]byte(`{"eventVersion":"1.08","eventName":"X","eventTime":"2026-01-02T03:04:05Z",` +
		`"userIdentity":{"type":"IAMUser","userName":"alice"}}`))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the error stays
		s, err := tmpl.Render(ev)
		if s != "made by alice, ?" || err == nil || !strings.Contains(err.Error(), "placeholder {{ noSuchField.x }}") {
			t.Fatalf("Render = %q, %v; want %q and the placeholder's compile error", s, err, "made by alice, ?")
		}
	}
}
