package pattern

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Pattern is a compiled JSON filter pattern. It is immutable after Parse and
// safe for concurrent use.
type Pattern struct {
	root node
}

// SyntaxError reports why a pattern does not parse and where. Offset is the
// 0-based byte offset in the source; Line and Col are 1-based, Col counting
// characters (runes) from the start of the line, so that a caller can add the
// position of the pattern string inside its YAML file.
type SyntaxError struct {
	Offset int
	Line   int
	Col    int
	Msg    string
}

// Error returns "line:col: message".
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg)
}

// Match reports whether record satisfies the pattern. record is a decoded JSON
// object whose numbers are json.Number or float64.
func (p *Pattern) Match(record map[string]any) bool {
	if p == nil || p.root == nil {
		return false
	}
	return p.root.eval(record)
}

// String returns the canonical text of the pattern: every string value quoted,
// single spaces, and parentheses only where && and || need them. Parse accepts
// it and gives back the same text.
func (p *Pattern) String() string {
	if p == nil || p.root == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString("{ ")
	p.root.write(&b, precOr)
	b.WriteString(" }")
	return b.String()
}

// Fields returns the selectors the pattern uses, without the leading "$." and
// in canonical form ("userIdentity.type", "arrayKey[*]", "['cluster.name']"),
// each once, in order of first use.
func (p *Pattern) Fields() []string {
	if p == nil || p.root == nil {
		return nil
	}
	var out []string
	p.root.walk(func(c *cond) {
		f := c.sel.field()
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	})
	return out
}

// EqualityConstraints returns, for the conjuncts of the pattern's top-level
// &&, the selectors that must equal one of a set of literal strings for the
// pattern to match: a conjunct `$.a = "x"` gives a -> [x], a conjunct
// `($.a = x || $.a = y)` gives a -> [x y], and a pattern that is a single such
// disjunction gives its selector and values. Keys are in the form Fields
// returns. Only exact string literals on selectors without wildcards count
// (no `*`, no regex, no numbers), so each listed value is compared with the
// record's value as text: a string as is, a number by its JSON text, which is
// what FieldValue returns. A selector constrained twice keeps the
// intersection; an empty list means the pattern can never match. Conjuncts of
// any other shape are left out, so the result is a necessary condition for a
// match, never a sufficient one. The map is the caller's to modify.
func (p *Pattern) EqualityConstraints() map[string][]string {
	out := map[string][]string{}
	if p == nil || p.root == nil {
		return out
	}
	var conjuncts []node
	if a, ok := p.root.(*andNode); ok {
		conjuncts = a.kids
	} else {
		conjuncts = []node{p.root}
	}
	for _, c := range conjuncts {
		field, values, ok := equalityDisjunction(c)
		if !ok {
			continue
		}
		if prev, seen := out[field]; seen {
			values = slices.DeleteFunc(values, func(v string) bool { return !slices.Contains(prev, v) })
		}
		out[field] = values
	}
	return out
}

// equalityDisjunction reports whether n is `sel = lit` or an || of such
// conditions that all share one selector, and returns the selector and the
// distinct literals.
func equalityDisjunction(n node) (string, []string, bool) {
	var conds []*cond
	switch n := n.(type) {
	case *eqSetNode:
		return equalityDisjunction(n.or)
	case *cond:
		conds = []*cond{n}
	case *orNode:
		for _, k := range n.kids {
			c, ok := k.(*cond)
			if !ok {
				return "", nil, false
			}
			conds = append(conds, c)
		}
	default:
		return "", nil, false
	}
	var field string
	var values []string
	for i, c := range conds {
		lit, ok := c.exactLiteral()
		if !ok {
			return "", nil, false
		}
		f := c.sel.field()
		if i == 0 {
			field = f
		} else if f != field {
			return "", nil, false
		}
		if !slices.Contains(values, lit) {
			values = append(values, lit)
		}
	}
	return field, values, true
}

// FieldValue resolves field, a selector in the form Fields and
// EqualityConstraints use (with or without the leading "$."), against record
// and returns the text of the value it reaches: a string as is, a number by
// its JSON text. It returns false when the field is absent, is not a string or
// a number, or is not a valid selector, and for selectors with wildcards.
func FieldValue(record map[string]any, field string) (string, bool) {
	src := field
	if !strings.HasPrefix(src, "$") {
		src = "$." + src
	}
	sc := &scanner{src: src}
	sel, err := sc.selector()
	if err != nil || sc.pos != len(src) || sel.wildcards() > 0 {
		return "", false
	}
	var out string
	var found bool
	sel.each(record, func(v any) bool {
		out, found = valueText(v)
		return true
	})
	return out, found
}

