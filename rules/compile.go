package rules

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/optimizer"
	"github.com/expr-lang/expr/vm"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// nilSafeMembers makes member access on free-form values nil-safe: in
// `requestParameters.ipPermissions.items`, a missing ipPermissions gives
// nil rather than the runtime error "cannot fetch items from <nil>". Real
// records omit keys all the time, and a rule must not stop working (or fill
// the error counter) because one did. Typed fields are untouched, so a
// misspelt field name is still a load error.
type nilSafeMembers struct{}

func (nilSafeMembers) Visit(node *ast.Node) {
	m, ok := (*node).(*ast.MemberNode)
	if !ok || m.Optional {
		return
	}
	t := m.Node.Type()
	if t == nil {
		return
	}
	switch t.Kind() {
	case reflect.Map, reflect.Interface:
		m.Optional = true
		ast.Patch(node, &ast.ChainNode{Node: m})
	}
}

// exprOptions are the options every rule expression compiles with.
// Their patches (the names' expander) run before the compile's own, so a
// macro's body is patched like the rest of the expression.
func exprOptions(extra ...expr.Option) []expr.Option {
	opts := append([]expr.Option{expr.Env(cloudtrail.Event{})}, extra...)
	opts = append(opts, expr.Patch(nilSafeMembers{}), expr.Patch(&missingStrings{}))
	return append(opts, helperOptions()...)
}

// compileError is an expression that failed to compile, with the 1-based
// line and column inside the expression's own text.
type compileError struct {
	Line, Column int
	Msg          string
}

func (e *compileError) Error() string {
	return fmt.Sprintf("%d:%d: %s", e.Line, e.Column, e.Msg)
}

// program is a compiled expression and the lazily decoded event fields it
// reads (see cloudtrail.Event.Need): run decodes those before it runs.
type program struct {
	*vm.Program
	fields cloudtrail.Fields
	pred   *pred // the condition in Go, or a guard of it (predicate.go); nil for values
	// value is a value expression's string value in Go (valueOf), when
	// it has one; see runText.
	value func(*cloudtrail.Event) string
	// budgeted: the program calls the evaluation budget's functions
	// (budget.go), so runProgram must register its evaluations.
	budgeted bool
}

// fieldsRead returns the lazy event fields that node reads: any
// identifier that names one (a variable that happens to share a field's
// name only costs a decode), and all of them for $env.
func fieldsRead(node ast.Node) cloudtrail.Fields {
	skip := budgetEnvs{}
	ast.Walk(&node, skip)
	v := fieldVisitor{skip: skip}
	ast.Walk(&node, &v)
	return v.fields
}

type fieldVisitor struct {
	fields cloudtrail.Fields
	skip   map[ast.Node]bool
}

func (v *fieldVisitor) Visit(node *ast.Node) {
	if id, ok := (*node).(*ast.IdentifierNode); ok && !v.skip[id] {
		v.fields |= cloudtrail.FieldsOf(id.Value)
	}
}

// budgetEnvs finds the $env arguments of the budget's functions
// (budget.go): they are passed $env only to know whose budget to charge,
// and read no field.
type budgetEnvs map[ast.Node]bool

func (b budgetEnvs) Visit(node *ast.Node) {
	n, ok := (*node).(*ast.CallNode)
	if !ok || len(n.Arguments) == 0 {
		return
	}
	if id, ok := n.Callee.(*ast.IdentifierNode); ok && strings.HasPrefix(id.Value, fnBuild) {
		if env, ok := n.Arguments[0].(*ast.IdentifierNode); ok && env.Value == envIdent {
			b[env] = true
		}
	}
}

// compileCondition compiles a rule condition to a boolean program.
func compileCondition(src string, extra ...expr.Option) (*program, error) {
	p, err := compileExpr(src, append([]expr.Option{expr.AsBool()}, extra...)...)
	if err != nil {
		return nil, err
	}
	p.pred = compilePred(p.Node())
	return p, nil
}

// compileValue compiles an expression whose value is rendered (summary
// placeholders, dedup keys).
func compileValue(src string, extra ...expr.Option) (*program, error) {
	p, err := compileExpr(src, extra...)
	if err != nil {
		return nil, err
	}
	if p.fields == 0 {
		p.value, _ = valueOf(p.Node())
	}
	return p, nil
}

// runText evaluates a value expression and formats its value with format,
// which must write a string as itself: without the VM, or boxing the
// string, when the expression has a Go form (valueOf).
func runText(p *program, ev *cloudtrail.Event, format func(any) string) (string, error) {
	if p.value != nil {
		return p.value(ev), nil
	}
	v, err := run(p, ev)
	if err != nil {
		return "", err
	}
	return format(v), nil
}

