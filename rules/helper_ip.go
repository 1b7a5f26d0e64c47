package rules

import (
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
)

// IP address helpers: inCIDR, isIP, isPrivateIP, isOpenCIDR.
func init() {
	registerHelper("inCIDR", func(params ...any) (any, error) {
		ip, _ := params[0].(string)
		found := false
		eachString(params[1:], func(c string) bool {
			found = inCIDR(ip, c)
			return found
		})
		return found, nil
	}, new(func(string, ...any) bool))
	registerHelper("isIP", func(params ...any) (any, error) {
		_, err := netip.ParseAddr(params[0].(string))
		return err == nil, nil
	}, new(func(string) bool))
	registerHelper("isPrivateIP", func(params ...any) (any, error) {
		a, err := netip.ParseAddr(params[0].(string))
		if err != nil {
			return false, nil
		}
		return a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || cgnat.Contains(a.Unmap()), nil
	}, new(func(string) bool))
	registerHelper("isOpenCIDR", func(params ...any) (any, error) {
		return isOpenCIDR(toString(params[0])), nil
	}, new(func(any) bool))
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

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