// Operator precedences for rendering.
const (
	precOr = iota
	precAnd
)

// node is one element of the parsed expression tree.
type node interface {
	eval(record map[string]any) bool
	write(b *strings.Builder, parent int)
	walk(fn func(*cond))
}

type orNode struct{ kids []node }

func (n *orNode) eval(r map[string]any) bool {
	for _, k := range n.kids {
		if k.eval(r) {
			return true
		}
	}
	return false
}

func (n *orNode) write(b *strings.Builder, parent int) {
	if parent > precOr {
		b.WriteByte('(')
	}
	for i, k := range n.kids {
		if i > 0 {
			b.WriteString(" || ")
		}
		k.write(b, precOr)
	}
	if parent > precOr {
		b.WriteByte(')')
	}
}

func (n *orNode) walk(fn func(*cond)) {
	for _, k := range n.kids {
		k.walk(fn)
	}
}

// eqSetNode is an || of exact string equalities on one selector, such as
// CIS CloudWatch.4's sixteen eventName alternatives, evaluated with one
// selector walk and one map lookup. It renders and walks as the || it
// replaces.
type eqSetNode struct {
	or     *orNode
	sel    selector
	values map[string]struct{}
}

// minEqSet is the number of alternatives from which a set beats a scan.
const minEqSet = 4

// newEqSet returns the set form of or, or nil when or has another shape.
func newEqSet(or *orNode) *eqSetNode {
	if len(or.kids) < minEqSet {
		return nil
	}
	_, values, ok := equalityDisjunction(or)
	if !ok {
		return nil
	}
	set := &eqSetNode{or: or, sel: or.kids[0].(*cond).sel, values: make(map[string]struct{}, len(values))}
	for _, v := range values {
		set.values[v] = struct{}{}
	}
	return set
}

func (n *eqSetNode) eval(r map[string]any) bool {
	matched := false
	n.sel.each(r, func(v any) bool {
		if text, ok := valueText(v); ok {
			_, matched = n.values[text]
		}
		return matched
	})
	return matched
}

func (n *eqSetNode) write(b *strings.Builder, parent int) { n.or.write(b, parent) }
func (n *eqSetNode) walk(fn func(*cond))                  { n.or.walk(fn) }

type andNode struct{ kids []node }

func (n *andNode) eval(r map[string]any) bool {
	for _, k := range n.kids {
		if !k.eval(r) {
			return false
		}
	}
	return true
}

func (n *andNode) write(b *strings.Builder, parent int) {
	for i, k := range n.kids {
		if i > 0 {
			b.WriteString(" && ")
		}
		k.write(b, precAnd)
	}
}

func (n *andNode) walk(fn func(*cond)) {
	for _, k := range n.kids {
		k.walk(fn)
	}
}

// op is a condition's operator.
type op int

const (
	opEq op = iota
	opNe
	opLt
	opGt
	opLe
	opGe
	opIsNull
	opIsTrue
	opIsFalse
	opNotExists
)

var opText = [...]string{
	opEq: "=", opNe: "!=", opLt: "<", opGt: ">", opLe: "<=", opGe: ">=",
	opIsNull: "IS NULL", opIsTrue: "IS TRUE", opIsFalse: "IS FALSE", opNotExists: "NOT EXISTS",
}

func (o op) relational() bool { return o >= opLt && o <= opGe }
func (o op) unary() bool      { return o >= opIsNull }

// valueKind tells how a condition's operand compares.
type valueKind int

const (
	kindString valueKind = iota // literal or wildcard string
	kindNumber                  // numeric literal
	kindRegex                   // %regex%
)

// strMode is how a string operand matches, decided once at parse time.
type strMode int

const (
	modeExact    strMode = iota
	modePrefix           // "abc*"
	modeSuffix           // "*abc"
	modeContains         // "*abc*"
	modeAny              // "*"
)

// cond is one comparison or test on a selector.
type cond struct {
	sel  selector
	op   op
	kind valueKind
	text string  // string value (unescaped), number literal text, or regex source
	num  float64 // kindNumber
	mode strMode // kindString
	core string  // kindString: text without its wildcard stars
	re   *regexp.Regexp
}

func (c *cond) walk(fn func(*cond)) { fn(c) }

