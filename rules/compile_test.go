package rules

import (
	"sync"
	"testing"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// TestCompileIsExprCompile holds compile, which runs expr's compile steps
// itself (names substituted first, fewer type checks, bytecode on first
// use), to expr.Compile with the same patches in the same order: for every
// expression of the built-in packs (conditions, excepts, macros, summary
// placeholders, dedup keys, group_by), the bytecode must be the same, and
// so must whether it calls the budget's functions.
func TestCompileIsExprCompile(t *testing.T) {
	files, err := builtinFiles("")
	if err != nil {
		t.Fatal(err)
	}
	l := &loader{ids: map[string]Position{}, names: newNames(), skipTests: true}
	for _, f := range files {
		l.file(f)
	}
	set, err := LoadWith(Options{SkipTests: true}, "builtin")
	if err != nil {
		t.Fatal(err)
	}
	type source struct {
		src  string
		cond bool
	}
	var srcs []source
	for _, name := range l.names.macroList {
		srcs = append(srcs, source{l.names.macros[name].src, true})
	}
	for _, r := range set.Rules() {
		if r.When != "" {
			srcs = append(srcs, source{r.When, true})
		}
		for _, e := range r.Except {
			srcs = append(srcs, source{e, true})
		}
		if r.summary != nil {
			for _, p := range r.summary.parts {
				if p.program != nil {
					srcs = append(srcs, source{p.src, false})
				}
			}
		}
		if r.Dedup != nil && r.Dedup.Key != "" {
			srcs = append(srcs, source{r.Dedup.Key, false})
		}
		if r.Threshold != nil {
			for _, g := range r.Threshold.GroupBy {
				srcs = append(srcs, source{g, false})
			}
		}
	}
	if len(srcs) < 200 {
		t.Fatalf("only %d expressions in the built-in packs", len(srcs))
	}
	for _, s := range srcs {
		opts := []expr.Option{expr.Env(cloudtrail.Event{}), expr.Patch(&expander{names: l.names}),
			expr.Patch(&nilSafeMembers{}), expr.Patch(&missingStrings{}), expr.Patch(&budgetPatch{})}
		opts = append(append(opts, helperOptions()...), budgetFunctions()...)
		if s.cond {
			opts = append(opts, expr.AsBool())
		}
		want, err := expr.Compile(s.src, opts...)
		if err != nil {
			t.Errorf("%s: expr.Compile: %v", s.src, err)
			continue
		}
		p, err := compile(s.src, l.names, s.cond, true)
		if err != nil {
			t.Errorf("%s: compile: %v", s.src, err)
			continue
		}
		got, err := p.bytecode()
		if err != nil {
			t.Errorf("%s: bytecode: %v", s.src, err)
			continue
		}
		if g, w := got.Disassemble(), want.Disassemble(); g != w {
			t.Errorf("%s: compiles to\n%s\nexpr.Compile to\n%s", s.src, g, w)
		}
		if p.budgeted != budgeted(want) {
			t.Errorf("%s: budgeted %v, expr's bytecode says %v", s.src, p.budgeted, budgeted(want))
		}
	}
}

// TestBytecodeOnlyWhenNeeded: a program's bytecode is compiled when the VM
// first runs it, but for those the budget must run to admit them, and but
// in a load that checks everything (with the tests: validate, test). A
// built-in pack's programs, in a load without tests whose lists are the
// packs' own, are not admitted again (names.trusted): none has bytecode
// before it is needed; with a list overridden, or as a user's file, the
// budgeted ones are admitted.
func TestBytecodeOnlyWhenNeeded(t *testing.T) {
	set, err := LoadWith(Options{SkipTests: true}, "builtin")
	if err != nil {
		t.Fatal(err)
	}
	names, progs := conditionPrograms(set)
	lazy, budgeted := 0, 0
	for i, p := range progs {
		// A condition from the built-in packs' snapshot compiles on
		// first use (TestBuiltinExprsCompileOnFirstUse); compiling it
		// compiles no bytecode.
		if err := p.load(); err != nil {
			t.Fatalf("%s: %v", names[i], err)
		}
		if p.budgeted {
			budgeted++
		}
		if p.code.Load() != nil {
			t.Errorf("%s: bytecode compiled before it is needed", names[i])
		} else {
			lazy++
		}
	}
	if budgeted == 0 {
		t.Fatal("no budgeted condition in the built-in packs")
	}
	ev := &cloudtrail.Event{}
	for _, p := range progs {
		if _, err := runVM(p, ev); err != nil {
			t.Fatal(err)
		}
		if p.code.Load() == nil {
			t.Fatal("runVM left no bytecode")
		}
	}
	t.Logf("%d of %d conditions (%d budgeted) compiled to bytecode only on demand", lazy, len(progs), budgeted)

	files, err := builtinFiles("")
	if err != nil {
		t.Fatal(err)
	}
	user := make([]File, len(files))
	for i, f := range files {
		f.builtin = false // the same text, as a user's rule file
		user[i] = f
	}
	for name, opts := range map[string]struct {
		files []File
		opts  Options
	}{
		"user files": {user, Options{SkipTests: true}},
		"lists overridden": {files, Options{SkipTests: true,
			Lists: map[string][]any{"allowed_regions": {"eu-west-1"}}}},
	} {
		set, err := loadFilesWith(opts.files, opts.opts)
		if err != nil {
			t.Fatal(err)
		}
		names, progs := conditionPrograms(set)
		for i, p := range progs {
			switch {
			case p.budgeted && p.code.Load() == nil:
				t.Errorf("%s: %s: no bytecode, and the budget must run it to admit it", name, names[i])
			case !p.budgeted && p.code.Load() != nil:
				t.Errorf("%s: %s: bytecode compiled before it is needed", name, names[i])
			}
		}
	}

	all, err := LoadWith(Options{}, "builtin")
	if err != nil {
		t.Fatal(err)
	}
	names, progs = conditionPrograms(all)
	for i, p := range progs {
		if p.code.Load() == nil {
			t.Errorf("%s: a load with tests (validate, test) left it without bytecode", names[i])
		}
	}
}

// TestBytecodeOnFirstUseIsGoroutineSafe: goroutines that evaluate a fresh
// set's programs in the VM at once compile each program's bytecode once
// (run it with -race).
func TestBytecodeOnFirstUseIsGoroutineSafe(t *testing.T) {
	set, err := LoadWith(Options{SkipTests: true}, "builtin")
	if err != nil {
		t.Fatal(err)
	}
	_, progs := conditionPrograms(set)
	var wg sync.WaitGroup
	codes := make([][]*vm.Program, 4)
	for g := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev := &cloudtrail.Event{}
			for _, p := range progs {
				if _, err := runVM(p, ev); err != nil {
					t.Error(err)
					return
				}
				codes[g] = append(codes[g], p.code.Load())
			}
		}()
	}
	wg.Wait()
	for g := range codes {
		for i := range codes[g] {
			if codes[g][i] != codes[0][i] {
				t.Fatalf("program %d compiled more than once", i)
			}
		}
	}
}
