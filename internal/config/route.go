package config

import (
	"path"

	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
)

// matches reports whether the route selects alert a raised by a rule with
// the given tags.
func (r *Route) matches(a *notifiers.Alert) bool {
	if len(r.Severity) > 0 && !contains(r.Severity, a.Severity) {
		return false
	}
	if r.MinSeverity != "" && rules.SeverityRank(a.Severity) < rules.SeverityRank(r.MinSeverity) {
		return false
	}
	if len(r.Tags) > 0 && !anyGlob(r.Tags, a.Tags...) {
		return false
	}
	if len(r.Rules) > 0 && !anyGlob(r.Rules, a.RuleID) {
		return false
	}
	return true
}

// Targets returns the notifiers alert a goes to: the notifiers of the
// first matching route (and of each later one while routes say
// `continue: true`), plus those the rule names in its own notify, each once
// and in a stable order. With no routes at all, every notifier gets every
// alert.
func (c *Config) Targets(a *notifiers.Alert, ruleNotify []string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(names []string) {
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	if len(c.Routes) == 0 {
		for _, n := range c.Notifiers {
			add([]string{n.Name})
		}
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if !r.matches(a) {
			continue
		}
		add(r.Notify)
		if !r.Continue {
			break
		}
	}
	add(ruleNotify)
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// anyGlob reports whether any of values matches any of patterns (`*` and
// `?` wildcards).
func anyGlob(patterns []string, values ...string) bool {
	for _, p := range patterns {
		for _, v := range values {
			if ok, err := path.Match(p, v); (err == nil && ok) || p == v {
				return true
			}
		}
	}
	return false
}

// Unrouted returns the enabled rules of set whose alerts no route sends to
// any notifier and that name none themselves: run would raise their alerts
// and deliver none. Routes select on what a rule fixes (its id, severity
// and tags), so this is known before any event arrives.
func (c *Config) Unrouted(set *rules.Set) []*rules.Rule {
	var out []*rules.Rule
	for _, r := range set.Rules() {
		if !r.Enabled {
			continue
		}
		a := notifiers.Alert{RuleID: r.ID, Severity: r.Severity, Tags: r.Tags}
		if len(c.Targets(&a, r.Notify)) == 0 {
			out = append(out, r)
		}
	}
	return out
}
