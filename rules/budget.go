package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/vm"
	"github.com/expr-lang/expr/vm/runtime"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// A rule expression is written by whoever can change the rules, and runs on
// every record: it must not be able to take the process down. expr bounds
// the elements a program allocates (its memory budget), but not the bytes
// of the strings it builds, nor its time: reduce(1..40, #acc + #acc, "ab")
// or a replace of a string by itself in a loop asked the runtime for
// terabytes, which is a fatal error, not a panic anyone can recover. So
// every expression is compiled with a patch that
//
//   - routes string concatenation (+) and the functions that build strings
//     from others (replace, repeat, join, toJSON, string, str) through
//     versions that refuse, before allocating, a string longer than
//     MaxExprString;
//   - counts every step of every loop (the bodies of all, any, map, filter,
//     reduce, ...) and every byte those functions build against a budget of
//     EvalBudget units per evaluation, and checks the clock against
//     EvalTimeout as it goes.
//
// An evaluation over its budget fails with an error wrapping ErrBudget: the
// rule counts an error for that record, and the other rules go on. An
// expression that goes over its budget on an empty record, whatever the
// record, is refused when it loads.

// Limits of one evaluation of one expression.
const (
	// MaxExprString is the longest string an expression may build.
	MaxExprString = 1 << 20
	// EvalBudget is how many units one evaluation may spend: one per step
	// of a loop, one per 64 bytes of string built.
	EvalBudget = 1_000_000
	// EvalTimeout is how long one evaluation may run, by the wall clock.
	// It is a backstop for what EvalBudget does not count (a step that
	// scans a long string): it must not fail an ordinary rule on a machine
	// so loaded that the evaluation is descheduled for a while (at 1 s a
	// 10,000-step rule failed so under a loaded -race test run).
	EvalTimeout = 5 * time.Second
)

// evalTimeout is EvalTimeout, shortened by tests of the time limit.
var evalTimeout = EvalTimeout

// bytesPerUnit is how many bytes of built string cost one unit.
const bytesPerUnit = 64

// ErrBudget is wrapped by the error of an evaluation that went over its
// budget (EvalBudget, EvalTimeout or MaxExprString).
var ErrBudget = errors.New("expression exceeds its evaluation budget")

// evalState is one evaluation's spending.
type evalState struct {
	// ev is the event it runs on. Atomic: another goroutine, whose event
	// takes the same slot, reads it while the state is released and
	// reused.
	ev    atomic.Pointer[cloudtrail.Event]
	units int64
	// deadline is set at the first look at the clock (after clockEvery
	// units): an evaluation that never gets there reads no clock.
	deadline time.Time
}

// clockEvery is how many units pass between looks at the clock.
const clockEvery = 256

// The budgeted functions get only the event the evaluation runs on (what
// the expression sees as $env), so the evaluation's state is found by the
// event's address: in one of evalSlots slots picked by it, each on its own
// cache line and taken with one compare-and-swap, or, when another
// evaluation holds that slot, in overflow. (A sync.Map entry stored and
// deleted for every evaluation, and a clock read, cost some 4% of a
// replay's CPU.) Only evaluations of programs that call the budgeted
// functions register.
const evalSlots = 64

type evalSlot struct {
	st atomic.Pointer[evalState]
	_  [56]byte
}

var (
	slots    [evalSlots]evalSlot
	overflow sync.Map // *cloudtrail.Event -> *evalState
)

var statePool = sync.Pool{New: func() any { return new(evalState) }}

// slotOf picks ev's slot from its address (Fibonacci hashing).
func slotOf(ev *cloudtrail.Event) *evalSlot {
	h := uint64(uintptr(unsafe.Pointer(ev))) * 0x9E3779B97F4A7C15
	return &slots[h>>(64-6)]
}

// evalOf returns the state of the evaluation running on ev, or nil.
func evalOf(ev *cloudtrail.Event) *evalState {
	if st := slotOf(ev).st.Load(); st != nil && st.ev.Load() == ev {
		return st
	}
	if v, ok := overflow.Load(ev); ok {
		return v.(*evalState)
	}
	return nil
}

