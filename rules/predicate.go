package rules

import (
	"reflect"
	"regexp"
	"strings"
	"unsafe"

	"github.com/expr-lang/expr/ast"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// Conditions in Go. Most rule conditions, or their first conjuncts, are
// comparisons of the record's typed scalar fields with constants:
// `eventName in [...] && errorCode == ""`, `userIdentity.type == "Root"`,
// `userAgent startsWith "aws-cli/"`. In expr's VM each such comparison
// reads the field by reflection and boxes the string it reads (an
// allocation), and every run pays for the VM itself. A rule that is not
// filed under an eventName (see index) runs on every record, so that cost
// is paid per record of the trail.
//
// compilePred turns the part of a compiled condition that it understands
// into a Go function over the Event's fields (read at fixed offsets,
// nothing boxed):
//
//   - when it understands all of it, the function is the condition: run
//     returns its verdict without the VM;
//   - otherwise it may still find a guard, a necessary condition: when the
//     guard is false, the VM would return false, without a run-time error
//     (so the error counters and reports are unchanged), and run returns
//     false without the VM; when it is true, the VM decides.
//
// What it understands: &&, ||, !, the constants true and false, bool
// fields, and ==, !=, in, not in, startsWith, endsWith, contains and
// matches between string fields and string constants (or two string
// fields, for == and !=), and the helpers icontains, isIP, isPrivateIP and
// inCIDR called on a string field with constant arguments. A guard is
// taken only from what the VM evaluates before anything it does not
// understand (the left operands of && first), because only those parts
// are sure not to fail at run time. TestPredicatesAgreeWithVM holds every
// built-in rule's function to the VM on the corpus, and FuzzPredicates on
// arbitrary records.

// pred is a compiled condition, or a guard of one.
type pred struct {
	fn    func(*cloudtrail.Event) bool
	exact bool // fn is the condition itself, not only a guard
}

// compilePred returns the Go form of a compiled boolean expression's tree,
// nil when there is none.
func compilePred(node ast.Node) *pred {
	fn, exact, ok := predOf(node)
	if !ok {
		return nil
	}
	return &pred{fn: fn, exact: exact}
}

type evFunc = func(*cloudtrail.Event) bool

// predOf returns a function that is node's value (exact) or a necessary
// condition of it, which is false only when evaluating node in the VM
// gives false without an error.
func predOf(node ast.Node) (fn evFunc, exact, ok bool) {
	switch n := node.(type) {
	case *ast.BinaryNode:
		switch n.Operator {
		case "&&", "and":
			l, lexact, lok := predOf(n.Left)
			if !lok {
				return nil, false, false
			}
			if !lexact {
				// The VM evaluates the left operand first: past an
				// operand not understood, nothing is sure not to fail.
				return l, false, true
			}
			r, rexact, rok := predOf(n.Right)
			if !rok {
				return l, false, true
			}
			return func(ev *cloudtrail.Event) bool { return l(ev) && r(ev) }, rexact, true
		case "||", "or":
			l, lexact, lok := predOf(n.Left)
			if !lok {
				return nil, false, false
			}
			r, rexact, rok := predOf(n.Right)
			if !rok {
				return nil, false, false
			}
			return func(ev *cloudtrail.Event) bool { return l(ev) || r(ev) }, lexact && rexact, true
		}
		if fn, ok := comparison(n); ok {
			return fn, true, true
		}
	case *ast.UnaryNode:
		if n.Operator == "!" || n.Operator == "not" {
			inner, exact, ok := predOf(n.Node)
			if ok && exact {
				return func(ev *cloudtrail.Event) bool { return !inner(ev) }, true, true
			}
		}
	case *ast.BoolNode:
		v := n.Value
		return func(*cloudtrail.Event) bool { return v }, true, true
	case *ast.ConstantNode:
		if v, isBool := n.Value.(bool); isBool {
			return func(*cloudtrail.Event) bool { return v }, true, true
		}
	case *ast.IdentifierNode, *ast.MemberNode:
		if off, ok := fieldOffset(n, reflect.Bool); ok {
			return func(ev *cloudtrail.Event) bool { return *(*bool)(unsafe.Add(unsafe.Pointer(ev), off)) }, true, true
		}
	case *ast.CallNode:
		if fn, ok := helperPred(n); ok {
			return fn, true, true
		}
	}
	return nil, false, false
}

// comparison compiles a comparison of string operands, or of a member of
// a free-form map with a string or bool constant.
func comparison(n *ast.BinaryNode) (evFunc, bool) {
	if n.Operator == "==" || n.Operator == "!=" {
		eq, ok := memberEquals(n.Left, n.Right)
		if !ok {
			eq, ok = memberEquals(n.Right, n.Left)
		}
		if ok {
			if n.Operator == "==" {
				return eq, true
			}
			return func(ev *cloudtrail.Event) bool { return !eq(ev) }, true
		}
		l, lok := strOperand(n.Left)
		r, rok := strOperand(n.Right)
		if !lok || !rok {
			return nil, false
		}
		if n.Operator == "==" {
			return func(ev *cloudtrail.Event) bool { return l(ev) == r(ev) }, true
		}
		return func(ev *cloudtrail.Event) bool { return l(ev) != r(ev) }, true
	}
	if n.Operator == "in" {
		if in, ok := constIn(n.Left, n.Right); ok {
			return func(*cloudtrail.Event) bool { return in }, true
		}
	}
	off, ok := fieldOffset(n.Left, reflect.String)
	if !ok {
		return nil, false
	}
	field := func(ev *cloudtrail.Event) string { return *(*string)(unsafe.Add(unsafe.Pointer(ev), off)) }
	if n.Operator == "in" {
		set, ok := constStrings(n.Right)
		if !ok {
			return nil, false
		}
		if len(set) <= 4 {
			list := make([]string, 0, len(set))
			for s := range set {
				list = append(list, s)
			}
			return func(ev *cloudtrail.Event) bool {
				v := field(ev)
				for _, s := range list {
					if v == s {
						return true
					}
				}
				return false
			}, true
		}
		return func(ev *cloudtrail.Event) bool { _, in := set[field(ev)]; return in }, true
	}
	c, ok := n.Right.(*ast.StringNode)
	if !ok {
		return nil, false
	}
	s := c.Value
	switch n.Operator {
	case "startsWith":
		return func(ev *cloudtrail.Event) bool { return strings.HasPrefix(field(ev), s) }, true
	case "endsWith":
		return func(ev *cloudtrail.Event) bool { return strings.HasSuffix(field(ev), s) }, true
	case "contains":
		return func(ev *cloudtrail.Event) bool { return strings.Contains(field(ev), s) }, true
	case "matches":
		re, err := regexp.Compile(s)
		if err != nil {
			return nil, false
		}
		return func(ev *cloudtrail.Event) bool { return re.MatchString(field(ev)) }, true
	}
	return nil, false
}

// memberEquals compiles member == constant, for a member of one of the
// record's free-form maps (requestParameters.attribute, nil-safe: see
// nilSafeMembers) and a string or bool constant: expr compares them with
// runtime.Equal, which is true only for a value of the constant's type
// and equal to it (a missing key, nil, a number: false; never an error).
// Only a member of the map itself: one further down may be a member of a
// string, which the VM refuses with an error. On an event from
// DecodeHeader it reads the member from the record's bytes
// (cloudtrail.Event.Member) when it can, else decodes the map (Need): run
// calls a Go form before it decodes anything.
func memberEquals(member, constant ast.Node) (evFunc, bool) {
	base, key, ok := chainMember(member)
	if !ok {
		return nil, false
	}
	off, ok := mapFieldOffset(base)
	if !ok {
		return nil, false
	}
	id, ok := base.(*ast.IdentifierNode)
	if !ok {
		return nil, false
	}
	field := cloudtrail.FieldsOf(id.Value)
	// lookup returns what the map holds under key, decoding the map when
	// the record's bytes do not tell.
	lookup := func(ev *cloudtrail.Event) (cloudtrail.MemberKind, string, any) {
		if field != 0 {
			if kind, s := ev.Member(field, key); kind != cloudtrail.MemberUndecided {
				return kind, s, nil
			}
			if ev.Need(field) != nil {
				// Not expected after the header scan; run reports
				// the error.
				return cloudtrail.MemberMissing, "", nil
			}
		}
		return cloudtrail.MemberUndecided, "", (*(*map[string]any)(unsafe.Add(unsafe.Pointer(ev), off)))[key]
	}
	switch c := constant.(type) {
	case *ast.StringNode:
		s := c.Value
		return func(ev *cloudtrail.Event) bool {
			kind, str, v := lookup(ev)
			if kind == cloudtrail.MemberUndecided {
				str, ok := v.(string)
				return ok && str == s
			}
			return kind == cloudtrail.MemberString && str == s
		}, true
	case *ast.BoolNode:
		want := cloudtrail.MemberFalse
		if c.Value {
			want = cloudtrail.MemberTrue
		}
		b := c.Value
		return func(ev *cloudtrail.Event) bool {
			kind, _, v := lookup(ev)
			if kind == cloudtrail.MemberUndecided {
				got, ok := v.(bool)
				return ok && got == b
			}
			return kind == want
		}, true
	}
	return nil, false
}

// constIn decides `c in list` for a bool or string constant and a named
// list (a ConstantNode: see expander), as expr's runtime.In would: an
// element equal to c, of its type (`true in cis_count_failed_calls`).
func constIn(c, list ast.Node) (bool, bool) {
	var want any
	switch x := c.(type) {
	case *ast.BoolNode:
		want = x.Value
	case *ast.StringNode:
		want = x.Value
	default:
		return false, false
	}
	l, ok := list.(*ast.ConstantNode)
	if !ok {
		return false, false
	}
	elems, ok := l.Value.([]any)
	if !ok {
		return false, false
	}
	for _, e := range elems {
		if e == want { // the same dynamic type and value
			return true, true
		}
	}
	return false, true
}

// strOperand compiles a string field or a string constant.
func strOperand(n ast.Node) (func(*cloudtrail.Event) string, bool) {
	if c, ok := n.(*ast.StringNode); ok {
		s := c.Value
		return func(*cloudtrail.Event) string { return s }, true
	}
	off, ok := fieldOffset(n, reflect.String)
	if !ok {
		return nil, false
	}
	return func(ev *cloudtrail.Event) string { return *(*string)(unsafe.Add(unsafe.Pointer(ev), off)) }, true
}

// constStrings returns the strings of a constant list (a list literal, a
// named list, or the set expr's optimizer makes of a literal), when every
// element is a string: `in` compares elements of other types by other rules.
func constStrings(n ast.Node) (map[string]struct{}, bool) {
	set := map[string]struct{}{}
	switch x := n.(type) {
	case *ast.ArrayNode:
		for _, e := range x.Nodes {
			s, ok := e.(*ast.StringNode)
			if !ok {
				return nil, false
			}
			set[s.Value] = struct{}{}
		}
	case *ast.ConstantNode:
		switch v := x.Value.(type) {
		case map[string]struct{}:
			for s := range v {
				set[s] = struct{}{}
			}
		case []string:
			for _, s := range v {
				set[s] = struct{}{}
			}
		case []any:
			for _, e := range v {
				s, ok := e.(string)
				if !ok {
					return nil, false
				}
				set[s] = struct{}{}
			}
		default:
			return nil, false
		}
	default:
		return nil, false
	}
	return set, true
}

// fieldOffset returns where in an Event the field that node names lies,
// when node is a path of the Event's struct fields (by their expr names,
// through nested structs only, never a map, slice or pointer) ending in a
// field of kind k.
func fieldOffset(node ast.Node, k reflect.Kind) (uintptr, bool) {
	t, off, ok := fieldPath(node)
	if !ok || t.Kind() != k || t.Name() != k.String() {
		// t.Name() keeps out named types of kind k (none today): their
		// comparisons could be methods.
		return 0, false
	}
	return off, true
}

func fieldPath(node ast.Node) (reflect.Type, uintptr, bool) {
	switch n := node.(type) {
	case *ast.IdentifierNode:
		return structField(reflect.TypeOf(cloudtrail.Event{}), 0, n.Value)
	case *ast.MemberNode:
		if n.Optional || n.Method {
			return nil, 0, false
		}
		prop, ok := n.Property.(*ast.StringNode)
		if !ok {
			return nil, 0, false
		}
		t, off, ok := fieldPath(n.Node)
		if !ok || t.Kind() != reflect.Struct {
			return nil, 0, false
		}
		return structField(t, off, prop.Value)
	}
	return nil, 0, false
}

// structField finds the field of struct t whose expr name is name, as
// expr resolves it.
func structField(t reflect.Type, base uintptr, name string) (reflect.Type, uintptr, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || f.Anonymous {
			continue
		}
		if f.Tag.Get("expr") == name {
			return f.Type, base + f.Offset, true
		}
	}
	return nil, 0, false
}

