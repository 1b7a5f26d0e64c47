package pattern

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits from the AWS guide's quotas, and one of ours against runaway input.
const (
	maxRegexes          = 2  // "a limit of 2 regex for each filter pattern"
	maxWildcardsPerSel  = 1  // "up to one wildcard selector in a property selector"
	maxWildcardSels     = 3  // "up to three wildcard selectors in a filter pattern"
	maxDepth            = 64 // nested parentheses
	maxIndex            = 1 << 30
	bareValueCharsUsage = "letters, digits and _ - . * : / + @"
)

// Parse compiles a CloudWatch Logs JSON filter pattern such as
// `{ ($.eventName = ConsoleLogin) && ($.errorMessage = "Failed authentication") }`.
// A malformed pattern yields a *SyntaxError.
func Parse(src string) (pat *Pattern, err error) {
	p := &parser{scanner: scanner{src: src}}
	defer func() {
		if r := recover(); r != nil {
			se, ok := r.(*SyntaxError)
			if !ok {
				panic(r)
			}
			pat, err = nil, se
		}
	}()
	return &Pattern{root: p.pattern()}, nil
}

// scanner walks the source text and builds positioned errors.
type scanner struct {
	src string
	pos int
}

func (s *scanner) eof() bool { return s.pos >= len(s.src) }

func (s *scanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.pos]
}

func (s *scanner) skipSpace() {
	for !s.eof() {
		switch s.src[s.pos] {
		case ' ', '\t', '\n', '\r', '\f', '\v':
			s.pos++
		default:
			return
		}
	}
}

// found describes the text at pos for an error message.
func (s *scanner) found(pos int) string {
	if pos >= len(s.src) {
		return "end of pattern"
	}
	r, _ := utf8.DecodeRuneInString(s.src[pos:])
	return strconv.QuoteRune(r)
}

