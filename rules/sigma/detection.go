package sigma

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// problem is an error at a YAML node.
type problem struct {
	node *yaml.Node
	msg  string
}

// compiler turns detection definitions into expressions.
type compiler struct {
	event    reflect.Type
	problems []problem
}

func (c *compiler) errorf(n *yaml.Node, format string, args ...any) {
	c.problems = append(c.problems, problem{n, fmt.Sprintf(format, args...)})
}

// search compiles one search identifier's definition: a map (every item
// must match) or a list of maps (any must match). A plain value or a list
// of plain values is a keyword search, which a typed record cannot answer.
func (c *compiler) search(name string, n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return c.mapping(n)
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			c.errorf(n, "search identifier %q is an empty list", name)
			return "false"
		}
		var parts []string
		for _, e := range n.Content {
			if e.Kind != yaml.MappingNode {
				c.errorf(e, "search identifier %q: keyword detection (a value without a field name) is not supported: name the CloudTrail field to match", name)
				return "false"
			}
			parts = append(parts, "("+c.mapping(e)+")")
		}
		return join(parts, " || ")
	case yaml.AliasNode:
		return c.search(name, n.Alias)
	}
	c.errorf(n, "search identifier %q: keyword detection (a value without a field name) is not supported: name the CloudTrail field to match", name)
	return "false"
}

func (c *compiler) mapping(n *yaml.Node) string {
	if len(n.Content) == 0 {
		c.errorf(n, "empty detection map")
		return "false"
	}
	var parts []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		parts = append(parts, c.item(k, v))
	}
	return join(parts, " && ")
}

// modifiers are the value modifiers trailwatch implements.
type modifiers struct {
	contains, startswith, endswith bool
	all, cased, re, exists         bool
	reFlags                        string
	base64, base64offset           bool
	cidr, fieldref, neq            bool
	cmp                            string // lt, lte, gt, gte
}

// unsupported lists pySigma modifiers that have no CloudTrail meaning or
// that trailwatch does not implement, with why.
var unsupported = map[string]string{
	"windash":   "it rewrites Windows command-line dashes",
	"utf16":     "it re-encodes values as UTF-16, which CloudTrail records never hold",
	"utf16le":   "it re-encodes values as UTF-16, which CloudTrail records never hold",
	"utf16be":   "it re-encodes values as UTF-16, which CloudTrail records never hold",
	"wide":      "it re-encodes values as UTF-16, which CloudTrail records never hold",
	"expand":    "its placeholders are filled by a conversion pipeline, which trailwatch does not have",
	"minute":    "time-part modifiers are not implemented",
	"hour":      "time-part modifiers are not implemented",
	"day":       "time-part modifiers are not implemented",
	"week":      "time-part modifiers are not implemented",
	"month":     "time-part modifiers are not implemented",
	"year":      "time-part modifiers are not implemented",
	"base64utf": "it is not a Sigma modifier",
}

