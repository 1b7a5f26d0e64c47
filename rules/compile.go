package rules

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/optimizer"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// nilSafeMembers makes member access on free-form values nil-safe: in
// `requestParameters.ipPermissions.items`, a missing ipPermissions gives
// nil rather than the runtime error "cannot fetch items from <nil>". Real
// records omit keys all the time, and a rule must not stop working (or fill
// the error counter) because one did. Typed fields are untouched, so a
// misspelt field name is still a load error.
type nilSafeMembers struct {
	patched bool // it rewrote something
}

func (p *nilSafeMembers) Visit(node *ast.Node) {
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
		p.patched = true
	}
}

// exprOptions are the options every rule expression compiles with.
// Their patches (the names' expander) run before the compile's own, so a
// macro's body is patched like the rest of the expression.
func exprOptions(extra ...expr.Option) []expr.Option {
	opts := append([]expr.Option{expr.Env(cloudtrail.Event{})}, extra...)
	opts = append(opts, expr.Patch(&nilSafeMembers{}), expr.Patch(&missingStrings{}))
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
	// tree is the expression parsed, its names substituted, patched,
	// type-checked and optimized (compile): what the Go forms and the
	// index read, and what its bytecode is compiled from.
	tree *parser.Tree
	// conf is the configuration it was checked with, for the bytecode.
	conf *conf.Config
	// code is its bytecode, compiled on first use (see bytecode).
	code    atomic.Pointer[vm.Program]
	codeErr error // from the bytecode compile; set before code
	fields  cloudtrail.Fields
	// reads is fields split by how the program reads them (memberReads),
	// made when the VM first runs the program (most never do).
	reads atomic.Pointer[lazyReads]
	pred  *pred // the condition in Go, or a guard of it (predicate.go); nil for values
	// value is a value expression's string value in Go (valueOf), when
	// it has one; else dyn may be its value in Go (dynOf); see runText.
	value func(*cloudtrail.Event) string
	dyn   dynFunc
	// budgeted: the program calls the evaluation budget's functions
	// (budget.go), so runProgram must register its evaluations.
	budgeted bool
	// lazy is set for a built-in pack's expression that compiles on
	// first use (a load without tests): until then, of a condition only
	// fields (from the snapshot, builtin_exprs.go) is set, of a value
	// nothing, and load compiles the rest.
	lazy  *lazyExpr
	ready atomic.Bool  // lazy's compile is done (see load)
	snap  *builtinExpr // the snapshot a lazy condition was made from
}

// lazyExpr is what a lazy program compiles from on first use.
type lazyExpr struct {
	src     string
	names   *names // the load's, complete and no longer changing
	asBool  bool   // a condition (else a value)
	trusted bool   // not admitted against the budget again (names.trusted)
	mu      sync.Mutex
	err     error // from the compile; set before program.ready
}

// lazyProgram returns a condition of a built-in pack that compiles when it
// is first run (see program.load), reading fields (what the snapshot says
// it reads) until then.
func lazyProgram(src string, n *names, fields cloudtrail.Fields) *program {
	return &program{fields: fields, lazy: &lazyExpr{src: src, names: n, asBool: true, trusted: true}}
}

// lazyValue returns a value expression (summary placeholder, dedup key,
// group_by) that compiles with n when first evaluated (runText), admitted
// then unless trusted. A load without tests does so for the built-in
// packs: it evaluates them only for the rules that alert.
func lazyValue(src string, n *names, trusted bool) *program {
	return &program{lazy: &lazyExpr{src: src, names: n, trusted: trusted}}
}

// load compiles a lazy program the first time it is asked, on any
// goroutine; after it returns nil, every field of p is set. A program
// that is not lazy is ready.
func (p *program) load() error {
	if p.lazy == nil {
		return nil
	}
	if p.ready.Load() {
		return p.lazy.err
	}
	return p.compileLazy()
}