// strPredHelpers specialize helpers called on one string with constant
// further arguments: given the constants, each returns the helper as a
// function of the string, or false when it cannot. Each shares its
// definition with the helper's own implementation.
var strPredHelpers = map[string]func(consts []string) (func(string) bool, bool){
	"icontains": func(subs []string) (func(string) bool, bool) {
		return newFoldMatcher(subs).match, true
	},
	"inCIDR": func(cidrs []string) (func(string) bool, bool) {
		m := newCIDRMatcher(cidrs)
		return m.contains, true
	},
	"isIP": func(consts []string) (func(string) bool, bool) {
		return isIP, len(consts) == 0
	},
	"isPrivateIP": func(consts []string) (func(string) bool, bool) {
		return isPrivateIP, len(consts) == 0
	},
}

// helperPred compiles a call of one of strPredHelpers on a string field
// with constant arguments.
func helperPred(n *ast.CallNode) (evFunc, bool) {
	id, ok := n.Callee.(*ast.IdentifierNode)
	if !ok || len(n.Arguments) == 0 {
		return nil, false
	}
	spec, ok := strPredHelpers[id.Value]
	if !ok {
		return nil, false
	}
	if _, isHelper := helperTable[id.Value]; !isHelper {
		return nil, false
	}
	off, ok := fieldOffset(n.Arguments[0], reflect.String)
	if !ok {
		return nil, false
	}
	var consts []any
	for _, a := range n.Arguments[1:] {
		switch x := a.(type) {
		case *ast.StringNode:
			consts = append(consts, x.Value)
		case *ast.ConstantNode:
			consts = append(consts, x.Value)
		case *ast.ArrayNode:
			for _, e := range x.Nodes {
				s, ok := e.(*ast.StringNode)
				if !ok {
					return nil, false
				}
				consts = append(consts, s.Value)
			}
		default:
			return nil, false
		}
	}
	var strs []string
	if !flattenStrings(consts, &strs) {
		return nil, false
	}
	fn, ok := spec(strs)
	if !ok {
		return nil, false
	}
	return func(ev *cloudtrail.Event) bool { return fn(*(*string)(unsafe.Add(unsafe.Pointer(ev), off))) }, true
}

