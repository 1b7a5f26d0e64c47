package rules

import (
	"encoding/json"
	"fmt"
)

// Test is one rule test: an event and whether the rule must match it.
type Test struct {
	Name        string
	Event       json.RawMessage
	ExpectMatch bool
	Pos         Position
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
	var results []TestResult
	for _, r := range s.rules {
		for i := range r.Tests {
			results = append(results, s.runTest(r, &r.Tests[i]))
		}
	}
	return results
}

func (s *Set) runTest(r *Rule, t *Test) TestResult {
	res := TestResult{Rule: r, Test: t}
	ev, err := DecodeEvent(t.Event)
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
		res.Reason = "expected a match, but the rule index never offered this event to the rule (eventName " + fmt.Sprintf("%q", ev.EventName) + ")"
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