func (p *program) compileLazy() error {
	l := p.lazy
	l.mu.Lock()
	defer l.mu.Unlock()
	if p.ready.Load() {
		return l.err
	}
	// Compiled as the loader would have; a trusted one is not admitted
	// again: the loads with tests admit every built-in expression.
	var q *program
	var err error
	if l.asBool {
		q, err = compileConditionAs(l.src, l.names, l.trusted)
	} else {
		q, err = compileValueAs(l.src, l.names, l.trusted)
	}
	if err != nil {
		l.err = err
	} else {
		p.tree, p.conf, p.fields, p.pred, p.budgeted = q.tree, q.conf, q.fields, q.pred, q.budgeted
		p.value, p.dyn = q.value, q.dyn
	}
	p.ready.Store(true)
	return l.err
}

// Node returns the program's checked, optimized expression tree (nil for a
// lazy program that does not compile).
func (p *program) Node() ast.Node {
	if p.load() != nil {
		return nil
	}
	return p.tree.Node
}

// bytecode returns the program's bytecode for expr's VM, compiling it on
// first use (see compileExpr): a condition that compilePred decides
// exactly, and a value with a Go form, never use it but in the tests that
// hold the Go forms to the VM, and most other rules are never offered a
// record that gets past their guards and the index.
func (p *program) bytecode() (*vm.Program, error) {
	if code := p.code.Load(); code != nil {
		return code, nil
	}
	if err := p.load(); err != nil {
		return nil, err
	}
	compileMu.Lock()
	defer compileMu.Unlock()
	if code := p.code.Load(); code != nil || p.codeErr != nil {
		return code, p.codeErr
	}
	code, err := compiler.Compile(p.tree, p.conf)
	if err != nil {
		p.codeErr = err
		return nil, err
	}
	p.code.Store(code)
	return code, nil
}

// exprReads returns the lazy event fields that node reads (any
// identifier that names one: a variable that happens to share a field's
// name only costs a decode; all of them for $env), and whether it loads
// $env, which expr compiles to OpLoadEnv. The budget's patch passes $env
// to its functions only to know whose budget to charge: those read no
// field, and only they (and a rule that names $env itself) load it.
func exprReads(node ast.Node) (fields cloudtrail.Fields, env bool) {
	var v readsVisitor
	ast.Walk(&node, &v)
	if v.envs > v.budgetEnvs {
		v.fields |= cloudtrail.FieldsOf(envIdent)
	}
	return v.fields, v.envs > 0
}

// fieldsRead is exprReads' fields.
func fieldsRead(node ast.Node) cloudtrail.Fields {
	f, _ := exprReads(node)
	return f
}

type readsVisitor struct {
	fields cloudtrail.Fields
	// envs counts the $env identifiers, budgetEnvs those that are the
	// first argument of a budgeted function.
	envs, budgetEnvs int
}

func (v *readsVisitor) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		if n.Value == envIdent {
			v.envs++
		} else {
			v.fields |= cloudtrail.FieldsOf(n.Value)
		}
	case *ast.CallNode:
		if len(n.Arguments) == 0 {
			return
		}
		if id, ok := n.Callee.(*ast.IdentifierNode); ok && strings.HasPrefix(id.Value, fnBuild) {
			if env, ok := n.Arguments[0].(*ast.IdentifierNode); ok && env.Value == envIdent {
				v.budgetEnvs++
			}
		}
	}
}

// compileCondition compiles a rule condition to a boolean program, with
// the lists and macros of n (which may be nil).
func compileCondition(src string, n *names) (*program, error) {
	return compileConditionAs(src, n, n != nil && n.trustedFor(src))
}

// compileConditionAs is compileCondition, the expression not admitted
// against the budget again when trusted (see names.trusted).
func compileConditionAs(src string, n *names, trusted bool) (*program, error) {
	p, err := compileExpr(src, n, true, trusted)
	if err != nil {
		return nil, err
	}
	p.pred = compilePred(p.Node())
	return p, nil
}

// compileValue compiles an expression whose value is rendered (summary
// placeholders, dedup keys), with the lists and macros of n (or nil).
func compileValue(src string, n *names) (*program, error) {
	return compileValueAs(src, n, n != nil && n.trustedFor(src))
}