func (c *compiler) parseModifiers(k *yaml.Node, names []string) (modifiers, bool) {
	var m modifiers
	ok := true
	for _, name := range names {
		switch name {
		case "contains":
			m.contains = true
		case "startswith":
			m.startswith = true
		case "endswith":
			m.endswith = true
		case "all":
			m.all = true
		case "cased":
			m.cased = true
		case "re":
			m.re = true
		case "i", "ignorecase":
			m.reFlags += "i"
		case "m", "multiline":
			m.reFlags += "m"
		case "s", "dotall":
			m.reFlags += "s"
		case "exists":
			m.exists = true
		case "base64":
			m.base64 = true
		case "base64offset":
			m.base64offset = true
		case "cidr":
			m.cidr = true
		case "fieldref":
			m.fieldref = true
		case "neq":
			m.neq = true
		case "lt", "lte", "gt", "gte":
			m.cmp = name
		default:
			if why, known := unsupported[name]; known {
				c.errorf(k, "modifier %q is not supported: %s", name, why)
			} else {
				c.errorf(k, "unknown modifier %q", name)
			}
			ok = false
		}
	}
	if !ok {
		return m, false
	}
	wraps := 0
	for _, b := range []bool{m.contains, m.startswith, m.endswith} {
		if b {
			wraps++
		}
	}
	switch {
	case wraps > 1:
		c.errorf(k, "modifiers contains, startswith and endswith exclude each other")
	case m.reFlags != "" && !m.re:
		c.errorf(k, "modifiers i, m and s are flags of re and need it")
	case m.re && (wraps > 0 || m.cased || m.base64 || m.base64offset || m.cidr || m.fieldref || m.cmp != ""):
		c.errorf(k, "modifier re cannot be combined with other value modifiers (use (?i) or the i flag)")
	case m.base64 && m.base64offset:
		c.errorf(k, "modifiers base64 and base64offset exclude each other")
	case m.base64offset && !m.contains:
		c.errorf(k, "modifier base64offset needs contains after it (base64offset|contains)")
	case m.exists && (wraps > 0 || m.re || m.cased || m.base64 || m.base64offset || m.cidr || m.fieldref || m.cmp != "" || m.all):
		c.errorf(k, "modifier exists cannot be combined with other modifiers")
	case m.fieldref && (wraps > 0 || m.cased || m.base64 || m.base64offset || m.cidr || m.cmp != ""):
		c.errorf(k, "modifier fieldref combined with other value modifiers is not supported")
	case m.cidr && (wraps > 0 || m.cased || m.base64 || m.base64offset || m.cmp != ""):
		c.errorf(k, "modifier cidr cannot be combined with other value modifiers")
	case m.cmp != "" && (wraps > 0 || m.cased || m.base64 || m.base64offset):
		c.errorf(k, "modifier %s cannot be combined with string modifiers", m.cmp)
	default:
		return m, true
	}
	return m, false
}

// item compiles `field|modifiers: value(s)`.
func (c *compiler) item(k, v *yaml.Node) string {
	if k.Kind != yaml.ScalarNode {
		c.errorf(k, "a detection key must be a field name")
		return "false"
	}
	parts := strings.Split(k.Value, "|")
	name := parts[0]
	if name == "" {
		c.errorf(k, "keyword detection (a value without a field name) is not supported: name the CloudTrail field to match")
		return "false"
	}
	f, err := resolve(c.event, name)
	if err != nil {
		c.errorf(k, "%v", err)
		return "false"
	}
	m, ok := c.parseModifiers(k, parts[1:])
	if !ok {
		return "false"
	}
	var values []*yaml.Node
	switch v.Kind {
	case yaml.SequenceNode:
		values = v.Content
		if len(values) == 0 {
			c.errorf(v, "field %q has an empty list of values", name)
			return "false"
		}
	case yaml.ScalarNode:
		values = []*yaml.Node{v}
	default:
		c.errorf(v, "the value of %q must be a value or a list of values", name)
		return "false"
	}
	var out []string
	for _, vn := range values {
		if vn.Kind == yaml.AliasNode {
			vn = vn.Alias
		}
		if vn.Kind != yaml.ScalarNode {
			c.errorf(vn, "the value of %q must be a value or a list of values", name)
			return "false"
		}
		out = append(out, c.values(f, m, vn)...)
	}
	sep := " || "
	if m.all {
		sep = " && "
	}
	// eventName in [...] is what the rule index reads.
	if !m.all && !m.neq && f.kind == kindString && f.expr == "eventName" && len(out) > 1 {
		if names, ok := eventNames(out); ok {
			return "eventName in [" + strings.Join(names, ", ") + "]"
		}
	}
	e := join(out, sep)
	if len(out) > 1 {
		e = "(" + e + ")"
	}
	if m.neq {
		e = "!" + paren(e)
	}
	return e
}

func paren(e string) string {
	if strings.HasPrefix(e, "(") && strings.HasSuffix(e, ")") {
		return e
	}
	return "(" + e + ")"
}

