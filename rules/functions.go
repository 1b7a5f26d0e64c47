package rules

import (
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/expr-lang/expr"
)

// Helper functions available to every rule expression and summary
// template, in addition to expr-lang's built-ins (lower, upper, hasPrefix,
// hasSuffix, contains via `contains`, split, trim, fromJSON, any, all, ...).
// Each is total: bad input (an invalid IP, a nil value) gives false or an
// empty result, never a runtime error, because real records are messy.
//
// The names and signatures are documented for rule authors in
// docs/rules.md; keep the two in step.
func helperFunctions() []expr.Option {
	return []expr.Option{
		expr.Function("inCIDR", func(params ...any) (any, error) {
			ip, _ := params[0].(string)
			found := false
			eachString(params[1:], func(c string) bool {
				found = inCIDR(ip, c)
				return found
			})
			return found, nil
		}, new(func(string, ...any) bool)),
		expr.Function("isIP", func(params ...any) (any, error) {
			_, err := netip.ParseAddr(params[0].(string))
			return err == nil, nil
		}, new(func(string) bool)),
		expr.Function("isPrivateIP", func(params ...any) (any, error) {
			a, err := netip.ParseAddr(params[0].(string))
			if err != nil {
				return false, nil
			}
			return a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || cgnat.Contains(a.Unmap()), nil
		}, new(func(string) bool)),
		expr.Function("isOpenCIDR", func(params ...any) (any, error) {
			return isOpenCIDR(toString(params[0])), nil
		}, new(func(any) bool)),
		expr.Function("glob", func(params ...any) (any, error) {
			s := params[0].(string)
			found := false
			eachString(params[1:], func(p string) bool {
				found = globMatch(p, s)
				return found
			})
			return found, nil
		}, new(func(string, ...any) bool)),
		expr.Function("iglob", func(params ...any) (any, error) {
			s := strings.ToLower(params[0].(string))
			found := false
			eachString(params[1:], func(p string) bool {
				found = globMatch(strings.ToLower(p), s)
				return found
			})
			return found, nil
		}, new(func(string, ...any) bool)),
		expr.Function("iequals", func(params ...any) (any, error) {
			return strings.EqualFold(params[0].(string), params[1].(string)), nil
		}, new(func(string, string) bool)),
		expr.Function("icontains", func(params ...any) (any, error) {
			return strings.Contains(strings.ToLower(params[0].(string)), strings.ToLower(params[1].(string))), nil
		}, new(func(string, string) bool)),
		expr.Function("toList", func(params ...any) (any, error) {
			return toList(params[0]), nil
		}, new(func(any) []any)),
		expr.Function("dig", func(params ...any) (any, error) {
			return dig(params[0], params[1].(string)), nil
		}, new(func(any, string) any)),
		expr.Function("str", func(params ...any) (any, error) {
			return toString(params[0]), nil
		}, new(func(any) string)),
		expr.Function("urlDecode", func(params ...any) (any, error) {
			s := params[0].(string)
			if d, err := url.QueryUnescape(s); err == nil {
				return d, nil
			}
			return s, nil
		}, new(func(string) string)),
		expr.Function("arnAccount", func(params ...any) (any, error) {
			return arnPart(params[0].(string), 4), nil
		}, new(func(string) string)),
		expr.Function("arnService", func(params ...any) (any, error) {
			return arnPart(params[0].(string), 2), nil
		}, new(func(string) string)),
		expr.Function("arnResource", func(params ...any) (any, error) {
			return arnPart(params[0].(string), 5), nil
		}, new(func(string) string)),
		expr.Function("portInRange", func(params ...any) (any, error) {
			p, ok1 := toFloat(params[0])
			from, ok2 := toFloat(params[1])
			to, ok3 := toFloat(params[2])
			if !ok1 || !ok2 {
				return false, nil
			}
			if !ok3 {
				to = from
			}
			// -1 means "all ports" in EC2 security group rules.
			if from == -1 || (from <= p && p <= to) {
				return true, nil
			}
			return false, nil
		}, new(func(any, any, any) bool)),
	}
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// eachString calls fn with every string in args, descending into lists (a
// named list such as office_cidrs may be passed whole), until fn returns
// true.
func eachString(args []any, fn func(string) bool) bool {
	for _, a := range args {
		switch x := a.(type) {
		case string:
			if fn(x) {
				return true
			}
		case []any:
			if eachString(x, fn) {
				return true
			}
		case []string:
			for _, s := range x {
				if fn(s) {
					return true
				}
			}
		}
	}
	return false
}

// prefixCache holds parsed CIDRs. Rules almost always pass constants, but
// an argument could come from the event, so the cache is bounded and keys
// are cloned (header strings may be views of a reused read buffer).
var (
	prefixCache     sync.Map // string -> netip.Prefix
	prefixCacheSize atomic.Int64
)

const prefixCacheMax = 4096

func inCIDR(ip, cidr string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	p, ok := parsePrefix(cidr)
	return ok && p.Contains(a.Unmap())
}

func parsePrefix(cidr string) (netip.Prefix, bool) {
	if v, ok := prefixCache.Load(cidr); ok {
		p, ok := v.(netip.Prefix)
		return p, ok
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		// A bare address is a /32 or /128.
		b, err2 := netip.ParseAddr(cidr)
		if err2 != nil {
			return netip.Prefix{}, false
		}
		p = netip.PrefixFrom(b, b.BitLen())
	}
	p = p.Masked()
	if prefixCacheSize.Load() < prefixCacheMax {
		if _, loaded := prefixCache.LoadOrStore(strings.Clone(cidr), p); !loaded {
			prefixCacheSize.Add(1)
		}
	}
	return p, true
}

func isOpenCIDR(s string) bool {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	return err == nil && p.Bits() == 0
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
	const sep = "\x00"
	p := strings.NewReplacer("\\", "\\\\", "[", "\\[", "]", "\\]", "/", sep).Replace(pattern)
	ok, err := path.Match(p, strings.ReplaceAll(s, "/", sep))
	return err == nil && ok
}

func toList(v any) []any {
	switch x := v.(type) {
	case nil:
		return []any{}
	case []any:
		return x
	case []string:
		out := make([]any, len(x))
		for i, s := range x {
			out[i] = s
		}
		return out
	default:
		return []any{v}
	}
}

func toString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case fmt.Stringer:
		return x.String()
	default:
		return fmt.Sprint(x)
	}
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return f, err == nil
	}
	return 0, false
}

// dig walks a dotted path (a.b.0.c or a.b[0].c) through maps and lists,
// returning nil wherever the path does not exist.
func dig(v any, p string) any {
	p = strings.NewReplacer("[", ".", "]", "").Replace(p)
	for _, part := range strings.Split(p, ".") {
		if part == "" {
			continue
		}
		switch x := v.(type) {
		case map[string]any:
			v = x[part]
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// arnPart returns field i of arn:partition:service:region:account:resource.
func arnPart(arn string, i int) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" {
		return ""
	}
	return parts[i]
}
