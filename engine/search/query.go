package search

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/trailwatch/trailwatch/rules"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
	"github.com/trailwatch/trailwatch/rules/pattern"
)

// Query is what to look for. Every set constraint must hold (they combine
// with AND, as do the lookup attributes of Event History); the zero Query
// matches every record.
type Query struct {
	// AccessKey is userIdentity.accessKeyId.
	AccessKey string
	// EventName is eventName, exactly.
	EventName string
	// EventSource is eventSource; a name without a dot is a service short
	// name, "ec2" for "ec2.amazonaws.com" (see NormalizeEventSource).
	EventSource string
	// EventID is eventID.
	EventID string
	// User is a user name, a principal or session issuer ARN, a principal
	// id or a role session name; see MatchUser.
	User string
	// Principal is the caller's ARN (userIdentity.arn), the role an
	// assumed-role session came from (the session issuer's ARN), or a
	// principal id, exactly.
	Principal string
	// SourceIP is sourceIPAddress exactly (an address, or a service host
	// name such as ec2.amazonaws.com), or a CIDR block holding it.
	SourceIP string
	// ResourceType is a type from resources[].type or ResourceMappings.
	ResourceType string
	// ResourceName is a resource's ARN, the last part of its ARN, or a name
	// from a mapped name field.
	ResourceName string
	// ReadOnly, when set, is the readOnly value required.
	ReadOnly *bool
	// Where is a condition in the rule expression language
	// (rules.CompileCondition).
	Where *rules.Condition
	// Start and End bound eventTime to [Start, End); a zero bound is open.
	// With either set, a record without an eventTime does not match.
	Start, End time.Time
}

// NormalizeEventSource turns a service short name ("ec2") into its
// eventSource ("ec2.amazonaws.com"); a value with a dot is returned as is.
func NormalizeEventSource(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || strings.Contains(s, ".") {
		return s
	}
	return s + ".amazonaws.com"
}

// InRange reports whether t is inside the query's time range.
func (q *Query) InRange(t time.Time) bool {
	if q.Start.IsZero() && q.End.IsZero() {
		return true
	}
	if t.IsZero() {
		return false
	}
	if !q.Start.IsZero() && t.Before(q.Start) {
		return false
	}
	if !q.End.IsZero() && !t.Before(q.End) {
		return false
	}
	return true
}

// Match reports whether ev satisfies every constraint of the query. The
// error is the Where condition's, failing at run time on this event.
func (q *Query) Match(ev *cloudtrail.Event) (bool, error) {
	u := &ev.UserIdentity
	switch {
	case !q.InRange(ev.EventTime),
		q.EventID != "" && ev.EventID != q.EventID,
		q.EventName != "" && ev.EventName != q.EventName,
		q.EventSource != "" && ev.EventSource != NormalizeEventSource(q.EventSource),
		q.AccessKey != "" && u.AccessKeyID != q.AccessKey,
		q.ReadOnly != nil && ev.ReadOnly != *q.ReadOnly,
		q.User != "" && !MatchUser(ev, q.User),
		q.Principal != "" && !matchPrincipal(ev, q.Principal),
		q.SourceIP != "" && !MatchSourceIP(ev.SourceIPAddress, q.SourceIP),
		q.ResourceType != "" && !matchResourceType(ev, q.ResourceType),
		q.ResourceName != "" && !matchResourceName(ev, q.ResourceName):
		return false, nil
	}
	if q.Where != nil {
		return q.Where.Eval(ev)
	}
	return true, nil
}

// MatchUser reports whether user names the caller of ev: it equals
// userIdentity.userName, userIdentity.arn, userIdentity.principalId, the
// session issuer's userName or ARN, the last part of userIdentity.arn (a
// role session name, a federated user, "root"), or the part of principalId
// after its last ':' (the role session name).
func MatchUser(ev *cloudtrail.Event, user string) bool {
	u := &ev.UserIdentity
	si := &u.SessionContext.SessionIssuer
	if user == u.UserName || user == u.ARN || user == u.PrincipalID || user == si.UserName || user == si.ARN {
		return true
	}
	if u.ARN != "" && arnName(u.ARN) == user {
		return true
	}
	if i := strings.LastIndexByte(u.PrincipalID, ':'); i >= 0 && u.PrincipalID[i+1:] == user {
		return true
	}
	return false
}

