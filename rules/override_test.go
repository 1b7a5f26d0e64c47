package rules

import (
	"strings"
	"testing"
)

// TestOverrides enables a disabled built-in rule, disables another and
// re-grades a group by wildcard, without copying a rule; an override that
// matches nothing is an error at its place.
func TestOverrides(t *testing.T) {
	on, off := true, false
	cfgPos := Position{File: "config.yaml", Line: 7, Column: 5}
	set, err := LoadWith(Options{Overrides: []Override{
		{Rules: []string{"aws-instance-launched-outside-regions", "cis-cloudwatch-10-v6"}, Enabled: &on, Pos: cfgPos},
		{Rules: []string{"aws-key-pair-deleted"}, Enabled: &off, Pos: cfgPos},
		{Rules: []string{"cis-cloudwatch-1?"}, Severity: "critical", Pos: cfgPos},
	}}, "builtin")
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]bool{
		"aws-instance-launched-outside-regions": true,
		"cis-cloudwatch-10-v6":                  true,
		"aws-key-pair-deleted":                  false,
		"cis-cloudwatch-2-no-log-delivery":      false, // untouched: still off
		"aws-root-console-login":                true,  // untouched: still on
	} {
		if r := set.Rule(id); r == nil || r.Enabled != want {
			t.Errorf("rule %s enabled = %v, want %v", id, r != nil && r.Enabled, want)
		}
	}
	if got := set.Rule("cis-cloudwatch-12").Severity; got != "critical" {
		t.Errorf("cis-cloudwatch-12 severity = %s, want critical", got)
	}
	// The index follows: an enabled rule is evaluated, a disabled one not.
	enabled := map[string]bool{}
	for _, r := range set.enabled {
		enabled[r.ID] = true
	}
	if !enabled["aws-instance-launched-outside-regions"] || enabled["aws-key-pair-deleted"] {
		t.Errorf("the enabled set does not follow the overrides")
	}

	_, err = LoadWith(Options{Overrides: []Override{{Rules: []string{"aws-rot-console-login"}, Enabled: &off, Pos: cfgPos}}}, "builtin")
	if err == nil || !strings.Contains(err.Error(), `config.yaml:7:5: rule_overrides: "aws-rot-console-login" matches no loaded rule`) {
		t.Errorf("misspelt override: %v", err)
	}
}
