package pattern

import (
	"strings"
)

// Clause is one condition for Build.
type Clause struct {
	// Selector names the field, as "$.userIdentity.accessKeyId" or
	// "userIdentity.accessKeyId". A selector that does not parse is taken as
	// dot-separated property names and rendered in bracket notation where
	// needed, so any key can be addressed.
	Selector string
	// Op is one of =, !=, <, >, <=, >=, IS NULL, IS TRUE, IS FALSE and
	// NOT EXISTS (case-insensitive).
	Op string
	// Value is the operand of a comparison, ignored by the other operators.
	// For = and != it is quoted as a string, which also matches a JSON number
	// with the same text; a '*' at its start or end stays a wildcard, as the
	// pattern syntax has no escape for it. The relational operators need a
	// number.
	Value string
}

// Build renders clauses as one JSON filter pattern that requires all of them,
// for example for `trailwatch search` to hand to FilterLogEvents:
//
//	Build(Clause{Selector: "$.userIdentity.accessKeyId", Op: "=", Value: "AKIAEXAMPLE"})
//	// { $.userIdentity.accessKeyId = "AKIAEXAMPLE" }
//
// Values are quoted and escaped. Build does not validate: an unknown operator
// or a relational operator with a value that is not a number is rendered as
// given, so Parse on the result reports the problem with its position. Build
// of no clauses is "".
func Build(clauses ...Clause) string {
	if len(clauses) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("{ ")
	for i, cl := range clauses {
		if i > 0 {
			b.WriteString(" && ")
		}
		writeClause(&b, cl)
	}
	b.WriteString(" }")
	return b.String()
}

func writeClause(b *strings.Builder, cl Clause) {
	buildSelector(cl.Selector).write(b)
	b.WriteByte(' ')
	opName := strings.Join(strings.Fields(strings.ToUpper(cl.Op)), " ")
	o, known := -1, false
	for i, t := range opText {
		if t == opName {
			o, known = i, true
			break
		}
	}
	if !known {
		b.WriteString(cl.Op)
		b.WriteByte(' ')
		writeQuoted(b, cl.Value)
		return
	}
	b.WriteString(opName)
	switch {
	case op(o).unary():
	case op(o).relational() && numberRE().MatchString(cl.Value):
		b.WriteByte(' ')
		b.WriteString(cl.Value)
	default:
		b.WriteByte(' ')
		writeQuoted(b, cl.Value)
	}
}

// buildSelector parses s as a selector, or failing that treats it as
// dot-separated property names.
func buildSelector(s string) selector {
	src := strings.TrimSpace(s)
	if !strings.HasPrefix(src, "$") {
		src = "$." + src
	}
	sc := &scanner{src: src}
	if sel, err := sc.selector(); err == nil && sc.pos == len(src) {
		return sel
	}
	path := strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "$"), ".")
	var sel selector
	for _, name := range strings.Split(path, ".") {
		sel.segs = append(sel.segs, segment{kind: segField, name: name})
	}
	return sel
}
