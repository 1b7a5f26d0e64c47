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
		return isIP(params[0].(string)), nil
	}, new(func(string) bool))
	registerHelper("isPrivateIP", func(params ...any) (any, error) {
		return isPrivateIP(params[0].(string)), nil
	}, new(func(string) bool))
	registerHelper("isOpenCIDR", func(params ...any) (any, error) {
		return isOpenCIDR(toString(params[0])), nil
	}, new(func(any) bool))
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

func isPrivateIP(s string) bool {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return false
	}
	return a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || cgnat.Contains(a.Unmap())
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

// cidrMatcher is inCIDR(ip, cidrs...) with the CIDRs parsed once.
type cidrMatcher struct{ prefixes []netip.Prefix }

func newCIDRMatcher(cidrs []string) *cidrMatcher {
	m := &cidrMatcher{}
	for _, c := range cidrs {
		if p, ok := parsePrefix(c); ok {
			m.prefixes = append(m.prefixes, p)
		}
	}
	return m
}

func (m *cidrMatcher) contains(ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range m.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
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
