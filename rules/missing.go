package rules

import (
	"reflect"

	"github.com/expr-lang/expr/ast"
)

// missingStrings makes `??` fall back on typed string fields. The typed
// record reads an absent string field as "" (it cannot be nil), so without
// this `userIdentity.arn ?? userIdentity.principalId` would never reach its
// fallback, and a summary or threshold group for an AWS service caller (no
// arn) would print a blank. In a chain `a ?? b ?? c`, an operand whose
// static type is string counts as missing when it is ""; any other operand
// (free-form values such as requestParameters.x) keeps expr's own nil test,
// so an empty string there is still a value.
type missingStrings struct {
	// chains maps each node this pass built to the operands of its chain:
	// the walk is bottom-up, so the inner part of `a ?? b ?? c` is
	// rewritten before the outer one sees it.
	chains map[ast.Node][]ast.Node
}

func (m *missingStrings) Visit(node *ast.Node) {
	b, ok := (*node).(*ast.BinaryNode)
	if !ok || b.Operator != "??" {
		return
	}
	// Every chain is rewritten as conditionals, not only typed ones: expr
	// compiles a nil-safe member access (requestParameters.x, see
	// nilSafeMembers) that is an operand of `??` without turning a typed
	// nil (a null map) into nil, so `a ?? responseElements.x` would yield
	// an empty map instead of nil when responseElements is null.
	ops := append(m.operands(b.Left), b.Right)
	out := ops[len(ops)-1]
	for i := len(ops) - 2; i >= 0; i-- {
		op := ops[i]
		var missing ast.Node = &ast.NilNode{}
		if isStringNode(op) {
			missing = &ast.StringNode{Value: ""}
		}
		out = &ast.ConditionalNode{
			Cond: &ast.BinaryNode{Operator: "!=", Left: op, Right: missing},
			Exp1: op,
			Exp2: out,
		}
	}
	ast.Patch(node, out)
	if m.chains == nil {
		m.chains = map[ast.Node][]ast.Node{}
	}
	m.chains[*node] = ops
}

// operands flattens the left side of a `??` into its chain's operands.
func (m *missingStrings) operands(n ast.Node) []ast.Node {
	if ops, ok := m.chains[n]; ok {
		return append([]ast.Node(nil), ops...)
	}
	if b, ok := n.(*ast.BinaryNode); ok && b.Operator == "??" {
		return append(m.operands(b.Left), b.Right)
	}
	return []ast.Node{n}
}

func isStringNode(n ast.Node) bool {
	t := n.Type()
	return t != nil && t.Kind() == reflect.String
}
