// Package examples_test loads every example configuration and rule set,
// so none goes stale.
package examples_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trailwatch/trailwatch/internal/config"
	"github.com/trailwatch/trailwatch/rules"
)

func TestExampleConfigs(t *testing.T) {
	files, _ := filepath.Glob("*.yaml")
	if len(files) == 0 {
		t.Fatal("no example configurations")
	}
	env := map[string]string{
		"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/XXXXXXXX",
		"SMTP_PASSWORD":     "example-password",
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Parse(f, data, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if err != nil {
				t.Fatalf("example configuration does not load:\n%v", err)
			}
			set, err := rules.LoadWith(cfg.RulesOptions(), cfg.RulePaths()...)
			if err != nil {
				t.Fatalf("its rules do not load:\n%v", err)
			}
			if err := cfg.CheckRuleNotifiers(set); err != nil {
				t.Fatal(err)
			}
			if len(cfg.Notifiers) == 0 || len(cfg.Routes) == 0 {
				t.Error("an example configuration should show notifiers and routes")
			}
		})
	}
}

func TestExampleRules(t *testing.T) {
	for _, paths := range [][]string{{"rules"}, {"builtin", "rules"}} {
		t.Run(strings.Join(paths, "+"), func(t *testing.T) {
			set, err := rules.Load(paths...)
			if err != nil {
				t.Fatalf("example rules do not load:\n%v", err)
			}
			for _, r := range set.RunTests() {
				if !r.Passed {
					t.Errorf("%s: rule %s: test %q: %s", r.Test.Pos, r.Rule.ID, r.Test.Name, r.Reason)
				}
			}
		})
	}
}