// compileValueAs is compileValue, the expression not admitted against the
// budget again when trusted (see names.trusted).
func compileValueAs(src string, n *names, trusted bool) (*program, error) {
	p, err := compileExpr(src, n, false, trusted)
	if err != nil {
		return nil, err
	}
	if p.fields == 0 {
		p.value, _ = valueOf(p.Node())
	}
	if p.value == nil {
		p.dyn, _ = dynOf(p.Node())
	}
	return p, nil
}

// runText evaluates a value expression and formats its value with format,
// which must write a string as itself: without the VM, or boxing the
// string, when the expression has a Go form (valueOf), and without the VM
// when it has a Go form of its value that can give it (dynOf).
func runText(p *program, ev *cloudtrail.Event, format func(any) string) (string, error) {
	if p.lazy != nil {
		if err := p.load(); err != nil {
			return "", err
		}
	}
	if p.value != nil {
		return p.value(ev), nil
	}
	if p.dyn != nil && ev != nil {
		if p.fields != 0 {
			if err := ev.Need(p.fields); err != nil {
				return "", err
			}
		}
		if v, ok := p.dyn(ev); ok {
			return format(v), nil
		}
	}
	v, err := run(p, ev)
	if err != nil {
		return "", err
	}
	return format(v), nil
}

// compileExpr compiles src with the evaluation budget (budget.go). It is
// compiled as written only when that fails, so that its error is about
// what the author wrote, not about the budget's rewriting. Its bytecode is
// compiled now only when the budget must run it to admit it, or when n
// asks for every program's (a load that checks everything: validate,
// test); else on first use, which for most programs, decided in Go, never
// comes (the compile of a type-checked tree fails only on a bug of expr's).
func compileExpr(src string, n *names, asBool, trusted bool) (*program, error) {
	p, err := compileBounded(src, n, asBool, trusted)
	if err == nil && n != nil && n.eagerCode {
		_, err = p.bytecode()
	}
	if err != nil {
		if _, perr := compile(src, n, asBool, false); perr != nil {
			err = perr
		}
		if fe, ok := err.(*file.Error); ok {
			return nil, &compileError{Line: fe.Line, Column: fe.Column + 1, Msg: fe.Message}
		}
		return nil, &compileError{Line: 1, Column: 1, Msg: err.Error()}
	}
	return p, nil
}