// charge spends n units of the evaluation on env, failing once the budget
// or the time is spent. Without a registered evaluation (a program run
// outside runProgram) it only lets the caller's own size checks work.
func charge(env any, n int64) error {
	ev, ok := env.(*cloudtrail.Event)
	if !ok {
		return nil
	}
	st := evalOf(ev)
	if st == nil {
		return nil
	}
	before := st.units
	st.units += n
	if st.units > EvalBudget {
		return fmt.Errorf("%w: more than %d steps and string bytes/%d", ErrBudget, EvalBudget, bytesPerUnit)
	}
	// The clock is read every clockEvery units, not every step; the time
	// limit runs from the first read.
	if before/clockEvery != st.units/clockEvery {
		now := time.Now()
		if st.deadline.IsZero() {
			st.deadline = now.Add(evalTimeout)
		} else if now.After(st.deadline) {
			return fmt.Errorf("%w: ran longer than %s", ErrBudget, evalTimeout)
		}
	}
	return nil
}

// budgeted reports whether p calls the budgeted functions: the patch
// passes them $env, which only they (and a rule that names $env itself)
// load.
func budgeted(p *vm.Program) bool {
	if len(p.Bytecode) == 0 {
		return false
	}
	code := unsafe.Slice((*byte)(unsafe.Pointer(&p.Bytecode[0])), len(p.Bytecode))
	return bytes.IndexByte(code, byte(vm.OpLoadEnv)) >= 0
}

// runProgram runs p on ev with m, under a budget when p needs one
// (needsBudget: budgeted(p), decided when it was compiled).
func runProgram(m *vm.VM, p *vm.Program, needsBudget bool, ev *cloudtrail.Event) (any, error) {
	if ev == nil || !needsBudget || evalOf(ev) != nil {
		// No budget needed, or the same record is being evaluated
		// already (by the caller): that evaluation's budget governs.
		return m.Run(p, ev)
	}
	st := statePool.Get().(*evalState)
	st.units, st.deadline = 0, time.Time{}
	st.ev.Store(ev)
	defer func() { st.ev.Store(nil); statePool.Put(st) }()
	if slot := slotOf(ev); slot.st.CompareAndSwap(nil, st) {
		defer slot.st.Store(nil)
		return m.Run(p, ev)
	}
	if _, nested := overflow.LoadOrStore(ev, st); nested {
		// Another goroutine registered ev meanwhile: its budget governs.
		return m.Run(p, ev)
	}
	defer overflow.Delete(ev)
	return m.Run(p, ev)
}

// admitProgram refuses, at load, an expression that goes over its budget
// on an empty record: no record makes it cheaper.
func admitProgram(p *program) error {
	if !p.budgeted {
		return nil
	}
	code, err := p.bytecode()
	if err != nil {
		return err
	}
	m := vmPool.Get().(*vm.VM)
	_, err = runProgram(m, code, true, &cloudtrail.Event{})
	vmPool.Put(m)
	if errors.Is(err, ErrBudget) || (err != nil && strings.Contains(err.Error(), "memory budget exceeded")) {
		return fmt.Errorf("the expression is unbounded: on an empty record it %s", budgetReason(err))
	}
	return nil
}

// budgetReason is what an evaluation error says past expr's location.
func budgetReason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "\n"); i >= 0 {
		msg = msg[:i]
	}
	return strings.TrimPrefix(msg, "expression exceeds its evaluation budget: ")
}

// checkLen refuses a string of n bytes and charges for building it.
func checkLen(env any, what string, n int) error {
	if n > MaxExprString {
		return fmt.Errorf("%w: %s would build a string of %d bytes (at most %d)", ErrBudget, what, n, MaxExprString)
	}
	return charge(env, 1+int64(n)/bytesPerUnit)
}

// Names of the budgeted functions. A leading underscore keeps them apart
// from helpers, lists and macros, which are words.
const (
	fnStep    = "_tw_step"
	fnConcat  = "_tw_concat"
	fnAdd     = "_tw_add"
	fnBuild   = "_tw_" // + replace, repeat, join, toJSON, string, str
	envIdent  = "$env"
	stepBool  = fnStep + "_bool"
	stepInt   = fnStep + "_int"
	stepFloat = fnStep + "_float"
	stepStr   = fnStep + "_string"
	stepAny   = fnStep + "_any"
)