// flattenStrings appends the strings of args as eachString visits them,
// and reports false if args hold anything eachString would not visit
// (the helper then skips it, and so must the compiled form: it cannot).
func flattenStrings(args []any, out *[]string) bool {
	for _, a := range args {
		switch x := a.(type) {
		case string:
			*out = append(*out, x)
		case []any:
			if !flattenStrings(x, out) {
				return false
			}
		case []string:
			*out = append(*out, x...)
		default:
			return false
		}
	}
	return true
}

// valueOf returns node's value as a Go function when node is a string
// field, a string constant, principal(userIdentity), or a conditional
// (what `a ?? b` on strings becomes, see missingStrings) of those with a
// condition compilePred decides exactly: what most summary placeholders,
// dedup keys and group_by expressions are. The VM would read the field by
// reflection and box it, and for principal box a copy of the whole
// userIdentity. TestValuesAgreeWithVM holds it to the VM.
func valueOf(node ast.Node) (func(*cloudtrail.Event) string, bool) {
	switch n := node.(type) {
	case *ast.StringNode:
		s := n.Value
		return func(*cloudtrail.Event) string { return s }, true
	case *ast.IdentifierNode, *ast.MemberNode:
		return strOperand(n)
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok || id.Value != "principal" || len(n.Arguments) != 1 {
			return nil, false
		}
		if _, isHelper := helperTable["principal"]; !isHelper {
			return nil, false
		}
		// The helper is Event.Principal of an event with that
		// userIdentity: of this event, when the argument is its own.
		t, off, ok := fieldPath(n.Arguments[0])
		if !ok || t != reflect.TypeOf(cloudtrail.UserIdentity{}) || off != unsafe.Offsetof(cloudtrail.Event{}.UserIdentity) {
			return nil, false
		}
		return (*cloudtrail.Event).Principal, true
	case *ast.ConditionalNode:
		cond, exact, ok := predOf(n.Cond)
		if !ok || !exact {
			return nil, false
		}
		a, aok := valueOf(n.Exp1)
		b, bok := valueOf(n.Exp2)
		if !aok || !bok {
			return nil, false
		}
		return func(ev *cloudtrail.Event) string {
			if cond(ev) {
				return a(ev)
			}
			return b(ev)
		}, true
	}
	return nil, false
}

