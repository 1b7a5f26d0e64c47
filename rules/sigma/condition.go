package sigma

import (
	"fmt"
	"regexp"
	"strings"
)

// condToken is one word or parenthesis of a condition, with its byte
// offset in the condition text.
type condToken struct {
	text string
	off  int
}

// condError is a problem at a byte offset of the condition text.
type condError struct {
	off int
	msg string
}

func (e *condError) Error() string { return e.msg }

func tokenizeCondition(s string) ([]condToken, error) {
	var out []condToken
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')':
			out = append(out, condToken{string(c), i})
			i++
		case c == '|':
			return nil, &condError{i, "aggregations in conditions (`| count() ...`) are not supported (Sigma replaced them with correlation rules; trailwatch counts with a rule's threshold:)"}
		case isWordByte(c):
			j := i
			for j < len(s) && isWordByte(s[j]) {
				j++
			}
			out = append(out, condToken{s[i:j], i})
			i = j
		default:
			return nil, &condError{i, fmt.Sprintf("unexpected character %q in condition", c)}
		}
	}
	return out, nil
}

func isWordByte(c byte) bool {
	return c == '_' || c == '-' || c == '*' || c == '.' ||
		('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
}

// condParser parses a Sigma condition and builds its expression, with
// detections[name] the expression of each search identifier.
type condParser struct {
	src        string
	toks       []condToken
	pos        int
	detections map[string]string
	order      []string // identifiers in file order, for `them`
	used       map[string]bool
}

// compileCondition parses cond (and, or, not, parentheses, `1 of x`,
// `all of x`, `any of x`, `them`) and returns the expression it stands for.
func compileCondition(cond string, detections map[string]string, order []string) (string, map[string]bool, error) {
	toks, err := tokenizeCondition(cond)
	if err != nil {
		return "", nil, err
	}
	p := &condParser{src: cond, toks: toks, detections: detections, order: order, used: map[string]bool{}}
	if len(toks) == 0 {
		return "", nil, &condError{0, "the condition is empty"}
	}
	out, err := p.or()
	if err != nil {
		return "", nil, err
	}
	if p.pos < len(p.toks) {
		t := p.toks[p.pos]
		return "", nil, &condError{t.off, fmt.Sprintf("unexpected %q in condition", t.text)}
	}
	return out, p.used, nil
}

func (p *condParser) peek() (condToken, bool) {
	if p.pos < len(p.toks) {
		return p.toks[p.pos], true
	}
	return condToken{off: len(p.src)}, false
}

func (p *condParser) or() (string, error) { return p.chain("or", " || ", p.and) }

func (p *condParser) and() (string, error) { return p.chain("and", " && ", p.not) }

// chain reads operands joined by the keyword op (one level of the
// grammar) and joins their expressions with sep.
func (p *condParser) chain(op, sep string, operand func() (string, error)) (string, error) {
	var parts []string
	for {
		e, err := operand()
		if err != nil {
			return "", err
		}
		parts = append(parts, e)
		if t, ok := p.peek(); !ok || t.text != op {
			return join(parts, sep), nil
		}
		p.pos++
	}
}

func (p *condParser) not() (string, error) {
	t, ok := p.peek()
	if ok && t.text == "not" {
		p.pos++
		inner, err := p.not()
		if err != nil {
			return "", err
		}
		return "!(" + inner + ")", nil
	}
	return p.primary()
}

var keywords = map[string]bool{"and": true, "or": true, "not": true, "of": true, "them": true}

func (p *condParser) primary() (string, error) {
	t, ok := p.peek()
	if !ok {
		return "", &condError{t.off, "the condition ends where a search identifier, `not` or `(` is expected"}
	}
	switch {
	case t.text == "(":
		p.pos++
		inner, err := p.or()
		if err != nil {
			return "", err
		}
		c, ok := p.peek()
		if !ok || c.text != ")" {
			return "", &condError{c.off, "missing `)` in condition"}
		}
		p.pos++
		return "(" + inner + ")", nil
	case t.text == ")":
		return "", &condError{t.off, "unexpected `)` in condition"}
	case t.text == "1" || t.text == "any" || t.text == "all":
		if n := p.pos + 1; n < len(p.toks) && p.toks[n].text == "of" {
			return p.quantified()
		}
	case keywords[t.text]:
		return "", &condError{t.off, fmt.Sprintf("unexpected %q in condition", t.text)}
	}
	p.pos++
	if strings.Contains(t.text, "*") {
		return "", &condError{t.off, fmt.Sprintf("wildcard identifier %q needs a quantifier (`1 of %s` or `all of %s`)", t.text, t.text, t.text)}
	}
	e, ok := p.detections[t.text]
	if !ok {
		return "", &condError{t.off, fmt.Sprintf("search identifier %q is not defined in detection", t.text)}
	}
	p.used[t.text] = true
	return "(" + e + ")", nil
}

// quantified reads `1 of x`, `any of x` or `all of x`.
func (p *condParser) quantified() (string, error) {
	q := p.toks[p.pos]
	p.pos += 2 // quantifier and "of"
	t, ok := p.peek()
	if !ok || t.text == "(" || t.text == ")" || (keywords[t.text] && t.text != "them") {
		return "", &condError{t.off, fmt.Sprintf("`%s of` must be followed by a search identifier pattern or `them`", q.text)}
	}
	p.pos++
	var names []string
	if t.text == "them" {
		for _, n := range p.order {
			if !strings.HasPrefix(n, "_") {
				names = append(names, n)
			}
		}
	} else {
		re := regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(t.text), `\*`, ".*") + "$")
		for _, n := range p.order {
			if re.MatchString(n) && (strings.HasPrefix(t.text, "_") || !strings.HasPrefix(n, "_")) {
				names = append(names, n)
			}
		}
	}
	if len(names) == 0 {
		return "", &condError{t.off, fmt.Sprintf("`%s of %s` names no search identifier in detection", q.text, t.text)}
	}
	parts := make([]string, len(names))
	for i, n := range names {
		p.used[n] = true
		parts[i] = "(" + p.detections[n] + ")"
	}
	if q.text == "all" {
		return "(" + join(parts, " && ") + ")", nil
	}
	return "(" + join(parts, " || ") + ")", nil
}

func join(parts []string, sep string) string {
	if len(parts) == 1 {
		return parts[0]
	}
	return strings.Join(parts, sep)
}