// errAt builds a SyntaxError at byte offset pos.
func (s *scanner) errAt(pos int, format string, args ...any) *SyntaxError {
	if pos > len(s.src) {
		pos = len(s.src)
	}
	line, col := 1, 1
	for _, r := range s.src[:pos] {
		if r == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return &SyntaxError{Offset: pos, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
}

// parser turns the source into a tree; it reports errors by panicking with a
// *SyntaxError, which Parse recovers.
type parser struct {
	scanner
	regexes   int
	wildcards int
}

func (p *parser) fail(pos int, format string, args ...any) {
	panic(p.errAt(pos, format, args...))
}

func (p *parser) pattern() node {
	p.skipSpace()
	if p.eof() {
		p.fail(p.pos, "empty pattern: expected '{'")
	}
	if p.peek() != '{' {
		p.fail(p.pos, "expected '{' but found %s: only JSON filter patterns are supported", p.found(p.pos))
	}
	open := p.pos
	p.pos++
	p.skipSpace()
	if p.peek() == '}' {
		p.fail(p.pos, "empty pattern: expected a condition such as $.eventName = ConsoleLogin")
	}
	root := p.or(0)
	p.skipSpace()
	switch {
	case p.eof():
		p.fail(p.pos, "missing '}' to close the '{' at %s", p.where(open))
	case p.peek() == ')':
		p.fail(p.pos, "unbalanced ')'")
	case p.peek() != '}':
		p.fail(p.pos, "unexpected %s: expected &&, || or '}'", p.found(p.pos))
	}
	p.pos++
	p.skipSpace()
	if !p.eof() {
		p.fail(p.pos, "unexpected %s after the closing '}'", p.found(p.pos))
	}
	return root
}

// where renders the line:col of pos for messages that point elsewhere.
func (p *parser) where(pos int) string {
	e := p.errAt(pos, "")
	return fmt.Sprintf("%d:%d", e.Line, e.Col)
}

func (p *parser) or(depth int) node {
	var kids []node
	for {
		k := p.and(depth)
		if o, ok := k.(*orNode); ok {
			kids = append(kids, o.kids...)
		} else {
			kids = append(kids, k)
		}
		p.skipSpace()
		if !strings.HasPrefix(p.src[p.pos:], "||") {
			break
		}
		p.pos += 2
	}
	if len(kids) == 1 {
		return kids[0]
	}
	or := &orNode{kids: kids}
	if set := newEqSet(or); set != nil {
		return set
	}
	return or
}

func (p *parser) and(depth int) node {
	var kids []node
	for {
		k := p.primary(depth)
		if a, ok := k.(*andNode); ok {
			kids = append(kids, a.kids...)
		} else {
			kids = append(kids, k)
		}
		p.skipSpace()
		if !strings.HasPrefix(p.src[p.pos:], "&&") {
			break
		}
		p.pos += 2
	}
	if len(kids) == 1 {
		return kids[0]
	}
	return &andNode{kids: kids}
}

func (p *parser) primary(depth int) node {
	p.skipSpace()
	switch c := p.peek(); {
	case p.eof():
		p.fail(p.pos, "unexpected end of pattern: expected a condition")
	case c == '(':
		open := p.pos
		if depth >= maxDepth {
			p.fail(open, "parentheses nested deeper than %d", maxDepth)
		}
		p.pos++
		e := p.or(depth + 1)
		p.skipSpace()
		if p.peek() != ')' {
			if p.eof() || p.peek() == '}' {
				p.fail(open, "unbalanced '(': no matching ')'")
			}
			p.fail(p.pos, "unexpected %s: expected &&, || or ')'", p.found(p.pos))
		}
		p.pos++
		return e
	case c == '$':
		return p.condition()
	case c == '!':
		p.fail(p.pos, "negation with '!' is not supported: use != or NOT EXISTS")
	case c == ')':
		p.fail(p.pos, "unbalanced ')': expected a condition")
	}
	p.fail(p.pos, "unexpected %s: expected a condition starting with a selector such as $.eventName", p.found(p.pos))
	return nil
}

func (p *parser) condition() node {
	selPos := p.pos
	sel, err := p.selector()
	if err != nil {
		panic(err)
	}
	if n := sel.wildcards(); n > 0 {
		p.wildcards++
		if p.wildcards > maxWildcardSels {
			p.fail(selPos, "too many wildcard selectors: CloudWatch Logs allows at most %d in a pattern", maxWildcardSels)
		}
	}
	c := &cond{sel: sel}
	p.skipSpace()
	switch ch := p.peek(); {
	case p.eof():
		p.fail(p.pos, "missing operator after selector")
	case isLetter(ch):
		c.op = p.keywordOp()
	case strings.IndexByte("=!<>~", ch) >= 0:
		start := p.pos
		for !p.eof() && strings.IndexByte("=!<>~", p.peek()) >= 0 {
			p.pos++
		}
		switch tok := p.src[start:p.pos]; tok {
		case "=":
			c.op = opEq
		case "!=":
			c.op = opNe
		case "<":
			c.op = opLt
		case ">":
			c.op = opGt
		case "<=":
			c.op = opLe
		case ">=":
			c.op = opGe
		default:
			p.fail(start, "unknown operator %q: use =, !=, <, >, <= or >=", tok)
		}
	default:
		p.fail(p.pos, "unexpected %s: expected an operator (=, !=, <, >, <=, >=, IS or NOT EXISTS)", p.found(p.pos))
	}
	if !c.op.unary() {
		p.value(c)
	}
	p.skipSpace()
	rest := p.src[p.pos:]
	switch {
	case p.eof(), strings.HasPrefix(rest, "&&"), strings.HasPrefix(rest, "||"), rest[0] == ')', rest[0] == '}':
	case rest[0] == '&' || rest[0] == '|':
		p.fail(p.pos, "unknown operator %q: use && or ||", rest[:1])
	default:
		p.fail(p.pos, "unexpected %s after the condition: quote values that contain spaces or other characters than %s", p.found(p.pos), bareValueCharsUsage)
	}
	return c
}

// keywordOp reads IS NULL, IS TRUE, IS FALSE or NOT EXISTS.
func (p *parser) keywordOp() op {
	start := p.pos
	word := strings.ToUpper(p.word())
	switch word {
	case "IS":
		p.skipSpace()
		argPos := p.pos
		switch strings.ToUpper(p.word()) {
		case "NULL":
			return opIsNull
		case "TRUE":
			return opIsTrue
		case "FALSE":
			return opIsFalse
		case "NOT":
			p.fail(start, "IS NOT is not supported by CloudWatch Logs: use != or NOT EXISTS")
		}
		p.fail(argPos, "expected NULL, TRUE or FALSE after IS, found %s", p.found(argPos))
	case "NOT":
		p.skipSpace()
		argPos := p.pos
		if strings.ToUpper(p.word()) == "EXISTS" {
			return opNotExists
		}
		p.fail(argPos, "expected EXISTS after NOT, found %s", p.found(argPos))
	case "EXISTS":
		p.fail(start, "EXISTS is not supported by CloudWatch Logs: use NOT EXISTS, or = * to require a value")
	}
	p.fail(start, "unknown operator %q: use =, !=, <, >, <=, >=, IS NULL, IS TRUE, IS FALSE or NOT EXISTS", word)
	return 0
}

func (p *parser) word() string {
	start := p.pos
	for !p.eof() && isLetter(p.peek()) {
		p.pos++
	}
	return p.src[start:p.pos]
}

// value reads the operand of a comparison into c.
func (p *parser) value(c *cond) {
	p.skipSpace()
	start := p.pos
	opName := opText[c.op]
	if p.eof() || strings.IndexByte("&|)}", p.peek()) >= 0 {
		p.fail(start, "missing value after %q", opName)
	}
	switch p.peek() {
	case '"':
		c.kind = kindString
		c.text = p.quoted()
	case '%':
		c.kind = kindRegex
		c.text = p.regex()
		re, err := regexp.Compile(c.text)
		if err != nil {
			p.fail(start, "invalid regular expression: %v", err)
		}
		c.re = re
	default:
		for !p.eof() && isBareChar(p.peek()) {
			p.pos++
		}
		if p.pos == start {
			p.fail(start, "unexpected %s: expected a value (a quoted string, a word of %s, a number or a %%regex%%)", p.found(start), bareValueCharsUsage)
		}
		c.text = p.src[start:p.pos]
		c.kind = kindString
		if numberRE().MatchString(c.text) {
			f, err := strconv.ParseFloat(c.text, 64)
			if err != nil {
				p.fail(start, "number %s is out of range", c.text)
			}
			c.kind, c.num = kindNumber, f
		}
	}
	switch {
	case c.op.relational() && c.kind != kindNumber:
		p.fail(start, "operator %q needs a number", opName)
	case c.kind == kindString:
		c.mode, c.core = stringMode(c.text)
	}
}

// stringMode classifies a string operand by its leading and trailing stars.
func stringMode(s string) (strMode, string) {
	if s != "" && strings.Trim(s, "*") == "" {
		return modeAny, ""
	}
	lead := strings.HasPrefix(s, "*")
	trail := len(s) > 1 && strings.HasSuffix(s, "*")
	switch {
	case lead && trail:
		return modeContains, s[1 : len(s)-1]
	case lead:
		return modeSuffix, s[1:]
	case trail:
		return modePrefix, s[:len(s)-1]
	}
	return modeExact, s
}

// quoted reads a double-quoted string; \" and \\ are its escapes, any other
// backslash is literal.
func (p *parser) quoted() string {
	open := p.pos
	p.pos++
	var b strings.Builder
	for {
		if p.eof() {
			p.fail(open, "unterminated string: missing closing '\"'")
		}
		ch := p.src[p.pos]
		switch {
		case ch == '"':
			p.pos++
			return b.String()
		case ch == '\\' && p.pos+1 < len(p.src) && (p.src[p.pos+1] == '"' || p.src[p.pos+1] == '\\'):
			b.WriteByte(p.src[p.pos+1])
			p.pos += 2
		default:
			b.WriteByte(ch)
			p.pos++
		}
	}
}

// regexSymbols are the characters other than letters and digits the AWS guide allows between the percent
// signs ("Supported regular expressions (regex) syntax"); a space is allowed
// too, since the guide's own examples use one.
const regexSymbols = ":_#=@/;,- ^$?[]{}|\\*+."

func (p *parser) regex() string {
	open := p.pos
	end := strings.IndexByte(p.src[open+1:], '%')
	if end < 0 {
		p.fail(open, "unterminated regular expression: missing closing '%%'")
	}
	src := p.src[open+1 : open+1+end]
	if src == "" {
		p.fail(open, "empty regular expression")
	}
	for i := 0; i < len(src); i++ {
		ch := src[i]
		if ch >= utf8.RuneSelf {
			p.fail(open+1+i, "multi-byte characters are not supported in a regular expression")
		}
		if !isLetter(ch) && !isDigit(ch) && strings.IndexByte(regexSymbols, ch) < 0 {
			p.fail(open+1+i, "character %q is not supported in a CloudWatch Logs regular expression (use \\x%02X)", ch, ch)
		}
	}
	p.regexes++
	if p.regexes > maxRegexes {
		p.fail(open, "too many regular expressions: CloudWatch Logs allows at most %d in a pattern", maxRegexes)
	}
	p.pos = open + 1 + end + 1
	return src
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isNameChar(c byte) bool {
	return isLetter(c) || isDigit(c) || c == '-' || c == '_'
}
func isBareChar(c byte) bool {
	return isNameChar(c) || strings.IndexByte(".*:/+@", c) >= 0
}

// segKind is the kind of one step of a selector.
type segKind int

const (
	segField    segKind = iota // .name or .['key']
	segIndex                   // [N]
	segAnyField                // .*
	segAnyIndex                // [*]
)

type segment struct {
	kind  segKind
	name  string
	index int
}

// selector is a parsed property selector such as $.users[0].email.
type selector struct {
	segs []segment
}

func (s selector) wildcards() int {
	n := 0
	for _, sg := range s.segs {
		if sg.kind == segAnyField || sg.kind == segAnyIndex {
			n++
		}
	}
	return n
}

// each calls fn with every value the selector reaches in record, until fn
// returns true.
func (s selector) each(record map[string]any, fn func(any) bool) {
	if record == nil {
		return
	}
	s.walk(record, 0, fn)
}

func (s selector) walk(v any, i int, fn func(any) bool) bool {
	if i == len(s.segs) {
		return fn(v)
	}
	sg := s.segs[i]
	switch sg.kind {
	case segField:
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		child, ok := m[sg.name]
		if !ok {
			return false
		}
		return s.walk(child, i+1, fn)
	case segIndex:
		a, ok := v.([]any)
		if !ok || sg.index >= len(a) {
			return false
		}
		return s.walk(a[sg.index], i+1, fn)
	case segAnyField:
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		for _, child := range m {
			if s.walk(child, i+1, fn) {
				return true
			}
		}
	case segAnyIndex:
		a, ok := v.([]any)
		if !ok {
			return false
		}
		for _, child := range a {
			if s.walk(child, i+1, fn) {
				return true
			}
		}
	}
	return false
}

func (s selector) write(b *strings.Builder) {
	b.WriteByte('$')
	for _, sg := range s.segs {
		switch sg.kind {
		case segField:
			if isPlainName(sg.name) {
				b.WriteByte('.')
				b.WriteString(sg.name)
				continue
			}
			b.WriteString(".['")
			for i := 0; i < len(sg.name); i++ {
				if sg.name[i] == '\'' || sg.name[i] == '\\' {
					b.WriteByte('\\')
				}
				b.WriteByte(sg.name[i])
			}
			b.WriteString("']")
		case segIndex:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(sg.index))
			b.WriteByte(']')
		case segAnyField:
			b.WriteString(".*")
		case segAnyIndex:
			b.WriteString("[*]")
		}
	}
}

// field is the selector without its leading "$.".
func (s selector) field() string {
	var b strings.Builder
	s.write(&b)
	return strings.TrimPrefix(b.String(), "$.")
}

func isPlainName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameChar(s[i]) {
			return false
		}
	}
	return true
}