// compile parses src, substitutes the lists and macros of n (which may be
// nil), applies the patches every expression gets (nilSafeMembers,
// missingStrings, and with budget the budget's), type-checks and
// optimizes it: what expr.Compile(src, expr.Env(cloudtrail.Event{}),
// expr.Patch(expander), expr.Patch(&nilSafeMembers{}),
// expr.Patch(&missingStrings{}), [expr.Patch(&budgetPatch{}),] helper and
// budget functions[, expr.AsBool()]) does before it compiles bytecode,
// which the program does when it needs it (bytecode).
// TestCompileIsExprCompile holds it to expr.Compile.
//
// Names are substituted first, so a macro's body is patched like the rest
// of the expression. expr's own patch loop type-checks the whole tree
// before each patch, twice, and once more at the end; here it is checked
// before the first patch and again only after a patch rewrote it (most
// conditions, comparisons of typed fields, are checked once). Compiles take turns:
// they share four configurations (with and without the budget, for
// conditions and values), built once, whose type caches fill as they
// check: expr makes a new configuration for every compile, and declaring
// the environment and some fifty functions was a third of the time the
// built-in rules took to load.
func compile(src string, n *names, asBool, budget bool) (*program, error) {
	c := exprConfig(budget, asBool)
	compileMu.Lock()
	defer compileMu.Unlock()
	var tree *parser.Tree
	if n != nil && n.builtinTrees {
		tree = builtinTreeOf(src) // parsed when the snapshot was made
	}
	if tree == nil {
		var err error
		if tree, err = parser.ParseWithConfig(src, c); err != nil {
			return nil, err
		}
	}
	if n != nil {
		(&expander{names: n}).expand(&tree.Node)
	}
	nilSafe, missing, bounds := &nilSafeMembers{}, &missingStrings{}, &budgetPatch{}
	patches := []struct {
		ast.Visitor
		patched func() bool
	}{
		{nilSafe, func() bool { return nilSafe.patched }},
		{missing, func() bool { return missing.chains != nil }},
		{bounds, func() bool { return bounds.patched }},
	}
	if !budget {
		patches = patches[:2]
	}
	// The patches read the nodes' types: the tree is checked before each,
	// unless none rewrote it since it was last checked.
	var chk checker.Checker
	var checkErr error
	changed := true
	for _, patch := range patches {
		if changed {
			_, checkErr = chk.Check(tree, c)
		}
		ast.Walk(&tree.Node, patch)
		changed = patch.patched()
	}
	if changed {
		_, checkErr = chk.Check(tree, c)
	}
	if checkErr != nil {
		return nil, checkErr
	}
	if c.Optimize {
		if err := optimizer.Optimize(&tree.Node, c); err != nil {
			var fileError *file.Error
			if errors.As(err, &fileError) {
				return nil, fileError.Bind(tree.Source)
			}
			return nil, err
		}
	}
	fields, env := exprReads(tree.Node)
	return &program{tree: tree, conf: c, fields: fields, budgeted: env}, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

var compileMu sync.Mutex

// exprConfig returns the configuration expressions compile with, with or
// without the budget's functions, for conditions or values: the
// environment and the helpers, the budget's functions, and for conditions
// a boolean result. Each of the four is built when first asked for (a
// replay whose rules are the built-in packs' compiles most often only
// budgeted conditions): building one is a fifth of a millisecond.
func exprConfig(budget, cond bool) *conf.Config {
	b, k := b2i(budget), b2i(cond)
	exprConfigOnce[b][k].Do(func() {
		c := conf.CreateNew()
		c.WithEnv(cloudtrail.Event{})
		for _, op := range helperOptions() {
			op(c)
		}
		if budget {
			for _, op := range budgetFunctions() {
				op(c)
			}
		}
		if cond {
			expr.AsBool()(c)
		}
		c.Check()
		exprConfigs[b][k] = c
	})
	return exprConfigs[b][k]
}

var (
	exprConfigOnce [2][2]sync.Once
	exprConfigs    [2][2]*conf.Config // by [budget][condition]
)

// CompileCondition compiles a stand-alone condition in the rule expression
// language, as `trailwatch search --where` does.
func CompileCondition(src string) (*Condition, error) {
	p, err := compileCondition(src, nil)
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
	if p.lazy != nil {
		if err := p.load(); err != nil {
			return nil, err
		}
	}
	if p.pred != nil && ev != nil {
		// The Go form first: it reads (and decodes, when it must) only
		// the lazy fields it looks at, so a guard that fails or an exact
		// form decides without decoding the rest (see memberEquals).
		if ok := p.pred.fn(ev); !ok || p.pred.exact {
			if p.fields != 0 {
				if err := ev.Need(0); err != nil {
					return nil, err
				}
			}
			return ok, nil
		}
	}
	if p.fields != 0 {
		if err := needFor(p, ev); err != nil {
			return nil, err
		}
	}
	return runVM(p, ev)
}

// needFor decodes the lazy fields of ev that p reads in the VM: whole, or
// only the members it names (memberReads).
func needFor(p *program, ev *cloudtrail.Event) error {
	r := p.reads.Load()
	if r == nil {
		// Two goroutines may both make it: the same, either kept.
		r = new(lazyReads)
		r.whole, r.parts = memberReads(p.Node(), p.fields)
		p.reads.Store(r)
	}
	if err := ev.Need(r.whole); err != nil {
		return err
	}
	for _, m := range r.parts {
		if err := ev.NeedMembers(m.field, m.keys); err != nil {
			return err
		}
	}
	return nil
}

// runVM evaluates p on ev in expr's VM (ev's lazy fields p reads decoded).
func runVM(p *program, ev *cloudtrail.Event) (any, error) {
	code, err := p.bytecode()
	if err != nil {
		return nil, err
	}
	m := vmPool.Get().(*vm.VM)
	out, err := runProgram(m, code, p.budgeted, ev)
	vmPool.Put(m)
	return out, err
}