func compileExpr(src string, extra ...expr.Option) (*program, error) {
	// The program that runs is the bounded one (budget.go). An expression
	// is compiled as written only when that fails, so that its error is
	// about what the author wrote, not about the budget's rewriting.
	bounded, err := compileBounded(src, extra)
	if err != nil {
		if _, perr := expr.Compile(src, exprOptions(extra...)...); perr != nil {
			err = perr
		}
		if fe, ok := err.(*file.Error); ok {
			return nil, &compileError{Line: fe.Line, Column: fe.Column + 1, Msg: fe.Message}
		}
		return nil, &compileError{Line: 1, Column: 1, Msg: err.Error()}
	}
	return &program{Program: bounded, fields: fieldsRead(bounded.Node()), budgeted: budgeted(bounded)}, nil
}

// compile is expr.Compile(src, exprOptions(opts...)...), and with budget
// also with the budget's patch and functions first in opts (see
// compileBounded), without building the options every expression shares
// again: expr makes a new configuration for every compile, and declaring
// the environment and some fifty functions was a third of the time the
// built-in rules took to load. Compiles take turns: the shared
// configuration's type cache is filled as they check.
func compile(src string, budget bool, opts ...expr.Option) (*vm.Program, error) {
	compileMu.Lock()
	defer compileMu.Unlock()
	base := sharedConfig()
	c := base.Config
	c.Functions = maps.Clone(base.Functions)
	c.Builtins = maps.Clone(base.Builtins)
	c.ConstFns = maps.Clone(base.ConstFns)
	c.Disabled = maps.Clone(base.Disabled)
	c.Visitors = nil
	for _, op := range opts {
		op(&c)
	}
	// The patches opts bring (the names' expander) run first, so that a
	// macro's body, substituted into the expression, is patched like the
	// rest of it.
	c.Visitors = append(c.Visitors[:len(c.Visitors):len(c.Visitors)], nilSafeMembers{}, &missingStrings{})
	if budget {
		c.Visitors = append(c.Visitors, budgetPatch{})
		maps.Copy(c.Functions, base.budget)
	}
	// What expr.Compile does with its configuration.
	for name := range c.Disabled {
		delete(c.Builtins, name)
	}
	c.Check()
	tree, err := checker.ParseCheck(src, &c)
	if err != nil {
		return nil, err
	}
	if c.Optimize {
		if err := optimizer.Optimize(&tree.Node, &c); err != nil {
			var fileError *file.Error
			if errors.As(err, &fileError) {
				return nil, fileError.Bind(tree.Source)
			}
			return nil, err
		}
	}
	return compiler.Compile(tree, &c)
}

var compileMu sync.Mutex

// sharedConfiguration is the configuration every expression starts from:
// the environment and the helpers, and the budget's functions apart.
type sharedConfiguration struct {
	conf.Config
	budget conf.FunctionsTable
}

var sharedConfig = sync.OnceValue(func() *sharedConfiguration {
	c := conf.CreateNew()
	c.WithEnv(cloudtrail.Event{})
	for _, op := range helperOptions() {
		op(c)
	}
	b := conf.CreateNew()
	for _, op := range budgetFunctions() {
		op(b)
	}
	return &sharedConfiguration{Config: *c, budget: b.Functions}
})

// CompileCondition compiles a stand-alone condition in the rule expression
// language, as `trailwatch search --where` does.
func CompileCondition(src string) (*Condition, error) {
	p, err := compileCondition(src)
	if err != nil {
		return nil, err
	}
	return &Condition{program: p}, nil
}

// Condition is a compiled boolean expression over an Event. It is safe for
// concurrent use.
type Condition struct {
	program *program
}

// Eval runs the condition on ev.
func (c *Condition) Eval(ev *cloudtrail.Event) (bool, error) {
	out, err := run(c.program, ev)
	if err != nil {
		return false, err
	}
	b, _ := out.(bool)
	return b, nil
}

// vmPool reuses expr virtual machines: expr.Run makes a new one (and its
// stack) on every call, which is most of a rule evaluation's allocations.
var vmPool = sync.Pool{New: func() any { return new(vm.VM) }}

// run evaluates a compiled program on ev: a condition in Go when it can
// (see compilePred), else with a pooled VM.
func run(p *program, ev *cloudtrail.Event) (any, error) {
	if p.fields != 0 {
		if err := ev.Need(p.fields); err != nil {
			return nil, err
		}
	}
	if p.pred != nil && ev != nil {
		if ok := p.pred.fn(ev); !ok || p.pred.exact {
			return ok, nil
		}
	}
	return runVM(p, ev)
}

// runVM evaluates p on ev in expr's VM (ev's lazy fields p reads decoded).
func runVM(p *program, ev *cloudtrail.Event) (any, error) {
	m := vmPool.Get().(*vm.VM)
	out, err := runProgram(m, p.Program, p.budgeted, ev)
	vmPool.Put(m)
	return out, err
}