// dynFunc is a value expression in Go that gives the VM's value, or false
// when the VM must decide (a value it does not handle, on which the VM
// may fail with an error).
type dynFunc = func(*cloudtrail.Event) (any, bool)

// dynOf returns node's value as a Go function (see dynFunc) when node is
// what summary placeholders, dedup keys and group_by are built of beyond
// valueOf's string forms: members of the record's free-form maps
// (requestParameters.instanceId, nil-safe: see nilSafeMembers), `??`
// chains of them (conditionals testing against nil, see missingStrings),
// conditionals that compilePred decides exactly, string constants and
// fields, str() and + of strings (checked against MaxExprString as the
// budget's functions do). Each gives the very value the VM would (the same
// dynamic type: a string, a number, a map, nil, ...), so that any format
// renders it alike; TestValuesAgreeWithVM and FuzzValues hold it to the VM.
func dynOf(node ast.Node) (dynFunc, bool) {
	switch n := node.(type) {
	case *ast.NilNode:
		return func(*cloudtrail.Event) (any, bool) { return nil, true }, true
	case *ast.IdentifierNode:
		if off, ok := mapFieldOffset(n); ok {
			return func(ev *cloudtrail.Event) (any, bool) {
				return *(*map[string]any)(unsafe.Add(unsafe.Pointer(ev), off)), true
			}, true
		}
	case *ast.ChainNode:
		node, key, ok := chainMember(n)
		if !ok {
			return nil, false
		}
		base, ok := dynOf(node)
		if !ok {
			return nil, false
		}
		return func(ev *cloudtrail.Event) (any, bool) {
			v, ok := base(ev)
			if !ok {
				return nil, false
			}
			switch x := v.(type) {
			case nil:
				return nil, true
			case map[string]any:
				return x[key], true
			}
			return nil, false // a member of a list, a string, ...: the VM's error
		}, true
	case *ast.ConditionalNode:
		cond, ok := nilTest(n.Cond)
		if !ok {
			fn, exact, ok := predOf(n.Cond)
			if !ok || !exact {
				return nil, false
			}
			cond = func(ev *cloudtrail.Event) (bool, bool) { return fn(ev), true }
		}
		a, aok := dynOf(n.Exp1)
		b, bok := dynOf(n.Exp2)
		if !aok || !bok {
			return nil, false
		}
		return func(ev *cloudtrail.Event) (any, bool) {
			c, ok := cond(ev)
			switch {
			case !ok:
				return nil, false
			case c:
				return a(ev)
			}
			return b(ev)
		}, true
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok || len(n.Arguments) == 0 || !isEnv(n.Arguments[0]) {
			break
		}
		switch {
		case (id.Value == fnConcat || id.Value == fnAdd) && len(n.Arguments) == 3:
			a, aok := dynOf(n.Arguments[1])
			b, bok := dynOf(n.Arguments[2])
			if !aok || !bok {
				return nil, false
			}
			return func(ev *cloudtrail.Event) (any, bool) {
				x, ok := a(ev)
				if !ok {
					return nil, false
				}
				y, ok := b(ev)
				if !ok {
					return nil, false
				}
				sx, xok := x.(string)
				sy, yok := y.(string)
				if !xok || !yok || len(sx)+len(sy) > MaxExprString {
					return nil, false
				}
				return sx + sy, true
			}, true
		case id.Value == fnBuild+"str" && len(n.Arguments) == 2:
			a, ok := dynOf(n.Arguments[1])
			if !ok {
				return nil, false
			}
			return func(ev *cloudtrail.Event) (any, bool) {
				v, ok := a(ev)
				if !ok || estimate(v) > MaxExprString {
					return nil, false
				}
				return toString(v), true
			}, true
		}
	}
	if fn, ok := valueOf(node); ok {
		return func(ev *cloudtrail.Event) (any, bool) { return fn(ev), true }, true
	}
	return nil, false
}

