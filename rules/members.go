package rules

import (
	"strings"

	"github.com/expr-lang/expr/ast"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// Members of the free-form maps. A condition that the Go forms cannot
// decide runs in expr's VM, which needs the lazy fields it reads decoded
// (cloudtrail.Event.Need). Most such conditions read a map only through
// a few named members (requestParameters.instanceType,
// dig(requestParameters, "instanceType.value")), and a map such as
// RunInstances' requestParameters has dozens: decoding it whole costs
// tens of allocations a record for the one member read. For a map that
// an expression reads only that way, run decodes just those members
// (cloudtrail.Event.NeedMembers), which reads the same in the VM: a member
// the record lacks is missing either way.

// lazyReads is how a program reads its lazy fields: whole, and parts.
type lazyReads struct {
	whole cloudtrail.Fields
	parts []memberRead
}

// memberRead is a lazy map field that a program reads only through the
// top-level members keys.
type memberRead struct {
	field cloudtrail.Fields
	keys  []string
}

// memberReads splits fields, the lazy fields node reads (exprReads),
// into those it reads only through named top-level members (parts, by
// field bit) and the rest (whole). A field named anywhere else (passed
// whole to a function but dig with a constant path, bound by let,
// compared, iterated; $env) is read whole.
func memberReads(node ast.Node, fields cloudtrail.Fields) (whole cloudtrail.Fields, parts []memberRead) {
	if fields == 0 {
		return 0, nil
	}
	v := &membersVisitor{}
	v.named, v.idents = v.namedBuf[:0], v.identsBuf[:0]
	ast.Walk(&node, v)
	// Identifiers are visited before the member or call around them:
	// judge them now.
	var other cloudtrail.Fields
	for _, id := range v.idents {
		if id.Value == envIdent {
			if !v.isBudgetEnv(id) {
				return fields, nil
			}
			continue
		}
		if _, ok := v.keyOf(id); !ok {
			other |= cloudtrail.FieldsOf(id.Value)
		}
	}
	whole = fields
	for f := cloudtrail.Fields(1); f != 0 && f <= fields; f <<= 1 {
		if fields&f == 0 || other&f != 0 {
			continue
		}
		var keys []string
		for _, n := range v.named {
			if cloudtrail.FieldsOf(n.id.Value) == f && !contains(keys, n.key) {
				keys = append(keys, n.key)
			}
		}
		if len(keys) > 0 {
			whole &^= f
			if parts == nil {
				parts = make([]memberRead, 0, 2)
			}
			parts = append(parts, memberRead{field: f, keys: keys[:len(keys):len(keys)]})
		}
	}
	return whole, parts
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

type membersVisitor struct {
	// named: identifiers of lazy map fields read as m.key, m["key"] or
	// dig(m, "key..."), with the key.
	named []namedMember
	// idents: every identifier of a lazy field, and $env.
	idents []*ast.IdentifierNode
	// budgetEnvs are the $env identifiers passed to the budget's
	// functions (which read no field).
	budgetEnvs []*ast.IdentifierNode
	// Room for a usual expression's (one allocation for the visitor).
	namedBuf  [8]namedMember
	identsBuf [16]*ast.IdentifierNode
}

type namedMember struct {
	id  *ast.IdentifierNode
	key string
}

func (v *membersVisitor) keyOf(id *ast.IdentifierNode) (string, bool) {
	for _, n := range v.named {
		if n.id == id {
			return n.key, n.key != ""
		}
	}
	return "", false
}

func (v *membersVisitor) isBudgetEnv(id *ast.IdentifierNode) bool {
	for _, e := range v.budgetEnvs {
		if e == id {
			return true
		}
	}
	return false
}

func (v *membersVisitor) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		if n.Value == envIdent || cloudtrail.FieldsOf(n.Value) != 0 {
			v.idents = append(v.idents, n)
		}
	case *ast.MemberNode:
		if id, f := lazyMapIdent(n.Node); f != 0 {
			if s, ok := n.Property.(*ast.StringNode); ok {
				v.named = append(v.named, namedMember{id, s.Value})
			}
		}
	case *ast.CallNode:
		callee, ok := n.Callee.(*ast.IdentifierNode)
		if !ok || len(n.Arguments) == 0 {
			return
		}
		if strings.HasPrefix(callee.Value, fnBuild) {
			if env, ok := n.Arguments[0].(*ast.IdentifierNode); ok && env.Value == envIdent {
				v.budgetEnvs = append(v.budgetEnvs, env)
			}
		}
		if callee.Value == "dig" && len(n.Arguments) == 2 {
			id, f := lazyMapIdent(n.Arguments[0])
			path, ok := n.Arguments[1].(*ast.StringNode)
			if f != 0 && ok {
				if key, ok := digFirst(path.Value); ok {
					v.named = append(v.named, namedMember{id, key})
				}
			}
		}
	}
}

// lazyMapIdent returns node as the identifier of a lazy map field (not
// resources), and the field; 0 if it is not one.
func lazyMapIdent(node ast.Node) (*ast.IdentifierNode, cloudtrail.Fields) {
	id, ok := node.(*ast.IdentifierNode)
	if !ok {
		return nil, 0
	}
	f := cloudtrail.FieldsOf(id.Value)
	if f == 0 || f == cloudtrail.FieldsOf("resources") || f == cloudtrail.AllFields {
		return nil, 0
	}
	return id, f
}

// digFirst returns the top-level key that dig(m, path) reads first, as dig
// splits its path; false when the path names none (dig returns m itself).
func digFirst(path string) (string, bool) {
	for _, part := range strings.Split(digBrackets.Replace(path), ".") {
		if part != "" {
			return part, true
		}
	}
	return "", false
}
