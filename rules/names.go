package rules

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"gopkg.in/yaml.v3"
)

// names holds the named lists and macros that rule files define, as Falco
// rule authors know them: a list is a named constant array
// (`awsRegion not in allowed_regions`), a macro a named reusable condition
// (`console_success && ...`). Both are substituted into expressions at
// compile time, so using them costs nothing per event.
type names struct {
	lists     map[string][]any
	listPos   map[string]Position
	macros    map[string]*macro
	macroList []string
	// values holds the value expressions compiled with these names, by
	// source: summaries repeat the same placeholders ({{ sourceIPAddress }},
	// {{ principal(userIdentity) }}) hundreds of times. lazyValues holds
	// the built-in packs' that compile on first use, the same way.
	values     map[string]compiledValue
	lazyValues map[string]*program
	// eagerCode: compile every program's bytecode as it loads (see
	// compileExpr), for a load that checks everything.
	eagerCode bool
	// trusted: the expressions compiling now are a built-in pack's, in a
	// load without tests (those that use no list the configuration
	// replaces: trustedFor):
	// the loads with tests (trailwatch test and validate, the package's
	// tests) admit every one of them against the evaluation budget, with
	// these same lists, so compileBounded skips admission (and the
	// bytecode compile it needs; the bytecode then compiles on first use,
	// as other programs' does). The loader sets it rule by rule.
	trusted bool
	// builtinTrees: take the parse trees of built-in expressions from
	// their snapshot (builtinTreeOf), in a load that uses the snapshots.
	builtinTrees bool
	// overridden are the lists the configuration replaces (Options.Lists).
	overridden map[string][]any
}

// usesOverridden reports whether src, a built-in expression, uses a list
// the configuration replaces (itself or through macros), as the snapshot
// of its tree records; an expression the snapshot lacks is taken to.
// Such an expression is compiled and admitted as a user's is: the loads
// with tests checked it with the packs' own lists only.
func (n *names) usesOverridden(src string) bool {
	if len(n.overridden) == 0 {
		return false
	}
	t := builtinTreeAt(src)
	if t == nil {
		return true
	}
	for _, l := range t.lists {
		if _, ok := n.overridden[l]; ok {
			return true
		}
	}
	return false
}

// trustedFor reports whether src, compiled now, is a built-in expression
// that the loads with tests admitted as it stands (names.trusted).
func (n *names) trustedFor(src string) bool {
	return n.trusted && !n.usesOverridden(src)
}

type compiledValue struct {
	p   *program
	err error
}

// compileValue is compileValue(src, n), once for each src; for a built-in
// pack's expression in a load without tests (n.trusted), lazyValue. The
// names must be complete (every file's lists and macros, the overrides)
// before the first call; programs are shared.
func (n *names) compileValue(src string) (*program, error) {
	if n.trustedFor(src) {
		return n.lazyValue(src), nil
	}
	if c, ok := n.values[src]; ok {
		return c.p, c.err
	}
	p, err := compileValue(src, n)
	if n.values == nil {
		n.values = map[string]compiledValue{}
	}
	n.values[src] = compiledValue{p, err}
	return p, err
}

// lazyValue is lazyValue(src, n, n.trustedFor(src)), once for each src.
func (n *names) lazyValue(src string) *program {
	if p, ok := n.lazyValues[src]; ok {
		return p
	}
	p := lazyValue(src, n, n.trustedFor(src))
	if n.lazyValues == nil {
		n.lazyValues = make(map[string]*program, 128) // the built-in packs have some 130
	}
	n.lazyValues[src] = p
	return p
}

type macro struct {
	name string
	src  string
	pos  Position
	node *yaml.Node
	f    File
}

func newNames() *names {
	return &names{lists: map[string][]any{}, listPos: map[string]Position{}, macros: map[string]*macro{}}
}

var nameRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z][a-z0-9_]*$`) })

func (l *loader) checkName(f File, k *yaml.Node, kind string) bool {
	switch {
	case reservedNames()[k.Value]:
		l.errorf(f.Name, k, "", "%s name %q is a CloudTrail field or helper function name", kind, k.Value)
	case !nameRe().MatchString(k.Value):
		l.errorf(f.Name, k, "", "%s name %q must be snake_case (lower-case letters, digits, underscores)", kind, k.Value)
	case l.names.lists[k.Value] != nil || l.names.macros[k.Value] != nil:
		prev := l.names.listPos[k.Value]
		if m := l.names.macros[k.Value]; m != nil {
			prev = m.pos
		}
		l.errorf(f.Name, k, "", "%s %q is already defined at %s (lists are overridden in the configuration's `lists:`)", kind, k.Value, prev)
	default:
		return true
	}
	return false
}

func (l *loader) lists(f File, n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		l.errorf(f.Name, n, "", "`lists` must be a mapping of name: [values]")
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !l.checkName(f, k, "list") {
			continue
		}
		if v.Kind != yaml.SequenceNode {
			l.errorf(f.Name, v, "", "list %q must be a sequence of values", k.Value)
			continue
		}
		var values []any
		if err := v.Decode(&values); err != nil {
			l.errorf(f.Name, v, "", "list %q: %v", k.Value, err)
			continue
		}
		for j, e := range values {
			switch e.(type) {
			case string, int, float64, bool:
			default:
				l.errorf(f.Name, v.Content[j], "", "list %q: entries must be strings, numbers or booleans", k.Value)
			}
		}
		l.names.lists[k.Value] = normalizeList(values)
		l.names.listPos[k.Value] = Position{File: f.Name, Line: k.Line, Column: k.Column}
	}
}

// normalizeList makes numbers float64, as JSON numbers in events are, so
// `requestParameters.fromPort in sensitive_ports` compares like with like.
func normalizeList(values []any) []any {
	out := make([]any, len(values))
	for i, v := range values {
		switch x := v.(type) {
		case int:
			out[i] = float64(x)
		case int64:
			out[i] = float64(x)
		default:
			out[i] = v
		}
	}
	return out
}

func (n *names) listNames() []string {
	out := make([]string, 0, len(n.lists))
	for k := range n.lists {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (l *loader) macros(f File, n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		l.errorf(f.Name, n, "", "`macros` must be a mapping of name: condition")
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !l.checkName(f, k, "macro") {
			continue
		}
		if v.Kind != yaml.ScalarNode {
			l.errorf(f.Name, v, "", "macro %q must be a condition (a string)", k.Value)
			continue
		}
		l.names.macros[k.Value] = &macro{name: k.Value, src: v.Value, node: v, f: f,
			pos: Position{File: f.Name, Line: k.Line, Column: k.Column}}
		l.names.macroList = append(l.names.macroList, k.Value)
	}
}

// checkMacros compiles every macro once, as a condition, so a broken macro
// is reported at its own definition (and once), and detects cycles.
func (n *names) checkMacros(l *loader) {
	for _, name := range n.macroList {
		m := n.macros[name]
		if m.f.builtin && l.builtinExprs && !n.usesOverridden(m.src) {
			// The snapshot's conditions were compiled with it: it
			// compiles (TestBuiltinExprs).
			continue
		}
		if _, err := compileCondition(m.src, n); err != nil {
			ce, ok := err.(*compileError)
			if !ok {
				l.errorf(m.f.Name, m.node, "", "macro %q: %v", name, err)
				continue
			}
			l.exprError(m.f, m.node, "", ce.Line, ce.Column, fmt.Sprintf("macro %q: %s", name, ce.Msg))
			// Keep later rules from repeating the same problem.
			m.src = "false"
		}
	}
}

// expander replaces identifiers naming a list with the list's constant
// value and identifiers naming a macro with the macro's expression, except
// where they name a `let` variable: in `let doc = ...; body`, doc in body
// is the variable, whatever lists and macros are called.
type expander struct {
	names *names
	stack []string
	bound map[*ast.IdentifierNode]bool // uses of let variables
}

// expand substitutes the lists and macros in the tree at node.
func (e *expander) expand(node *ast.Node) {
	ast.Walk(node, visitFunc(func(n *ast.Node) {
		v, ok := (*n).(*ast.VariableDeclaratorNode)
		if !ok {
			return
		}
		// Every identifier named v.Name in its body refers to v or to an
		// inner let of the same name: to a variable either way. Those in
		// v.Value refer to what the name meant outside.
		ast.Walk(&v.Expr, visitFunc(func(m *ast.Node) {
			if id, ok := (*m).(*ast.IdentifierNode); ok && id.Value == v.Name {
				if e.bound == nil {
					e.bound = map[*ast.IdentifierNode]bool{}
				}
				e.bound[id] = true
			}
		}))
	}))
	ast.Walk(node, e)
}

// visitFunc is an ast.Visitor made of a function.
type visitFunc func(*ast.Node)

func (f visitFunc) Visit(n *ast.Node) { f(n) }

func (e *expander) Visit(node *ast.Node) {
	id, ok := (*node).(*ast.IdentifierNode)
	if !ok || e.bound[id] {
		return
	}
	if l, ok := e.names.lists[id.Value]; ok {
		ast.Patch(node, &ast.ConstantNode{Value: l})
		return
	}
	m, ok := e.names.macros[id.Value]
	if !ok {
		return
	}
	for _, s := range e.stack {
		if s == id.Value {
			// A cycle: leave the identifier; the checker then reports an
			// unknown name, at the macro's definition.
			return
		}
	}
	var tree *parser.Tree
	if e.names.builtinTrees && m.f.builtin {
		tree = builtinTreeOf(m.src) // parsed when the snapshot was made
	}
	if tree == nil {
		var err error
		if tree, err = parser.Parse(m.src); err != nil {
			return
		}
	}
	e.stack = append(e.stack, id.Value)
	e.expand(&tree.Node)
	e.stack = e.stack[:len(e.stack)-1]
	ast.Patch(node, tree.Node)
}

func (l *loader) except(f File, n *yaml.Node, r *Rule) {
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		items = n.Content
	}
	for _, it := range items {
		src, ok := l.scalarString(f.Name, it, r.ID, "except entries")
		if !ok {
			continue
		}
		p := l.builtinCondition(f, src)
		if p == nil {
			var err error
			if p, err = compileCondition(src, l.names); err != nil {
				ce := err.(*compileError)
				l.exprError(f, it, r.ID, ce.Line, ce.Column, "except: "+ce.Msg)
				continue
			}
		}
		r.Except = append(r.Except, strings.TrimSpace(src))
		r.except = append(r.except, p)
	}
}