var eventNameEq = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^eventName == ("(?:[^"\\]|\\.)*")$`) })

// eventNames collects `eventName == "X"` alternatives into one list.
func eventNames(alts []string) ([]string, bool) {
	var out []string
	for _, a := range alts {
		m := eventNameEq().FindStringSubmatch(a)
		if m == nil {
			return nil, false
		}
		out = append(out, m[1])
	}
	return out, true
}

// values compiles one value (base64offset makes three) for a field.
func (c *compiler) values(f field, m modifiers, vn *yaml.Node) []string {
	null := vn.Tag == "!!null"
	switch {
	case m.exists:
		b, err := strconv.ParseBool(vn.Value)
		if err != nil || vn.Tag != "!!bool" {
			c.errorf(vn, "exists takes true or false")
			return []string{"false"}
		}
		if b {
			return []string{present(f)}
		}
		return []string{"!" + paren(present(f))}
	case null:
		if m.cmp != "" || m.cidr || m.fieldref || m.re || m.base64 || m.base64offset {
			c.errorf(vn, "null cannot be used with these modifiers")
			return []string{"false"}
		}
		return []string{"!" + paren(present(f))}
	case m.fieldref:
		other, err := resolve(c.event, vn.Value)
		if err != nil {
			c.errorf(vn, "fieldref: %v", err)
			return []string{"false"}
		}
		return []string{fieldRef(f, other)}
	case m.cmp != "":
		n, err := strconv.ParseFloat(vn.Value, 64)
		if err != nil {
			c.errorf(vn, "%s needs a number, not %q", m.cmp, vn.Value)
			return []string{"false"}
		}
		op := map[string]string{"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}[m.cmp]
		return []string{match(f, func(v string) string {
			return fmt.Sprintf(`(%s matches "^\\s*[-+]?[0-9]+(\\.[0-9]*)?([eE][-+]?[0-9]+)?\\s*$" && float(trim(%s)) %s %s)`, v, v, op, strconv.FormatFloat(n, 'g', -1, 64))
		})}
	case m.cidr:
		if _, err := netip.ParsePrefix(vn.Value); err != nil {
			c.errorf(vn, "cidr: %q is not a CIDR range", vn.Value)
			return []string{"false"}
		}
		return []string{match(f, func(v string) string { return "inCIDR(" + v + ", " + q(vn.Value) + ")" })}
	case m.re:
		src := vn.Value
		if m.reFlags != "" {
			src = "(?" + m.reFlags + ")" + src
		}
		if _, err := regexp.Compile(src); err != nil {
			c.errorf(vn, "re: the regular expression is not RE2 (Go) syntax: %v", err)
			return []string{"false"}
		}
		return []string{match(f, func(v string) string { return v + " matches " + q(src) })}
	}
	if f.kind == kindBool {
		b, err := strconv.ParseBool(strings.ToLower(vn.Value))
		if err != nil || m.contains || m.startswith || m.endswith || m.base64 || m.base64offset {
			c.errorf(vn, "field %q is a boolean: match it with true or false", f.name)
			return []string{"false"}
		}
		return []string{fmt.Sprintf("%s == %v", f.expr, b)}
	}
	raw := vn.Value
	plain, isPlain := parsePattern(raw).literal()
	if (m.base64 || m.base64offset) && !isPlain {
		c.errorf(vn, "base64 encoding of a value with wildcards is not allowed")
		return []string{"false"}
	}
	var pats []pattern
	switch {
	case m.base64:
		pats = []pattern{literalPattern(base64.StdEncoding.EncodeToString([]byte(plain)))}
	case m.base64offset:
		for _, s := range base64Offsets(plain) {
			pats = append(pats, literalPattern(s))
		}
	default:
		pats = []pattern{parsePattern(raw)}
	}
	var out []string
	for _, p := range pats {
		p = p.wrap(m.contains || m.endswith, m.contains || m.startswith)
		out = append(out, stringMatch(f, p, m.cased))
	}
	if len(out) > 1 {
		return []string{"(" + strings.Join(out, " || ") + ")"}
	}
	return out
}

func literalPattern(s string) pattern {
	if s == "" {
		return pattern{}
	}
	return pattern{{lit: s}}
}

// base64Offsets returns the three base64 encodings of s at the offsets it
// can take inside a longer encoded text, trimmed of the characters that
// depend on its neighbours (pySigma's base64offset: padded with spaces,
// start offsets 0, 2, 3, end offsets none, -3, -2 by length modulo 3).
func base64Offsets(s string) []string {
	start := []int{0, 2, 3}
	end := []int{0, -3, -2}
	out := make([]string, 3)
	for i := range 3 {
		enc := base64.StdEncoding.EncodeToString([]byte(strings.Repeat(" ", i) + s))
		hi := len(enc) + end[(len(s)+i)%3]
		lo := min(start[i], hi)
		out[i] = enc[lo:hi]
	}
	return out
}

// present is the expression "the field has a value".
func present(f field) string {
	switch f.kind {
	case kindString:
		return f.expr + ` != ""`
	case kindBool:
		return "true"
	case kindListString:
		return fmt.Sprintf(`any(%s, {#.%s != ""})`, f.expr, f.rest)
	default:
		return fmt.Sprintf("len(leaves(%s, %s)) > 0", f.expr, q(f.rest))
	}
}

// match applies pred (given an expression of a present string value) to
// every value the field has.
func match(f field, pred func(v string) string) string {
	switch f.kind {
	case kindString:
		return fmt.Sprintf(`(%s != "" && %s)`, f.expr, pred(f.expr))
	case kindBool:
		return pred("str(" + f.expr + ")")
	case kindListString:
		return fmt.Sprintf(`any(%s, {#.%s != "" && %s})`, f.expr, f.rest, pred("#."+f.rest))
	default:
		return fmt.Sprintf("any(leaves(%s, %s), {%s})", f.expr, q(f.rest), pred("str(#)"))
	}
}

// stringMatch compiles a Sigma string match: case-insensitive unless
// cased, against every value of the field. A value never matches an
// absent field, so a pattern that matches "" asks for presence.
func stringMatch(f field, p pattern, cased bool) string {
	if lit, ok := p.literal(); ok && f.kind == kindString {
		switch {
		case lit == "":
			return f.expr + ` == ""`
		case f.expr == "eventName" || cased:
			// CloudTrail writes API names in one case; comparing exactly
			// lets the rule index offer the rule only these records.
			return f.expr + " == " + q(lit)
		default:
			return "iequals(" + f.expr + ", " + q(lit) + ")"
		}
	}
	if p.matchesEmpty() {
		return present(f)
	}
	return match(f, func(v string) string { return stringPred(v, p, cased) })
}

// stringPred is the test of one present string value v against p.
func stringPred(v string, p pattern, cased bool) string {
	lit, leading, trailing, ok := p.shape()
	switch {
	case ok && !leading && !trailing && cased:
		return v + " == " + q(lit)
	case ok && !leading && !trailing:
		return "iequals(" + v + ", " + q(lit) + ")"
	case ok && leading && trailing && !cased:
		return "icontains(" + v + ", " + q(lit) + ")"
	case ok && leading && trailing:
		return v + " contains " + q(lit)
	case ok && cased && trailing:
		return v + " startsWith " + q(lit)
	case ok && cased && leading:
		return v + " endsWith " + q(lit)
	}
	return v + " matches " + q(p.regex(cased))
}

// fieldRef is `a|fieldref: b`: some value of a equals some value of b.
func fieldRef(a, b field) string {
	if a.kind == kindString && b.kind == kindString {
		return fmt.Sprintf(`(%s != "" && %s == %s)`, a.expr, a.expr, b.expr)
	}
	other := match(b, func(w string) string { return "str(" + w + ") == ref" })
	return match(a, func(v string) string { return "(let ref = str(" + v + "); " + other + ")" })
}
