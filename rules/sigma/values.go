package sigma

import (
	"regexp"
	"strconv"
	"strings"
)

// q quotes s as a string literal of the rule language (expr accepts Go's
// escapes).
func q(s string) string { return strconv.Quote(s) }

// pattern is a Sigma string: literal text with `*` (any run) and `?` (one
// character) wildcards; `\` escapes a wildcard or a backslash, and is
// itself otherwise (so Windows paths need no doubling).
type pattern []patternPart

type patternPart struct {
	lit  string
	wild byte // '*' or '?', or 0 for a literal
}

func parsePattern(s string) pattern {
	var out pattern
	var acc strings.Builder
	flush := func() {
		if acc.Len() > 0 {
			out = append(out, patternPart{lit: acc.String()})
			acc.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && (s[i+1] == '*' || s[i+1] == '?' || s[i+1] == '\\'):
			acc.WriteByte(s[i+1])
			i++
		case c == '*' || c == '?':
			flush()
			out = append(out, patternPart{wild: c})
		default:
			acc.WriteByte(c)
		}
	}
	flush()
	return out
}

// literal returns the pattern's text when it has no wildcard.
func (p pattern) literal() (string, bool) {
	var b strings.Builder
	for _, part := range p {
		if part.wild != 0 {
			return "", false
		}
		b.WriteString(part.lit)
	}
	return b.String(), true
}

// matchesEmpty reports whether the pattern matches "" (only `*` parts).
func (p pattern) matchesEmpty() bool {
	for _, part := range p {
		if part.wild != '*' {
			return false
		}
	}
	return true
}

// wrap adds a leading and/or trailing `*` (contains, startswith, endswith).
func (p pattern) wrap(before, after bool) pattern {
	out := pattern{}
	if before {
		out = append(out, patternPart{wild: '*'})
	}
	out = append(out, p...)
	if after {
		out = append(out, patternPart{wild: '*'})
	}
	return out
}

// shape says what a pattern with wildcards only at its ends asks for, so
// the common cases compile to plain string operations rather than a
// regular expression.
func (p pattern) shape() (lit string, leading, trailing, ok bool) {
	i, j := 0, len(p)
	for i < j && p[i].wild == '*' {
		leading = true
		i++
	}
	for j > i && p[j-1].wild == '*' {
		trailing = true
		j--
	}
	mid := p[i:j]
	lit, ok = mid.literal()
	return lit, leading, trailing, ok
}

// regex returns an anchored RE2 expression for the pattern.
func (p pattern) regex(cased bool) string {
	var b strings.Builder
	if cased {
		b.WriteString("(?s)^")
	} else {
		b.WriteString("(?is)^")
	}
	for _, part := range p {
		switch part.wild {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(part.lit))
		}
	}
	b.WriteString("$")
	return b.String()
}
