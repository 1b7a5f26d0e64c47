package rules

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// Test is one rule test: an event and whether the rule must match it, or
// (a test over time) a sequence of events and the alerts the rule must
// raise from them once its threshold and dedup have run.
type Test struct {
	Name  string
	Event json.RawMessage
	// ExpectMatch is whether the rule must match Event; for a test over
	// time, whether it must raise at least one alert.
	ExpectMatch bool
	Pos         Position

	// Sequence marks a test over time: Events, in order, each with its own
	// eventTime.
	Sequence bool
	Events   []json.RawMessage
	// ExpectAlerts is how many alerts the sequence must raise.
	ExpectAlerts int
	// Alerts, when not nil, are the alerts expected, in order.
	Alerts []ExpectedAlert
}

// TestOptions adjusts how rule tests run.
type TestOptions struct {
	// DedupWindow is the global default dedup window applied to rules
	// without a `dedup:` window in tests over time, as the service's
	// configuration would (zero: only rules that ask for dedup get it).
	DedupWindow time.Duration
}

// TestResult is the outcome of one rule test.
type TestResult struct {
	Rule   *Rule
	Test   *Test
	Passed bool
	// Reason says why a test failed, in a sentence.
	Reason string
}

// RunTests runs every test of every rule in the set (disabled rules
// included: a disabled rule's tests still say whether it is right). An
// event is evaluated through the whole set, index included, so a test also
// catches a rule that the index would wrongly never consider.
func (s *Set) RunTests() []TestResult {
	return s.RunTestsWith(TestOptions{})
}

// RunTestsWith is RunTests with options.
func (s *Set) RunTestsWith(opts TestOptions) []TestResult {
	if s.testsSkipped {
		panic("rules: RunTests on a set loaded with Options.SkipTests")
	}
	var results []TestResult
	for _, r := range s.rules {
		for i := range r.Tests {
			t := &r.Tests[i]
			if t.Sequence {
				results = append(results, s.runSequence(r, t, opts))
				continue
			}
			results = append(results, s.runTest(r, t))
		}
	}
	return results
}

func (s *Set) runTest(r *Rule, t *Test) TestResult {
	res := TestResult{Rule: r, Test: t}
	ev, err := cloudtrail.DecodeEvent(t.Event)
	if err != nil {
		res.Reason = fmt.Sprintf("the test event does not decode: %v", err)
		return res
	}
	// Evaluate through the index exactly as the live service would.
	considered := false
	ix := s.index
	if !r.Enabled {
		ix = buildIndex([]*Rule{r})
	}
	var evalErr error
	matched := false
	ix.candidates(ev, func(c *Rule) {
		if c != r {
			return
		}
		considered = true
		matched, evalErr = c.Eval(ev)
	})
	switch {
	case evalErr != nil:
		res.Reason = fmt.Sprintf("the condition failed at run time: %v", evalErr)
	case t.ExpectMatch && !considered:
		if ok, _ := r.evalQuiet(ev); ok {
			// The condition holds but the index would never evaluate it:
			// a bug in the index, which the test exists to catch.
			res.Reason = fmt.Sprintf("the condition matches, but the rule index never offers events with eventName %q to the rule", ev.EventName)
		} else {
			res.Reason = "expected a match, got none"
		}
	case t.ExpectMatch && !matched:
		res.Reason = "expected a match, got none"
	case !t.ExpectMatch && matched:
		res.Reason = "expected no match, but the rule matched"
	default:
		res.Passed = true
		if matched {
			// Render the summary so a broken placeholder fails the test.
			if r.summary != nil {
				if _, err := r.summary.Render(ev); err != nil {
					res.Passed = false
					res.Reason = fmt.Sprintf("the summary failed to render: %v", err)
				}
			}
		}
	}
	return res
}

// runSequence runs a test over time: each event, in order, through the
// index and the rule's condition, then through its threshold and dedup with
// fresh state, exactly as the lifecycle does with event time.
func (s *Set) runSequence(r *Rule, t *Test, opts TestOptions) TestResult {
	res := TestResult{Rule: r, Test: t}
	ix := s.index
	if !r.Enabled {
		ix = buildIndex([]*Rule{r})
	}
	var store mapStore
	var got []ExpectedAlert
	for i, raw := range t.Events {
		ev, err := cloudtrail.DecodeEvent(raw)
		if err != nil {
			res.Reason = fmt.Sprintf("event %d does not decode: %v", i+1, err)
			return res
		}
		var evalErr error
		matched := false
		ix.candidates(ev, func(c *Rule) {
			if c == r {
				matched, evalErr = c.Eval(ev)
			}
		})
		if evalErr != nil {
			res.Reason = fmt.Sprintf("event %d: the condition failed at run time: %v", i+1, evalErr)
			return res
		}
		if !matched {
			continue
		}
		out, err := r.Observe(ev, &store, opts.DedupWindow)
		if err != nil {
			res.Reason = fmt.Sprintf("event %d: %v", i+1, err)
			return res
		}
		if !out.Notify {
			continue
		}
		if r.summary != nil {
			if _, err := r.summary.Render(ev); err != nil {
				res.Reason = fmt.Sprintf("event %d: the summary failed to render: %v", i+1, err)
				return res
			}
		}
		count, suppressed := out.Count, out.Suppressed
		got = append(got, ExpectedAlert{Count: &count, Suppressed: &suppressed, EventID: ev.EventID,
			First: out.First, Last: out.Last, Group: out.Group})
	}
	if len(got) != t.ExpectAlerts {
		res.Reason = fmt.Sprintf("expected %d alert(s), got %d%s", t.ExpectAlerts, len(got), describeAlerts(got))
		return res
	}
	for i, want := range t.Alerts {
		if msg := compareAlert(got[i], want); msg != "" {
			res.Reason = fmt.Sprintf("alert %d: %s%s", i+1, msg, describeAlerts(got))
			return res
		}
	}
	res.Passed = true
	return res
}

func compareAlert(got, want ExpectedAlert) string {
	switch {
	case want.Count != nil && *want.Count != *got.Count:
		return fmt.Sprintf("count is %d, want %d", *got.Count, *want.Count)
	case want.Suppressed != nil && *want.Suppressed != *got.Suppressed:
		return fmt.Sprintf("suppressed is %d, want %d", *got.Suppressed, *want.Suppressed)
	case want.EventID != "" && want.EventID != got.EventID:
		return fmt.Sprintf("raised by event %q, want %q", got.EventID, want.EventID)
	case !want.First.IsZero() && !want.First.Equal(got.First):
		return fmt.Sprintf("first is %s, want %s", got.First.Format(time.RFC3339), want.First.Format(time.RFC3339))
	case !want.Last.IsZero() && !want.Last.Equal(got.Last):
		return fmt.Sprintf("last is %s, want %s", got.Last.Format(time.RFC3339), want.Last.Format(time.RFC3339))
	case want.Group != nil && !slices.Equal(want.Group, got.Group):
		return fmt.Sprintf("group is %q, want %q", got.Group, want.Group)
	}
	return ""
}

func describeAlerts(got []ExpectedAlert) string {
	if len(got) == 0 {
		return ""
	}
	parts := make([]string, len(got))
	for i, a := range got {
		parts[i] = fmt.Sprintf("{count %d, suppressed %d, event %s, %s..%s}", *a.Count, *a.Suppressed, a.EventID,
			a.First.Format(time.RFC3339), a.Last.Format(time.RFC3339))
	}
	return ": " + strings.Join(parts, ", ")
}
