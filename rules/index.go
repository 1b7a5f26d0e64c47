package rules

import (
	"sort"

	"github.com/expr-lang/expr/ast"
)

// index picks the rules that can match an event. A rule whose condition
// requires eventName to be one of a set of constants (in its top-level
// conjunction, or in every branch of a top-level disjunction) is filed under
// those names; every other rule is evaluated for every event. Real trails
// are dominated by a few read-only calls that no rule names, so most events
// are never given to most rules.
type index struct {
	byName    map[string][]*Rule
	unindexed []*Rule
}

// IndexInfo says how a rule is indexed, for `validate --explain`.
type IndexInfo struct {
	EventNames []string // empty: evaluated for every event
	// HeaderOnly: the condition reads only header fields, so a record is
	// decided without decoding it whole (see DecodeHeader).
	HeaderOnly bool
}

func buildIndex(rules []*Rule) *index {
	ix := &index{byName: map[string][]*Rule{}}
	for _, r := range rules {
		names := r.indexNames()
		if len(names) == 0 {
			ix.unindexed = append(ix.unindexed, r)
			continue
		}
		for _, n := range names {
			ix.byName[n] = append(ix.byName[n], r)
		}
	}
	return ix
}

// candidates calls fn for each rule that can match ev, in load order.
func (ix *index) candidates(ev *Event, fn func(*Rule)) {
	named := ix.byName[ev.EventName]
	un := ix.unindexed
	for len(named) > 0 || len(un) > 0 {
		if len(un) == 0 || (len(named) > 0 && named[0].ord < un[0].ord) {
			fn(named[0])
			named = named[1:]
		} else {
			fn(un[0])
			un = un[1:]
		}
	}
}

// Index returns how the rule is indexed.
func (r *Rule) Index() IndexInfo {
	return IndexInfo{EventNames: r.indexNames(), HeaderOnly: r.headerOnly}
}

func (r *Rule) indexNames() []string {
	var names []string
	var ok bool
	switch {
	case r.program != nil:
		names, ok = eventNameConstraint(r.program.Node())
	case r.patternNames != nil:
		names, ok = r.patternNames, true
	}
	if !ok {
		return nil
	}
	sort.Strings(names)
	return dedupStrings(names)
}

func dedupStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// eventNameConstraint returns the eventName values that node requires,
// and whether it requires any.
func eventNameConstraint(node ast.Node) ([]string, bool) {
	switch n := node.(type) {
	case *ast.BinaryNode:
		switch n.Operator {
		case "&&", "and":
			l, lok := eventNameConstraint(n.Left)
			r, rok := eventNameConstraint(n.Right)
			switch {
			case lok && rok:
				return intersect(l, r), true
			case lok:
				return l, true
			case rok:
				return r, true
			}
			return nil, false
		case "||", "or":
			l, lok := eventNameConstraint(n.Left)
			r, rok := eventNameConstraint(n.Right)
			if lok && rok {
				return append(append([]string{}, l...), r...), true
			}
			return nil, false
		case "==":
			if isEventName(n.Left) {
				if s, ok := n.Right.(*ast.StringNode); ok {
					return []string{s.Value}, true
				}
			}
			if isEventName(n.Right) {
				if s, ok := n.Left.(*ast.StringNode); ok {
					return []string{s.Value}, true
				}
			}
		case "in":
			if isEventName(n.Left) {
				return stringConstants(n.Right)
			}
		}
	case *ast.ConstantNode:
		// A condition folded to the constant false matches nothing.
		if b, ok := n.Value.(bool); ok && !b {
			return []string{}, true
		}
	}
	return nil, false
}

func isEventName(n ast.Node) bool {
	id, ok := n.(*ast.IdentifierNode)
	return ok && id.Value == "eventName"
}

func stringConstants(n ast.Node) ([]string, bool) {
	switch x := n.(type) {
	case *ast.ArrayNode:
		out := make([]string, 0, len(x.Nodes))
		for _, e := range x.Nodes {
			s, ok := e.(*ast.StringNode)
			if !ok {
				return nil, false
			}
			out = append(out, s.Value)
		}
		return out, true
	case *ast.ConstantNode:
		switch v := x.Value.(type) {
		case []string:
			return append([]string{}, v...), true
		case []any:
			out := make([]string, 0, len(v))
			for _, e := range v {
				s, ok := e.(string)
				if !ok {
					return nil, false
				}
				out = append(out, s)
			}
			return out, true
		case map[string]struct{}:
			out := make([]string, 0, len(v))
			for s := range v {
				out = append(out, s)
			}
			return out, true
		}
	}
	return nil, false
}

func intersect(a, b []string) []string {
	set := make(map[string]bool, len(a))
	for _, s := range a {
		set[s] = true
	}
	out := []string{}
	for _, s := range b {
		if set[s] {
			out = append(out, s)
		}
	}
	return out
}
