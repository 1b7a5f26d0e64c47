package rules

import (
	"bytes"
	"net/url"
	"path"
	"strings"
)

// Text helpers: glob, iglob, iequals, icontains, urlDecode.
func init() {
	registerHelper("glob", func(params ...any) (any, error) {
		s := params[0].(string)
		found := false
		eachString(params[1:], func(p string) bool {
			found = globMatch(p, s)
			return found
		})
		return found, nil
	}, new(func(string, ...any) bool))
	registerHelper("iglob", func(params ...any) (any, error) {
		s := strings.ToLower(params[0].(string))
		found := false
		eachString(params[1:], func(p string) bool {
			found = globMatch(strings.ToLower(p), s)
			return found
		})
		return found, nil
	}, new(func(string, ...any) bool))
	registerHelper("iequals", func(params ...any) (any, error) {
		return strings.EqualFold(params[0].(string), params[1].(string)), nil
	}, new(func(string, string) bool))
	registerHelper("icontains", func(params ...any) (any, error) {
		s := params[0].(string)
		var buf [256]byte
		lower, ascii := appendLowerASCII(buf[:0], s)
		found := false
		eachString(params[1:], func(sub string) bool {
			found = containsFold(s, lower, ascii, sub)
			return found
		})
		return found, nil
	}, new(func(string, ...any) bool))
	registerHelper("urlDecode", func(params ...any) (any, error) {
		s := params[0].(string)
		if d, err := url.QueryUnescape(s); err == nil {
			return d, nil
		}
		return s, nil
	}, new(func(string) string))
}

// containsFold is strings.Contains(strings.ToLower(s), strings.ToLower(sub)).
// When s is ASCII the caller passes it lowered once (lower, from
// appendLowerASCII), so that a list of substrings (`icontains(userAgent,
// offensive_user_agents)`) costs one lowering and a fast search for each,
// with no allocation for short strings. Strings with bytes outside ASCII
// take the definition, as lowering can change their length.
func containsFold(s string, lower []byte, ascii bool, sub string) bool {
	if !ascii {
		return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
	}
	var buf [64]byte
	lsub, ok := appendLowerASCII(buf[:0], sub)
	if !ok {
		return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
	}
	return bytes.Contains(lower, lsub)
}

// appendLowerASCII appends s lowered to dst and reports true, or reports
// false (and appends a partial copy) if s has a byte outside ASCII.
func appendLowerASCII(dst []byte, s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			return dst, false
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst, true
}

// globMatch matches s against a pattern where * matches any run of
// characters (including /) and ? one character.
func globMatch(pattern, s string) bool {
	if !strings.ContainsAny(pattern, "*?") {
		return pattern == s
	}
	// path.Match treats / specially and [ as a class; escape what is not a
	// wildcard and match segment-free by replacing / with a byte that
	// cannot appear in either after the swap.
	p := globEscaper.Replace(pattern)
	ok, err := path.Match(p, strings.ReplaceAll(s, "/", globSep))
	return err == nil && ok
}

// globSep stands in for / in globMatch; globEscaper is built once (a
// Replacer per call was most of a glob's cost).
const globSep = "\x00"

var globEscaper = strings.NewReplacer("\\", "\\\\", "[", "\\[", "]", "\\]", "/", globSep)