func matchPrincipal(ev *cloudtrail.Event, principal string) bool {
	u := &ev.UserIdentity
	return principal == u.ARN || principal == u.SessionContext.SessionIssuer.ARN || principal == u.PrincipalID
}

// MatchSourceIP reports whether a record's sourceIPAddress is want: the
// same string, or, when want is a CIDR block, an address inside it.
func MatchSourceIP(sourceIP, want string) bool {
	if sourceIP == want {
		return true
	}
	pfx, err := netip.ParsePrefix(want)
	if err != nil {
		return false
	}
	addr, err := netip.ParseAddr(sourceIP)
	return err == nil && pfx.Contains(addr.Unmap())
}

func matchResourceType(ev *cloudtrail.Event, typ string) bool {
	for _, r := range ev.Resources {
		if r.Type == typ {
			return true
		}
	}
	for i := range ResourceMappings {
		if m := &ResourceMappings[i]; m.Type == typ && m.applies(ev) {
			return true
		}
	}
	return false
}

func matchResourceName(ev *cloudtrail.Event, name string) bool {
	for _, r := range ev.Resources {
		if r.ARN == name || arnName(r.ARN) == name {
			return true
		}
	}
	for i := range ResourceMappings {
		m := &ResourceMappings[i]
		if !m.applies(ev) {
			continue
		}
		for _, f := range m.NameFields {
			for _, v := range fieldStrings(ev, f) {
				if v == name {
					return true
				}
			}
		}
	}
	return false
}

// literals returns strings that every matching record's raw JSON contains
// verbatim (when it holds no escape sequences), for a cheap first test.
func (q *Query) literals() [][]byte {
	var out [][]byte
	ip := q.SourceIP
	if _, err := netip.ParsePrefix(ip); err == nil {
		ip = "" // a block: no literal every match holds
	}
	for _, s := range []string{q.EventID, q.AccessKey, q.EventName, NormalizeEventSource(q.EventSource), q.User, q.Principal, ip} {
		if s != "" {
			out = append(out, []byte(s))
		}
	}
	return out
}

// quickReject reports whether raw certainly does not match: it lacks one
// of the query's literal values. Without a backslash in raw every decoded
// string appears in it verbatim, so the test is exact; with one it is
// skipped.
func quickReject(raw []byte, lits [][]byte) bool {
	if len(lits) == 0 || bytes.IndexByte(raw, '\\') >= 0 {
		return false
	}
	for _, l := range lits {
		if !bytes.Contains(raw, l) {
			return true
		}
	}
	return false
}

// MaxPatternLength is the longest filter pattern FilterLogEvents accepts.
const MaxPatternLength = 1024

// FilterPattern renders the query's attribute constraints as a CloudWatch
// Logs JSON filter pattern that every matching record satisfies, or "" when
// none can be expressed. It is a necessary condition only: Where, the time
// range and readOnly false stay local, and a constraint whose pattern would
// break CloudWatch's limits (1024 characters, three selector wildcards) is
// left out, never approximated.
func (q *Query) FilterPattern() string {
	var groups [][]pattern.Clause
	for _, g := range q.patternGroups() {
		if validPattern(joinGroups([][]pattern.Clause{g})) {
			groups = append(groups, g)
		}
	}
	for len(groups) > 0 {
		if p := joinGroups(groups); validPattern(p) {
			return p
		}
		// The groups are ordered most selective first: drop the last.
		groups = groups[:len(groups)-1]
	}
	return ""
}

func validPattern(p string) bool {
	if len(p) > MaxPatternLength {
		return false
	}
	_, err := pattern.Parse(p)
	return err == nil
}

