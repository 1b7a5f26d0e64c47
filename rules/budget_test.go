package rules

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// TestUnboundedExpressionsAreRefusedAtLoad: expressions whose cost does not
// depend on the record, and is over the budget, fail to load with the
// reason (they used to load, pass `trailwatch test`, and kill the process
// with a fatal out-of-memory error on the first record).
func TestUnboundedExpressionsAreRefusedAtLoad(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"string doubling in reduce", `reduce(1..40, #acc + #acc, "ab") != ""`, "would build a string"},
		{"replace of a string by itself", `len(reduce(1..40, replace(#acc, "a", #acc), "aa")) > 0`, "replace would build a string"},
		{"repeat", `repeat("ab", 999999) != ""`, "repeat would build a string"},
		{"join of a long list", `join(map(1..20, errorMessage + repeat("abcdefgh", 10000))) != ""`, "join would build a string"},
		{"toJSON of a long list", `toJSON(map(1..20, repeat("abcdefgh", 10000))) != ""`, "toJSON would build a string"},
		{"nested loops", `all(1..999, {all(1..999, {all(1..999, {true})})})`, ""},
		{"typed string concatenation", `reduce(1..40, #acc + eventName + #acc, "ab") != ""`, "would build a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CompileCondition(tt.src)
			if err == nil {
				t.Fatalf("CompileCondition(%s) = nil error, want the expression refused", tt.src)
			}
			if !strings.Contains(err.Error(), "unbounded") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to say unbounded and %q", err, tt.want)
			}
		})
	}
}

// TestBoundedExpressionsStillLoad: loops and string building within the
// budget are untouched, and keep their types.
func TestBoundedExpressionsStillLoad(t *testing.T) {
	ev := &cloudtrail.Event{EventName: "ConsoleLogin", EventSource: "signin.amazonaws.com",
		Resources: []cloudtrail.Resource{{ARN: "arn:aws:s3:::b", Type: "AWS::S3::Bucket"}}}
	for _, src := range []string{
		`eventName + "/" + eventSource == "ConsoleLogin/signin.amazonaws.com"`,
		`all(resources, {.type startsWith "AWS::"}) && any(resources, {.ARN contains "s3"})`,
		`len(map(resources, {.ARN + "!"})) == 1 && sum(map(1..10, {# * 2})) == 110`,
		`reduce(1..100, #acc + "x", "") == repeat("x", 100)`,
		`join(["a", eventName], "-") == "a-ConsoleLogin" && replace(eventName, "Login", "") == "Console"`,
		`len(toJSON(resources)) > 10 && string(1) == "1" && str(eventName) == "ConsoleLogin"`,
		`count(1..10000, {# > 0}) == 10000`,
		`first(sortBy(resources, {.ARN})).type == "AWS::S3::Bucket"`,
	} {
		c, err := CompileCondition(src)
		if err != nil {
			t.Errorf("CompileCondition(%s): %v", src, err)
			continue
		}
		if ok, err := c.Eval(ev); err != nil || !ok {
			t.Errorf("%s = %v, %v; want true", src, ok, err)
		}
	}
}

// TestOverBudgetEvaluationIsAnError: a rule whose cost depends on the record
// loads (the empty record is cheap), and on a record that makes it
// expensive fails with ErrBudget — bounded in memory and in time — while
// the process and the other rules go on.
func TestOverBudgetEvaluationIsAnError(t *testing.T) {
	big := strings.Repeat("a", 512<<10)
	tests := []struct{ name, src string }{
		{"string doubling", `eventName == "Boom" && reduce(1..40, #acc + #acc, eventName) != ""`},
		{"replace", `eventName == "Boom" && len(reduce(1..40, replace(#acc, "o", #acc), eventName)) > 0`},
		// 998,001 inner steps, each also building a short string (one unit
		// more): about twice EvalBudget whatever the clock, within expr's
		// own memory budget.
		{"steps", `eventName == "Boom" && all(1..999, {all(1..999, {# > 0 && eventName + "!" == "Boom!"})})`},
		{"time", `eventName == "Boom" && all(1..999999, {!(errorMessage contains "zzz")})`},
	}
	boom := &cloudtrail.Event{EventName: "Boom", ErrorMessage: big}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := CompileCondition(tt.src)
			if err != nil {
				t.Fatalf("CompileCondition: %v", err)
			}
			if tt.name == "time" {
				// Its steps stay within EvalBudget: only the clock stops
				// it. A short limit keeps the test fast; scanning 512 KiB
				// a million times takes far longer than either limit.
				defer func(d time.Duration) { evalTimeout = d }(evalTimeout)
				evalTimeout = 100 * time.Millisecond
			}
			if ok, err := c.Eval(&cloudtrail.Event{EventName: "Quiet"}); err != nil || ok {
				t.Errorf("on another record: %v, %v; want false, nil", ok, err)
			}
			_, err = c.Eval(boom)
			if !errors.Is(err, ErrBudget) {
				t.Errorf("on the expensive record: error %v, want ErrBudget", err)
			}
		})
	}
}