// builders are the functions that build a string from others, each with
// its size estimate (before allocating) and its implementation.
var builders = map[string]func(env any, args []any) (any, error){
	"replace": func(env any, args []any) (any, error) {
		s, old, nw := args[0].(string), args[1].(string), args[2].(string)
		n := -1
		if len(args) == 4 {
			n = runtime.ToInt(args[3])
		}
		count := strings.Count(s, old)
		if n >= 0 && n < count {
			count = n
		}
		if err := checkLen(env, "replace", len(s)+count*(len(nw)-len(old))); err != nil {
			return nil, err
		}
		return strings.Replace(s, old, nw, n), nil
	},
	"repeat": func(env any, args []any) (any, error) {
		s, n := args[0].(string), runtime.ToInt(args[1])
		if n < 0 {
			return nil, fmt.Errorf("invalid argument for repeat (expected positive integer, got %d)", n)
		}
		if len(s) > 0 && n > MaxExprString/len(s) {
			return nil, fmt.Errorf("%w: repeat would build a string of more than %d bytes", ErrBudget, MaxExprString)
		}
		if err := checkLen(env, "repeat", len(s)*n); err != nil {
			return nil, err
		}
		return strings.Repeat(s, n), nil
	},
	"join": func(env any, args []any) (any, error) {
		glue := ""
		if len(args) == 2 {
			glue, _ = args[1].(string)
		}
		var parts []string
		switch xs := args[0].(type) {
		case []string:
			parts = xs
		case []any:
			parts = make([]string, len(xs))
			for i, x := range xs {
				s, ok := x.(string)
				if !ok {
					return nil, fmt.Errorf("invalid argument for join (expected a list of strings, got %T)", x)
				}
				parts[i] = s
			}
		default:
			return nil, fmt.Errorf("invalid argument for join (expected a list, got %T)", args[0])
		}
		n := 0
		for _, p := range parts {
			n += len(p) + len(glue)
			if n > MaxExprString+len(glue) {
				break
			}
		}
		if err := checkLen(env, "join", n-len(glue)); err != nil {
			return nil, err
		}
		return strings.Join(parts, glue), nil
	},
	"toJSON": func(env any, args []any) (any, error) {
		if err := checkLen(env, "toJSON", estimate(args[0])); err != nil {
			return nil, err
		}
		b, err := json.MarshalIndent(args[0], "", "  ")
		if err != nil {
			return nil, err
		}
		return string(b), nil
	},
	"string": func(env any, args []any) (any, error) {
		if err := checkLen(env, "string", estimate(args[0])); err != nil {
			return nil, err
		}
		return builtin.String(args[0]), nil
	},
	"str": func(env any, args []any) (any, error) {
		if err := checkLen(env, "str", estimate(args[0])); err != nil {
			return nil, err
		}
		return toString(args[0]), nil
	},
}

// estimate bounds from below the length of v written out (as JSON or
// with fmt), giving up past MaxExprString: a list may hold the same long
// string a million times over.
func estimate(v any) int {
	n := 0
	var walk func(v any)
	walk = func(v any) {
		if n > MaxExprString {
			return
		}
		switch x := v.(type) {
		case nil:
			n += 3
		case string:
			n += len(x) + 2
		case []any:
			n += 2
			for _, e := range x {
				walk(e)
				n++
			}
		case []string:
			for _, e := range x {
				n += len(e) + 3
				if n > MaxExprString {
					return
				}
			}
		case map[string]any:
			n += 2
			for k, e := range x {
				n += len(k) + 4
				walk(e)
			}
		default:
			rv := reflect.ValueOf(v)
			switch rv.Kind() {
			case reflect.Slice, reflect.Array:
				for i := 0; i < rv.Len() && n <= MaxExprString; i++ {
					walk(rv.Index(i).Interface())
					n++
				}
			case reflect.Map:
				it := rv.MapRange()
				for it.Next() && n <= MaxExprString {
					walk(it.Key().Interface())
					walk(it.Value().Interface())
				}
			case reflect.Pointer:
				if !rv.IsNil() && rv.Elem().Kind() == reflect.Struct {
					n += int(rv.Elem().Type().Size())
				}
			default:
				n += 8
			}
		}
	}
	walk(v)
	return n
}

