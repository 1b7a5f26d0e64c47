package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/trailwatch/trailwatch/internal/config"
	"github.com/trailwatch/trailwatch/rules"
)

// loadConfig loads a configuration file and prints its problems.
func loadConfig(stdio Stdio, path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err == nil {
		return cfg, nil
	}
	var list config.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintln(stdio.Err, e.Error())
		}
		return nil, exitCode(1, fmt.Sprintf("%d problem(s) in %s", len(list), path))
	}
	return nil, exitCode(1, err.Error())
}

// loadConfigAndRules loads the configuration (if path is set) and the
// rules (--rules wins over the config's `rules`), with the configuration's
// lists and rule overrides, and checks that every notifier a rule names
// exists. Every problem of both is printed in one pass: a configuration
// with problems still names the rules to check.
func loadConfigAndRules(stdio Stdio, cfgPath string, rulePaths []string) (*config.Config, *rules.Set, error) {
	return loadChecked(stdio, cfgPath, rulePaths, false)
}

// loadChecked is loadConfigAndRules, with the rules' tests when tests is
// set (only trailwatch test runs them; reading them is most of what
// loading the built-in rules costs).
func loadChecked(stdio Stdio, cfgPath string, rulePaths []string, tests bool) (*config.Config, *rules.Set, error) {
	l, err := loadAll(stdio, cfgPath, rulePaths, tests)
	if err != nil {
		return nil, nil, err
	}
	if err := l.problems(""); err != nil {
		return nil, nil, err
	}
	return l.cfg, l.set, nil
}

// loaded is what loadAll read: the configuration (partial when it has
// problems: what could be read of it), the rules (nil when they have
// problems) and how many problems each had, all printed.
type loaded struct {
	cfg                       *config.Config
	set                       *rules.Set
	cfgPath                   string
	cfgProblems, ruleProblems int
}

// problems is the exit error for the problems l holds, and more (what
// else was found, already printed: "2 that run would refuse"), or nil.
func (l loaded) problems(more string) error {
	var parts []string
	if l.cfgProblems > 0 {
		parts = append(parts, fmt.Sprintf("%d problem(s) in %s", l.cfgProblems, l.cfgPath))
	}
	if l.ruleProblems > 0 {
		if len(parts) > 0 {
			parts = append(parts, fmt.Sprintf("%d in the rules", l.ruleProblems))
		} else {
			parts = append(parts, fmt.Sprintf("%d problem(s) in the rules", l.ruleProblems))
		}
	}
	if more != "" {
		parts = append(parts, more)
	}
	if len(parts) == 0 {
		return nil
	}
	msg := parts[0]
	for i, p := range parts[1:] {
		if i == len(parts)-2 {
			msg += " and " + p
		} else {
			msg += ", " + p
		}
	}
	return exitCode(1, msg+"; nothing was run")
}

// loadAll is loadChecked that returns what it read with its problems
// counted (printed), for validate to add its own; an error is one that
// stopped the reading (an unreadable file).
func loadAll(stdio Stdio, cfgPath string, rulePaths []string, tests bool) (loaded, error) {
	l := loaded{cfgPath: cfgPath}
	if cfgPath != "" {
		var err error
		l.cfg, err = config.Load(cfgPath)
		if err != nil {
			var list config.ErrorList
			if !errors.As(err, &list) || l.cfg == nil {
				_, lerr := loadConfig(stdio, cfgPath)
				return loaded{}, lerr
			}
			for _, e := range list {
				fmt.Fprintln(stdio.Err, e.Error())
			}
			l.cfgProblems = len(list)
		}
		if len(rulePaths) == 0 {
			rulePaths = l.cfg.RulePaths()
		}
	}
	var opts rules.Options
	if l.cfg != nil {
		opts = l.cfg.RulesOptions()
	}
	opts.SkipTests = !tests
	set, err := rules.LoadWith(opts, rulePaths...)
	if err != nil {
		var list rules.ErrorList
		if !errors.As(err, &list) {
			if l.cfgProblems > 0 {
				return loaded{}, exitCode(1, fmt.Sprintf("%d problem(s) in %s; %v", l.cfgProblems, cfgPath, err))
			}
			return loaded{}, exitCode(1, err.Error())
		}
		for _, e := range list {
			fmt.Fprintln(stdio.Err, e.Error())
		}
		l.ruleProblems = len(list)
		return l, nil
	}
	l.set = set
	if l.cfg != nil {
		if err := l.cfg.CheckRuleNotifiers(set); err != nil {
			var list config.ErrorList
			errors.As(err, &list)
			for _, e := range list {
				fmt.Fprintln(stdio.Err, e.Error())
			}
			l.ruleProblems = len(list)
		}
	}
	return l, nil
}

// systemConfig is where examples/deploy installs the configuration.
var systemConfig = "/etc/trailwatch/config.yaml"

// defaultConfig is the configuration of the commands that cannot work
// without one (run, silence, outbox, notify-test, and search given no
// other source) when --config is not given: $TRAILWATCH_CONFIG, else
// /etc/trailwatch/config.yaml when it exists, else "".
func defaultConfig() string {
	if p := os.Getenv("TRAILWATCH_CONFIG"); p != "" {
		return p
	}
	if _, err := os.Stat(systemConfig); err == nil {
		return systemConfig
	}
	return ""
}