// TestHostileRuleCountsErrorsOthersGoOn loads a hostile rule beside a
// plain one: the plain one matches, the hostile one reports a MatchError.
func TestHostileRuleCountsErrorsOthersGoOn(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/r.yaml"
	if err := os.WriteFile(path, []byte(`rules:
  - id: hostile
    title: Hostile
    severity: low
    when: 'eventName == "ConsoleLogin" && reduce(1..40, #acc + #acc, eventName) != ""'
  - id: plain
    title: Plain
    severity: low
    when: 'eventName == "ConsoleLogin"'
`), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var errs []MatchError
	got := set.Match(&cloudtrail.Event{EventVersion: "1.08", EventName: "ConsoleLogin"}, nil, func(me MatchError) { errs = append(errs, me) })
	if len(got) != 1 || got[0].ID != "plain" {
		t.Errorf("matches = %v, want plain", got)
	}
	if len(errs) != 1 || errs[0].Rule.ID != "hostile" || !errors.Is(errs[0].Err, ErrBudget) {
		t.Errorf("errors = %v, want hostile's ErrBudget", errs)
	}
}

// FuzzExpressionBudget compiles arbitrary expressions and evaluates those
// that load on a record: nothing may panic, run out of memory or hang.
func FuzzExpressionBudget(f *testing.F) {
	for _, s := range []string{
		`reduce(1..40, #acc + #acc, eventName)`,
		`replace(eventName, "o", eventName + eventName)`,
		`join(map(1..1000, {eventName}), eventName)`,
		`toJSON(map(1..100, {resources}))`,
		`all(1..99, {any(1..99, {none(1..99, {# == 0})})})`,
		`string(map(1..1000, {requestParameters}))`,
	} {
		f.Add(s)
	}
	ev := &cloudtrail.Event{EventName: strings.Repeat("ConsoleLogin", 100), ErrorMessage: strings.Repeat("x", 64<<10),
		Resources:         []cloudtrail.Resource{{ARN: "arn:aws:s3:::b", Type: "AWS::S3::Bucket"}},
		RequestParameters: map[string]any{"a": strings.Repeat("y", 4096), "b": []any{1.0, "z"}}}
	f.Fuzz(func(t *testing.T, src string) {
		p, err := compileValue(src, nil)
		if err != nil {
			return
		}
		_, _ = run(p, ev)
	})
}

// TestBudgetHoldsAcrossConcurrentEvaluations: evaluations on several
// records at once each keep their own budget when their slot is taken and
// their state goes to the overflow map: every expensive
// record fails with ErrBudget, every cheap one passes (none is charged for
// another's spending), and every slot and overflow entry is released.
func TestBudgetHoldsAcrossConcurrentEvaluations(t *testing.T) {
	// Each step builds 640,000 bytes (10,000 units): over EvalBudget
	// after about 100 steps.
	c, err := CompileCondition(`eventName != "" && all(1..200, {len(repeat("a", 640000)) > 0})`)
	if err != nil {
		t.Fatal(err)
	}
	// 600 steps of 2 units: a cheap evaluation charged to an expensive
	// one's state would fail with it.
	cheap, err := CompileCondition(`all(1..600, {eventName + "!" != "x"})`)
	if err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ev := &cloudtrail.Event{EventName: fmt.Sprintf("ev-%d", i)}
				if _, err := c.Eval(ev); !errors.Is(err, ErrBudget) {
					errs <- fmt.Errorf("expensive evaluation %d: %v, want ErrBudget", i, err)
				}
				// Cheap evaluations on other records, while the others
				// run their expensive ones.
				cheapEv := &cloudtrail.Event{EventName: fmt.Sprintf("cheap-%d", i)}
				for range 20 {
					if ok, err := cheap.Eval(cheapEv); err != nil || !ok {
						errs <- fmt.Errorf("cheap evaluation %d: %v, %v; want true", i, ok, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
	// Many records at once, cheap evaluations only: records whose slots
	// collide look at each other's slot while it is released and reused
	// (the race detector watches that).
	t.Run("shared slots", func(t *testing.T) {
		tiny, err := CompileCondition(`all(1..3, {eventName + "!" != "x"})`)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var failed atomic.Int64
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 300 {
					ev := &cloudtrail.Event{EventName: fmt.Sprintf("ev-%d-%d", g, i)}
					if ok, err := tiny.Eval(ev); err != nil || !ok {
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if n := failed.Load(); n > 0 {
			t.Errorf("%d cheap evaluations failed", n)
		}
	})
	// Every slot taken, so that these evaluations go to the overflow map.
	t.Run("overflow", func(t *testing.T) {
		// Every slot held by an evaluation on some other record.
		other := &evalState{}
		other.ev.Store(&cloudtrail.Event{})
		for i := range slots {
			slots[i].st.Store(other)
		}
		defer func() {
			for i := range slots {
				slots[i].st.Store(nil)
			}
		}()
		run(t)
		overflow.Range(func(k, _ any) bool {
			t.Errorf("overflow still holds %v", k)
			return true
		})
	})
	for i := range slots {
		if st := slots[i].st.Load(); st != nil {
			t.Errorf("slot %d still held by %v", i, st.ev.Load())
		}
	}
}
