package rules

import (
	"bytes"
	"math/rand/v2"
	"net/url"
	"path"
	"strings"
	"sync/atomic"
	"unsafe"
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

// icontainsAny is icontains(s, subs...) for a list of strings.
func icontainsAny(s string, subs []string) bool {
	var buf [256]byte
	lower, ascii := appendLowerASCII(buf[:0], s)
	for _, sub := range subs {
		if containsFold(s, lower, ascii, sub) {
			return true
		}
	}
	return false
}

// foldMatcher is icontains(s, subs...) with the substrings known in
// advance: one pass over s finds every place where the first two bytes of
// an ASCII substring occur (case-insensitively, from a bitmap of those
// pairs), and only there compares the substrings that start with them. A
// string s with bytes outside ASCII, and substrings shorter than two bytes
// or outside ASCII, take icontainsAny.
//
// The answers for the last strings matched are remembered (the field it
// runs on every record, userAgent, takes a few values in a trail): a
// string seen again costs a hash and a comparison instead of a scan.
type foldMatcher struct {
	subs   []string             // all of them, for s outside ASCII
	others []string             // shorter than two bytes, or outside ASCII
	pairs  [1 << 16 / 64]uint64 // bitmap of the lowered first two bytes
	byPair map[uint16][]string  // lowered substrings by their first two bytes
	seed   uint64
	recent [foldRecent]atomic.Pointer[foldAnswer] // by foldSlot
}

// foldAnswer is match's answer for s.
type foldAnswer struct {
	s     string
	found bool
}

const (
	foldRecent = 512
	// Strings shorter than foldRecentMin are scanned faster than hashed;
	// longer than foldRecentMax are not kept.
	foldRecentMin, foldRecentMax = 16, 512
)

func newFoldMatcher(subs []string) *foldMatcher {
	m := &foldMatcher{subs: subs, byPair: map[uint16][]string{}, seed: rand.Uint64()}
	for _, sub := range subs {
		lower, ascii := appendLowerASCII(nil, sub)
		if !ascii || len(lower) < 2 {
			m.others = append(m.others, sub)
			continue
		}
		k := uint16(lower[0])<<8 | uint16(lower[1])
		m.pairs[k>>6] |= 1 << (k & 63)
		m.byPair[k] = append(m.byPair[k], string(lower))
	}
	return m
}

func (m *foldMatcher) match(s string) bool {
	if len(s) < foldRecentMin || len(s) > foldRecentMax {
		return m.scan(s)
	}
	slot := &m.recent[foldSlot(m.seed, s)]
	if a := slot.Load(); a != nil && a.s == s {
		return a.found
	}
	found := m.scan(s)
	// s may point into a record's buffer, which is reused: keep a copy.
	slot.Store(&foldAnswer{s: strings.Clone(s), found: found})
	return found
}

// foldSlot picks the slot of m.recent for s (16 to 512 bytes): a mix of
// its length and three of its 8-byte words (first, middle, last) with a
// per-matcher seed, a few instructions where maphash reads all of s. Two
// strings sharing a slot only cost a scan each time they alternate: the
// slot's string is compared whole before its answer is used.
func foldSlot(seed uint64, s string) uint64 {
	p := unsafe.StringData(s)
	n := uintptr(len(s))
	a := *(*uint64)(unsafe.Pointer(p))
	b := *(*uint64)(unsafe.Add(unsafe.Pointer(p), n/2-4))
	c := *(*uint64)(unsafe.Add(unsafe.Pointer(p), n-8))
	h := (a ^ seed ^ uint64(n)*0x9e3779b97f4a7c15) * 0xbf58476d1ce4e5b9
	h = (h ^ b ^ h>>29) * 0x94d049bb133111eb
	h = (h ^ c ^ h>>32) * 0xbf58476d1ce4e5b9
	return (h ^ h>>31) % foldRecent
}

// scan is match without the remembered answers.
func (m *foldMatcher) scan(s string) bool {
	if len(m.others) > 0 && icontainsAny(s, m.others) {
		return true
	}
	for i := 0; i+1 < len(s); i++ {
		c0, c1 := s[i], s[i+1]
		if c0|c1 >= 0x80 {
			return icontainsAny(s, m.subs)
		}
		k := uint16(lowerASCII[c0])<<8 | uint16(lowerASCII[c1])
		if m.pairs[k>>6]&(1<<(k&63)) == 0 {
			continue
		}
		for _, sub := range m.byPair[k] {
			if len(s)-i >= len(sub) && equalFoldASCII(s[i:i+len(sub)], sub) {
				return true
			}
		}
	}
	if len(s) > 0 && s[len(s)-1] >= 0x80 {
		return icontainsAny(s, m.subs)
	}
	return false
}

// lowerASCII maps an ASCII byte to its lower case.
var lowerASCII = func() (t [128]byte) {
	for i := range t {
		t[i] = byte(i)
		if 'A' <= i && i <= 'Z' {
			t[i] += 'a' - 'A'
		}
	}
	return t
}()

// equalFoldASCII reports whether s, lowered, is lower (an ASCII string
// already lowered); a byte of s outside ASCII never matches.
func equalFoldASCII(s, lower string) bool {
	for i := 0; i < len(lower); i++ {
		c := s[i]
		if c >= 0x80 || lowerASCII[c] != lower[i] {
			return false
		}
	}
	return true
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
