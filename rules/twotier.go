package rules

import (
	"reflect"

	"github.com/expr-lang/expr/ast"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// MatchHeader is Match for an event that DecodeHeader filled. When complete
// is false it first decides, from the header alone, whether any candidate
// rule can match; only then does it decode the whole record into ev (so a
// caller that gets matches back always holds a fully decoded event). It
// reports whether ev is now complete.
func (s *Set) MatchHeader(ev *cloudtrail.Event, complete bool, dst []*Rule, onErr func(MatchError)) ([]*Rule, bool, error) {
	if !complete {
		need := false
		s.index.candidates(ev, func(r *Rule) {
			if need {
				return
			}
			if !r.headerOnly {
				need = true
				return
			}
			ok, err := r.evalQuiet(ev)
			if err != nil || ok {
				// A match, or an error the full evaluation will count.
				need = true
			}
		})
		if !need {
			return dst, false, nil
		}
		if err := cloudtrail.DecodeEventInto(ev, ev.Raw()); err != nil {
			return dst, true, err
		}
	}
	return s.Match(ev, dst, onErr), true, nil
}

// evalQuiet evaluates the rule without touching its counters.
func (r *Rule) evalQuiet(ev *cloudtrail.Event) (bool, error) {
	out, err := run(r.program, ev)
	if err != nil {
		return false, err
	}
	ok, _ := out.(bool)
	if ok {
		for _, p := range r.except {
			out, err := run(p, ev)
			if err != nil {
				return false, err
			}
			if b, _ := out.(bool); b {
				return false, nil
			}
		}
	}
	return ok, nil
}

// eventFields are the expression names of Event's top-level fields.
var eventFields = func() map[string]bool {
	m := map[string]bool{}
	t := reflect.TypeOf(cloudtrail.Event{})
	for i := 0; i < t.NumField(); i++ {
		if tag := t.Field(i).Tag.Get("expr"); tag != "" {
			m[tag] = true
		}
	}
	return m
}()

// headerDecidable reports whether node reads only fields that the header
// fills exactly as the full decode does, so the header alone decides it.
func headerDecidable(node ast.Node) bool {
	v := &pathVisitor{bases: map[*ast.IdentifierNode]string{}}
	ast.Walk(&node, v)
	if v.hasVariables {
		return false
	}
	for _, id := range v.idents {
		if !eventFields[id.Value] {
			continue
		}
		path := id.Value
		if prop, ok := v.bases[id]; ok {
			path += "." + prop
		}
		if !cloudtrail.IsHeaderPath(path) {
			return false
		}
	}
	return true
}

type pathVisitor struct {
	idents       []*ast.IdentifierNode
	bases        map[*ast.IdentifierNode]string
	hasVariables bool
}

func (v *pathVisitor) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		v.idents = append(v.idents, n)
	case *ast.MemberNode:
		id, ok := n.Node.(*ast.IdentifierNode)
		if !ok {
			return
		}
		if prop, ok := n.Property.(*ast.StringNode); ok {
			v.bases[id] = prop.Value
		} else {
			// A computed property (userIdentity[x]) reads anything.
			v.bases[id] = "\x00"
		}
	case *ast.VariableDeclaratorNode:
		v.hasVariables = true
	}
}