// exactLiteral returns the literal string c requires, if c is `sel = "lit"`
// with no wildcard in value or selector.
func (c *cond) exactLiteral() (string, bool) {
	if c.op != opEq || c.kind != kindString || c.mode != modeExact || strings.Contains(c.text, "*") || c.sel.wildcards() > 0 {
		return "", false
	}
	return c.text, true
}

func (c *cond) write(b *strings.Builder, _ int) {
	c.sel.write(b)
	b.WriteByte(' ')
	b.WriteString(opText[c.op])
	if c.op.unary() {
		return
	}
	b.WriteByte(' ')
	switch c.kind {
	case kindNumber:
		b.WriteString(c.text)
	case kindRegex:
		b.WriteByte('%')
		b.WriteString(c.text)
		b.WriteByte('%')
	default:
		writeQuoted(b, c.text)
	}
}

// writeQuoted writes s as a double-quoted pattern string.
func writeQuoted(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
}

func (c *cond) eval(r map[string]any) bool {
	if c.op == opNotExists {
		found := false
		c.sel.each(r, func(any) bool { found = true; return true })
		return !found
	}
	matched := false
	c.sel.each(r, func(v any) bool {
		matched = c.test(v)
		return matched
	})
	return matched
}

// test applies the condition to one value the selector reached.
func (c *cond) test(v any) bool {
	switch c.op {
	case opIsNull:
		return v == nil
	case opIsTrue:
		b, ok := v.(bool)
		return ok && b
	case opIsFalse:
		b, ok := v.(bool)
		return ok && !b
	}
	s, isStr := v.(string)
	numText, isNum := numberText(v)
	if !isStr && !isNum {
		// Null, booleans, objects and arrays are not value nodes: no
		// comparison applies to them, != included.
		return false
	}
	if c.kind == kindNumber {
		if isStr {
			if c.op == opEq {
				return s == c.text
			}
			if c.op == opNe {
				return s != c.text
			}
			f, ok := parseNumber(s)
			return ok && compare(c.op, f, c.num)
		}
		f, ok := numberValue(v, numText)
		return ok && compare(c.op, f, c.num)
	}
	if isNum {
		s = numText
	}
	m := c.matchString(s)
	if c.op == opNe {
		return !m
	}
	return m
}

func (c *cond) matchString(s string) bool {
	if c.kind == kindRegex {
		return c.re.MatchString(s)
	}
	switch c.mode {
	case modeAny:
		return true
	case modePrefix:
		return strings.HasPrefix(s, c.core)
	case modeSuffix:
		return strings.HasSuffix(s, c.core)
	case modeContains:
		return strings.Contains(s, c.core)
	}
	return s == c.text
}

func compare(o op, a, b float64) bool {
	switch o {
	case opEq:
		return a == b
	case opNe:
		return a != b
	case opLt:
		return a < b
	case opGt:
		return a > b
	case opLe:
		return a <= b
	case opGe:
		return a >= b
	}
	return false
}

// numberText returns the JSON text of v if v is a number.
func numberText(v any) (string, bool) {
	switch n := v.(type) {
	case json.Number:
		return string(n), true
	case float64:
		return strconv.FormatFloat(n, 'f', -1, 64), true
	case float32:
		return strconv.FormatFloat(float64(n), 'f', -1, 32), true
	case int:
		return strconv.FormatInt(int64(n), 10), true
	case int64:
		return strconv.FormatInt(n, 10), true
	case int32:
		return strconv.FormatInt(int64(n), 10), true
	case uint64:
		return strconv.FormatUint(n, 10), true
	case uint:
		return strconv.FormatUint(uint64(n), 10), true
	}
	return "", false
}

// numberValue returns the float value of a number that numberText accepted.
func numberValue(v any, text string) (float64, bool) {
	if f, ok := v.(float64); ok {
		return f, true
	}
	f, err := strconv.ParseFloat(text, 64)
	return f, err == nil
}

// valueText returns the text a value node compares by.
func valueText(v any) (string, bool) {
	if s, ok := v.(string); ok {
		return s, true
	}
	return numberText(v)
}

// numberRE is the number syntax of the AWS guide: an integer or decimal with an
// optional sign, optionally followed by an exponent.
var numberRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$`)
})

// parseNumber reads s as a pattern number.
func parseNumber(s string) (float64, bool) {
	if !numberRE().MatchString(s) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, false
	}
	return f, true
}