// budgetFunctions declares the budgeted functions.
var budgetFunctions = sync.OnceValue(func() []expr.Option {
	step := func(params ...any) (any, error) {
		if err := charge(params[0], 1); err != nil {
			return nil, err
		}
		return params[1], nil
	}
	opts := []expr.Option{
		expr.Function(stepBool, step, new(func(any, bool) bool)),
		expr.Function(stepInt, step, new(func(any, int) int)),
		expr.Function(stepFloat, step, new(func(any, float64) float64)),
		expr.Function(stepStr, step, new(func(any, string) string)),
		expr.Function(stepAny, step, new(func(any, any) any)),
		expr.Function(fnConcat, func(params ...any) (any, error) {
			a, b := params[1].(string), params[2].(string)
			if err := checkLen(params[0], "+", len(a)+len(b)); err != nil {
				return nil, err
			}
			return a + b, nil
		}, new(func(any, string, string) string)),
		expr.Function(fnAdd, func(params ...any) (out any, err error) {
			a, b := params[1], params[2]
			if sa, ok := a.(string); ok {
				if sb, ok := b.(string); ok {
					if err := checkLen(params[0], "+", len(sa)+len(sb)); err != nil {
						return nil, err
					}
					return sa + sb, nil
				}
			}
			return runtime.Add(a, b), nil
		}, new(func(any, any, any) any)),
	}
	for name, build := range builders {
		opts = append(opts, expr.Function(fnBuild+name, func(params ...any) (any, error) {
			return build(params[0], params[1:])
		}, new(func(any, ...any) string)))
	}
	return opts
})

// budgetPatch rewrites an expression (already type-checked) so that its
// loops and string building go through the budgeted functions.
type budgetPatch struct {
	patched bool // it rewrote something
}

func env() ast.Node { return &ast.IdentifierNode{Value: envIdent} }

func call(name string, args ...ast.Node) *ast.CallNode {
	return &ast.CallNode{Callee: &ast.IdentifierNode{Value: name}, Arguments: append([]ast.Node{env()}, args...)}
}

// Visit implements ast.Visitor.
func (b *budgetPatch) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.PredicateNode:
		// Every step of a loop runs its predicate once.
		n.Node = call(stepFor(n.Node.Type()), n.Node)
		b.patched = true
	case *ast.BinaryNode:
		if n.Operator != "+" {
			return
		}
		lt, rt := n.Left.Type(), n.Right.Type()
		switch {
		case isKind(lt, reflect.String) && isKind(rt, reflect.String):
			ast.Patch(node, call(fnConcat, n.Left, n.Right))
			b.patched = true
		case mayBeString(lt) && mayBeString(rt):
			ast.Patch(node, call(fnAdd, n.Left, n.Right))
			b.patched = true
		}
	case *ast.BuiltinNode:
		if _, ok := builders[n.Name]; ok {
			ast.Patch(node, call(fnBuild+n.Name, n.Arguments...))
			b.patched = true
		}
	case *ast.CallNode:
		if id, ok := n.Callee.(*ast.IdentifierNode); ok && id.Value == "str" {
			ast.Patch(node, call(fnBuild+"str", n.Arguments...))
			b.patched = true
		}
	}
}

func isKind(t reflect.Type, k reflect.Kind) bool { return t != nil && t.Kind() == k }

// mayBeString reports whether a value of type t may be a string at run
// time: a string, or a type not known when the rule loads.
func mayBeString(t reflect.Type) bool {
	return t == nil || t.Kind() == reflect.Interface || t.Kind() == reflect.String
}

// stepFor picks the step function that keeps the loop body's type.
func stepFor(t reflect.Type) string {
	if t == nil {
		return stepAny
	}
	switch t.Kind() {
	case reflect.Bool:
		return stepBool
	case reflect.Int:
		return stepInt
	case reflect.Float64:
		return stepFloat
	case reflect.String:
		return stepStr
	}
	return stepAny
}

// compileBounded compiles src (see compile) with the budget patch and
// functions, and refuses it if it is unbounded, unless trusted.
func compileBounded(src string, n *names, asBool, trusted bool) (*program, error) {
	p, err := compile(src, n, asBool, true)
	if err != nil {
		return nil, err
	}
	if trusted {
		return p, nil // admitted by the loads with tests (names.trusted)
	}
	if err := admitProgram(p); err != nil {
		return nil, err
	}
	return p, nil
}

// builtinNames keeps the builders in step with expr's own list.
var _ = func() bool {
	for name := range builders {
		if _, ok := builtin.Index[name]; !ok && name != "str" {
			panic("rules: " + name + " is not an expr builtin")
		}
	}
	return true
}()