// patternGroups returns the query's constraints as pattern conjuncts, each
// a disjunction of clauses, most selective first.
func (q *Query) patternGroups() [][]pattern.Clause {
	eq := func(sel, v string) pattern.Clause { return pattern.Clause{Selector: sel, Op: "=", Value: v} }
	var groups [][]pattern.Clause
	if q.EventID != "" {
		groups = append(groups, []pattern.Clause{eq("eventID", q.EventID)})
	}
	if q.AccessKey != "" {
		groups = append(groups, []pattern.Clause{eq("userIdentity.accessKeyId", q.AccessKey)})
	}
	if q.EventName != "" {
		groups = append(groups, []pattern.Clause{eq("eventName", q.EventName)})
	}
	if q.User != "" {
		v := q.User
		groups = append(groups, []pattern.Clause{
			eq("userIdentity.userName", v),
			eq("userIdentity.arn", v),
			eq("userIdentity.arn", "*/"+v),
			eq("userIdentity.arn", "*:"+v),
			eq("userIdentity.principalId", v),
			eq("userIdentity.principalId", "*:"+v),
			eq("userIdentity.sessionContext.sessionIssuer.userName", v),
			eq("userIdentity.sessionContext.sessionIssuer.arn", v),
		})
	}
	if q.Principal != "" {
		groups = append(groups, []pattern.Clause{
			eq("userIdentity.arn", q.Principal),
			eq("userIdentity.sessionContext.sessionIssuer.arn", q.Principal),
			eq("userIdentity.principalId", q.Principal),
		})
	}
	if q.SourceIP != "" {
		if _, err := netip.ParsePrefix(q.SourceIP); err != nil {
			groups = append(groups, []pattern.Clause{eq("sourceIPAddress", q.SourceIP)})
		}
	}
	if q.ResourceName != "" {
		g := []pattern.Clause{eq("resources[*].ARN", "*"+q.ResourceName)}
		var fields []string
		for _, m := range ResourceMappings {
			if q.ResourceType != "" && m.Type != q.ResourceType {
				continue
			}
			for _, f := range m.NameFields {
				if !contains(fields, f) {
					fields = append(fields, f)
				}
			}
		}
		for _, f := range fields {
			g = append(g, eq(f, q.ResourceName))
		}
		groups = append(groups, g)
	}
	if q.ResourceType != "" {
		g := []pattern.Clause{eq("resources[*].type", q.ResourceType)}
		for _, m := range ResourceMappings {
			if m.Type != q.ResourceType {
				continue
			}
			for _, n := range m.EventNames {
				g = append(g, eq("eventName", n))
			}
		}
		groups = append(groups, g)
	}
	if q.EventSource != "" {
		groups = append(groups, []pattern.Clause{eq("eventSource", NormalizeEventSource(q.EventSource))})
	}
	if q.ReadOnly != nil && *q.ReadOnly {
		// Locally readOnly is decoded leniently ("true" as a string counts):
		// any string or number may be true, only a JSON false, a null or
		// absence certainly is not.
		groups = append(groups, []pattern.Clause{{Selector: "readOnly", Op: "IS TRUE"}, eq("readOnly", "*")})
	}
	return groups
}

// joinGroups renders groups as one pattern: the groups joined by &&, the
// clauses of each by ||.
func joinGroups(groups [][]pattern.Clause) string {
	parts := make([]string, 0, len(groups))
	for _, g := range groups {
		alts := make([]string, 0, len(g))
		for _, c := range g {
			alts = append(alts, clauseText(c))
		}
		s := strings.Join(alts, " || ")
		if len(groups) > 1 && len(alts) > 1 {
			s = "(" + s + ")"
		}
		parts = append(parts, s)
	}
	return "{ " + strings.Join(parts, " && ") + " }"
}

// clauseText renders one clause with pattern.Build, without its braces.
func clauseText(c pattern.Clause) string {
	s := pattern.Build(c)
	s = strings.TrimPrefix(s, "{ ")
	s = strings.TrimSuffix(s, " }")
	return s
}

// String describes the query's constraints for messages.
func (q *Query) String() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, fmt.Sprintf("%s=%q", k, v))
		}
	}
	add("event-id", q.EventID)
	add("access-key", q.AccessKey)
	add("event-name", q.EventName)
	add("event-source", q.EventSource)
	add("user", q.User)
	add("principal", q.Principal)
	add("source-ip", q.SourceIP)
	add("resource-type", q.ResourceType)
	add("resource-name", q.ResourceName)
	if q.ReadOnly != nil {
		add("read-only", fmt.Sprint(*q.ReadOnly))
	}
	return strings.Join(parts, " ")
}
