package rules

import "testing"

// requirePassingTests runs every test of every rule in set, and requires of
// each rule at least one event it matches and one it does not.
func requirePassingTests(t *testing.T, set *Set) {
	t.Helper()
	for _, res := range set.RunTests() {
		if !res.Passed {
			t.Errorf("%s: rule %s: test %q: %s", res.Test.Pos, res.Rule.ID, res.Test.Name, res.Reason)
		}
	}
	for _, r := range set.Rules() {
		match, noMatch := false, false
		for _, tc := range r.Tests {
			match = match || tc.ExpectMatch
			noMatch = noMatch || !tc.ExpectMatch
		}
		if !match || !noMatch {
			t.Errorf("%s: rule %s needs at least one matching and one non-matching test", r.Pos, r.ID)
		}
	}
}

// TestBuiltinPacks loads every built-in pack, runs every rule test, and
// requires of each rule at least one event it matches and one it does not.
func TestBuiltinPacks(t *testing.T) {
	set, err := Load("builtin")
	if err != nil {
		t.Fatalf("built-in rules do not load:\n%v", err)
	}
	if len(set.Rules()) == 0 {
		t.Fatal("no built-in rules")
	}
	requirePassingTests(t, set)
	for _, r := range set.Rules() {
		if r.Description == "" || r.Runbook == "" {
			t.Errorf("%s: rule %s needs a description and a runbook", r.Pos, r.ID)
		}
	}
	for _, id := range []string{"aws-root-console-login", "aws-security-group-created", "aws-key-pair-deleted", "aws-rds-instance-stopped"} {
		if set.Rule(id) == nil {
			t.Errorf("card rule %s is missing from the built-in packs", id)
		}
	}
}

// TestBuiltinRulesAreCheap keeps every built-in rule either indexed on
// eventName or decidable from the header: a rule that is neither makes
// every record of a trail take the full decode.
func TestBuiltinRulesAreCheap(t *testing.T) {
	set, err := Load("builtin")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range set.Rules() {
		info := r.Index()
		if len(info.EventNames) == 0 && !info.HeaderOnly {
			t.Errorf("%s: rule %s is evaluated on every record and needs the whole record decoded: constrain eventName (eventName in [...]) or read only header fields", r.Pos, r.ID)
		}
	}
}
