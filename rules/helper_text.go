package rules

import (
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
		return strings.Contains(strings.ToLower(params[0].(string)), strings.ToLower(params[1].(string))), nil
	}, new(func(string, string) bool))
	registerHelper("urlDecode", func(params ...any) (any, error) {
		s := params[0].(string)
		if d, err := url.QueryUnescape(s); err == nil {
			return d, nil
		}
		return s, nil
	}, new(func(string) string))
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