// selector reads a property selector at the current position.
func (s *scanner) selector() (selector, error) {
	var sel selector
	start := s.pos
	if s.peek() != '$' {
		return sel, s.errAt(s.pos, "expected a selector starting with '$.', found %s", s.found(s.pos))
	}
	s.pos++
	if s.peek() != '.' {
		if s.peek() == '[' {
			return sel, s.errAt(s.pos, "array elements must follow a property: write $.name[0]")
		}
		return sel, s.errAt(s.pos, "a selector starts with '$.', found %s", s.found(s.pos))
	}
	for first := true; ; first = false {
		segPos := s.pos
		switch {
		case s.peek() == '.':
			s.pos++
			switch {
			case s.peek() == '*':
				s.pos++
				sel.segs = append(sel.segs, segment{kind: segAnyField})
			case s.peek() == '[':
				s.pos++
				name, err := s.bracketKey(segPos)
				if err != nil {
					return sel, err
				}
				sel.segs = append(sel.segs, segment{kind: segField, name: name})
			default:
				n0 := s.pos
				for !s.eof() && isNameChar(s.peek()) {
					s.pos++
				}
				if s.pos == n0 {
					return sel, s.errAt(s.pos, "expected a property name after '.', found %s (use $.['key'] for other characters)", s.found(s.pos))
				}
				sel.segs = append(sel.segs, segment{kind: segField, name: s.src[n0:s.pos]})
			}
		case s.peek() == '[' && !first:
			s.pos++
			switch {
			case s.peek() == '*':
				s.pos++
				if s.peek() != ']' {
					return sel, s.errAt(s.pos, "expected ']' after '[*', found %s", s.found(s.pos))
				}
				s.pos++
				sel.segs = append(sel.segs, segment{kind: segAnyIndex})
			case s.peek() == '\'':
				name, err := s.bracketKey(segPos)
				if err != nil {
					return sel, err
				}
				sel.segs = append(sel.segs, segment{kind: segField, name: name})
			case isDigit(s.peek()):
				n0 := s.pos
				for !s.eof() && isDigit(s.peek()) {
					s.pos++
				}
				idx, err := strconv.Atoi(s.src[n0:s.pos])
				if err != nil || idx > maxIndex {
					return sel, s.errAt(n0, "array index %s is too large", s.src[n0:s.pos])
				}
				if s.peek() != ']' {
					return sel, s.errAt(s.pos, "expected ']' after the array index, found %s", s.found(s.pos))
				}
				s.pos++
				sel.segs = append(sel.segs, segment{kind: segIndex, index: idx})
			default:
				return sel, s.errAt(s.pos, "expected an array index, '*' or a quoted key after '[', found %s", s.found(s.pos))
			}
		default:
			if sel.wildcards() > maxWildcardsPerSel {
				return sel, s.errAt(start, "only one wildcard is allowed in a selector")
			}
			return sel, nil
		}
	}
}

// bracketKey reads 'key'] after the opening '[' (s.pos at the quote).
func (s *scanner) bracketKey(segPos int) (string, error) {
	if s.peek() != '\'' {
		return "", s.errAt(s.pos, "expected a quoted key such as ['cluster.name'], found %s", s.found(s.pos))
	}
	s.pos++
	var b strings.Builder
	for {
		if s.eof() {
			return "", s.errAt(segPos, "unterminated key: missing closing \"']\"")
		}
		ch := s.src[s.pos]
		if ch == '\'' {
			s.pos++
			break
		}
		if ch == '\\' && s.pos+1 < len(s.src) && (s.src[s.pos+1] == '\'' || s.src[s.pos+1] == '\\') {
			ch = s.src[s.pos+1]
			s.pos++
		}
		b.WriteByte(ch)
		s.pos++
	}
	if s.peek() != ']' {
		return "", s.errAt(s.pos, "expected ']' after the quoted key, found %s", s.found(s.pos))
	}
	s.pos++
	return b.String(), nil
}
