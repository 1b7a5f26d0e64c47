// Package rules holds trailwatch's rule language: the YAML rule file format
// and its loader (every problem reported at once as file:line:col), helper
// functions, summary templates, the index that picks candidate rules for an
// event, the rule test runner, and the built-in rule packs embedded in the
// binary. The CloudTrail record that expressions see, and its decoding, are
// in package rules/cloudtrail.
//
// Conditions are expr-lang expressions (github.com/expr-lang/expr),
// compiled once and type-checked against cloudtrail.Event when they load; a compiled
// Set is immutable and safe for concurrent use.
package rules

import (
	"fmt"
	"sync/atomic"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// Severities, from least to most urgent.
var Severities = []string{"info", "low", "medium", "high", "critical"}

// SeverityRank returns the position of s in Severities, or -1.
func SeverityRank(s string) int {
	for i, v := range Severities {
		if v == s {
			return i
		}
	}
	return -1
}

// Position is a place in a rule file.
type Position struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
}

func (p Position) String() string {
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
}

// Rule is one loaded, compiled rule.
type Rule struct {
	ID          string
	Title       string
	Description string
	Severity    string
	Tags        []string
	When        string // the condition's source, an expression
	Pattern     string // or a CloudWatch Logs filter pattern
	Runbook     string
	References  []string
	Notify      []string
	Enabled     bool
	Tests       []Test
	Pos         Position
	// Except lists conditions that, when any holds, keep the rule from
	// matching (exceptions a team adds without forking the rule).
	Except []string
	// Dedup is the rule's `dedup:` block, nil when it has none.
	Dedup *Dedup
	// Threshold is the rule's `threshold:` block, nil when it has none: a
	// threshold rule alerts once a group of matches reaches a count.
	Threshold *Threshold

	except       []*program
	headerOnly   bool // the condition reads only header fields (see cloudtrail.DecodeHeader)
	ord          int  // position in load order, for deterministic match order
	program      *program
	summary      *summaryTemplate
	matcher      func(*cloudtrail.Event) (bool, error) // set for pattern rules
	patternNames []string                              // eventName values a pattern requires, if any

	matches atomic.Uint64
	errors  atomic.Uint64
}

// Eval reports whether the rule's condition holds for ev. An error means
// the expression failed at run time on this event (it is counted, and the
// rule goes on working for the next event).
func (r *Rule) Eval(ev *cloudtrail.Event) (bool, error) {
	var ok bool
	var err error
	if r.matcher != nil {
		ok, err = r.matcher(ev)
	} else {
		var out any
		out, err = run(r.program, ev)
		ok, _ = out.(bool)
	}
	if err != nil {
		r.errors.Add(1)
		return false, err
	}
	if ok && len(r.except) > 0 {
		for _, p := range r.except {
			out, err := run(p, ev)
			if err != nil {
				r.errors.Add(1)
				return false, fmt.Errorf("except: %w", err)
			}
			if b, _ := out.(bool); b {
				return false, nil
			}
		}
	}
	if ok {
		r.matches.Add(1)
	}
	return ok, nil
}

// Summary renders the rule's summary for ev. A placeholder that fails at
// run time renders as "?" and is counted as an expression error.
func (r *Rule) Summary(ev *cloudtrail.Event) string {
	if r.summary == nil {
		return r.Title
	}
	s, err := r.summary.Render(ev)
	if err != nil {
		r.errors.Add(1)
	}
	return s
}

// Stats returns how many events the rule matched and how many evaluations
// failed with a run-time error since it was loaded.
func (r *Rule) Stats() (matches, errors uint64) {
	return r.matches.Load(), r.errors.Load()
}

// Set is a compiled, immutable rule set. It is safe for concurrent use; to
// change rules, load a new Set and swap it in.
type Set struct {
	rules   []*Rule // every loaded rule, in load order
	enabled []*Rule
	index   *index
	byID    map[string]*Rule
	lists   map[string][]any
	// testsSkipped: loaded with Options.SkipTests.
	testsSkipped bool
}

// Lists returns the named lists in effect (after configuration overrides).
func (s *Set) Lists() map[string][]any { return s.lists }

// Rules returns every rule in the set, enabled or not, in load order.
func (s *Set) Rules() []*Rule { return s.rules }

// Rule returns the rule with the given id, or nil.
func (s *Set) Rule(id string) *Rule { return s.byID[id] }

// Len returns the number of enabled rules.
func (s *Set) Len() int { return len(s.enabled) }

// MatchError is a rule whose condition failed at run time on an event.
type MatchError struct {
	Rule  *Rule
	Event *cloudtrail.Event
	Err   error
}

// Match evaluates ev against the enabled rules that can match it (see the
// index) and appends each rule that matches to dst. Rules whose condition
// errors on ev are reported through onErr (which may be nil) and skipped.
func (s *Set) Match(ev *cloudtrail.Event, dst []*Rule, onErr func(MatchError)) []*Rule {
	// index.candidates, inline: no call through a closure per rule.
	a, b := s.index.lists(ev)
	for len(a) > 0 || len(b) > 0 {
		var r *Rule
		if len(b) == 0 || (len(a) > 0 && a[0].ord < b[0].ord) {
			r, a = a[0], a[1:]
		} else {
			r, b = b[0], b[1:]
		}
		ok, err := r.Eval(ev)
		if err != nil {
			if onErr != nil {
				onErr(MatchError{Rule: r, Event: ev, Err: err})
			}
			continue
		}
		if ok {
			dst = append(dst, r)
		}
	}
	return dst
}
