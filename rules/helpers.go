package rules

import (
	"fmt"
	"reflect"
	"sort"
	"sync"

	"github.com/expr-lang/expr"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// The helper functions that rule expressions and summary templates can
// call, besides expr-lang's built-ins (lower, upper, split, trim, fromJSON,
// any, all, ...), are one table: each helper_*.go file registers its
// helpers from an init function with registerHelper, and everything else
// (the compiler's options, the names that lists and macros may not take,
// docs/rules.md's list, which TestDocsListEveryHelper checks) is derived
// from that table. A new helper is one helper_*.go file, its test and a row
// in docs/rules.md.
//
// Every helper is total: bad input (an invalid IP, a nil value) gives false
// or an empty result, never a run-time error, because real records are
// messy.

// helper is one function rule expressions can call.
type helper struct {
	name string
	fn   func(params ...any) (any, error)
	// types are expr.Function's signatures (new(func(string) bool), ...):
	// expr checks calls against them when a rule loads.
	types []any
}

var helperTable = map[string]helper{}

// registerHelper adds a helper to the table. Two helpers with one name are
// a programming error, caught when the package initializes.
func registerHelper(name string, fn func(params ...any) (any, error), types ...any) {
	if _, dup := helperTable[name]; dup {
		panic(fmt.Sprintf("rules: helper %q registered twice", name))
	}
	if len(types) == 0 {
		panic(fmt.Sprintf("rules: helper %q has no signature", name))
	}
	helperTable[name] = helper{name: name, fn: fn, types: types}
}

// helperNames returns the registered helpers' names, sorted.
func helperNames() []string {
	names := make([]string, 0, len(helperTable))
	for n := range helperTable {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// helperOptions are the expr options that declare every helper. The table
// is complete once the package's init functions have run, before any rule
// can compile.
var helperOptions = sync.OnceValue(func() []expr.Option {
	var opts []expr.Option
	for _, n := range helperNames() {
		h := helperTable[n]
		opts = append(opts, expr.Function(h.name, h.fn, h.types...))
	}
	return opts
})

// reservedNames are the names a list or macro may not take: expr's
// keywords and literals, the event's top-level fields and the helpers.
var reservedNames = sync.OnceValue(func() map[string]bool {
	m := map[string]bool{"true": true, "false": true, "nil": true, "not": true, "in": true, "and": true, "or": true}
	t := reflect.TypeOf(cloudtrail.Event{})
	for i := 0; i < t.NumField(); i++ {
		if tag := t.Field(i).Tag.Get("expr"); tag != "" {
			m[tag] = true
		}
	}
	for n := range helperTable {
		m[n] = true
	}
	return m
})