// nilTest compiles `x != nil` and `x == nil` for an x whose value is a
// member of a free-form map (which is never a typed nil: a null in the
// record is nil).
func nilTest(node ast.Node) (func(*cloudtrail.Event) (bool, bool), bool) {
	b, ok := node.(*ast.BinaryNode)
	if !ok || (b.Operator != "!=" && b.Operator != "==") {
		return nil, false
	}
	if _, ok := b.Right.(*ast.NilNode); !ok {
		return nil, false
	}
	if _, ok := b.Left.(*ast.ChainNode); !ok {
		return nil, false
	}
	x, ok := dynOf(b.Left)
	if !ok {
		return nil, false
	}
	isNil := b.Operator == "=="
	return func(ev *cloudtrail.Event) (bool, bool) {
		v, ok := x(ev)
		return (v == nil) == isNil, ok
	}, true
}

func isEnv(n ast.Node) bool {
	id, ok := n.(*ast.IdentifierNode)
	return ok && id.Value == envIdent
}

// mapFieldOffset returns where in an Event the top-level free-form map
// field that node names lies.
func mapFieldOffset(node ast.Node) (uintptr, bool) {
	t, off, ok := fieldPath(node)
	if !ok || t != reflect.TypeOf(map[string]any(nil)) {
		return 0, false
	}
	return off, true
}

// chainMember takes apart a nil-safe member access (see nilSafeMembers),
// base.key, as ChainNode{MemberNode{Optional}} with a constant key.
func chainMember(node ast.Node) (base ast.Node, key string, ok bool) {
	chain, ok := node.(*ast.ChainNode)
	if !ok {
		return nil, "", false
	}
	m, ok := chain.Node.(*ast.MemberNode)
	if !ok || !m.Optional || m.Method {
		return nil, "", false
	}
	prop, ok := m.Property.(*ast.StringNode)
	if !ok {
		return nil, "", false
	}
	return m.Node, prop.Value, true
}
