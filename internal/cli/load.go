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
	var cfg *config.Config
	cfgProblems := 0
	if cfgPath != "" {
		var err error
		cfg, err = config.Load(cfgPath)
		if err != nil {
			var list config.ErrorList
			if !errors.As(err, &list) || cfg == nil {
				_, lerr := loadConfig(stdio, cfgPath)
				return nil, nil, lerr
			}
			for _, e := range list {
				fmt.Fprintln(stdio.Err, e.Error())
			}
			cfgProblems = len(list)
		}
		if len(rulePaths) == 0 {
			rulePaths = cfg.RulePaths()
		}
	}
	var opts rules.Options
	if cfg != nil {
		opts = cfg.RulesOptions()
	}
	set, err := rules.LoadWith(opts, rulePaths...)
	ruleProblems := 0
	if err != nil {
		var list rules.ErrorList
		if !errors.As(err, &list) {
			if cfgProblems > 0 {
				return nil, nil, exitCode(1, fmt.Sprintf("%d problem(s) in %s; %v", cfgProblems, cfgPath, err))
			}
			return nil, nil, exitCode(1, err.Error())
		}
		for _, e := range list {
			fmt.Fprintln(stdio.Err, e.Error())
		}
		ruleProblems = len(list)
	} else if cfg != nil {
		if err := cfg.CheckRuleNotifiers(set); err != nil {
			var list config.ErrorList
			errors.As(err, &list)
			for _, e := range list {
				fmt.Fprintln(stdio.Err, e.Error())
			}
			ruleProblems = len(list)
		}
	}
	switch {
	case cfgProblems > 0 && ruleProblems > 0:
		return nil, nil, exitCode(1, fmt.Sprintf("%d problem(s) in %s and %d in the rules; nothing was run", cfgProblems, cfgPath, ruleProblems))
	case cfgProblems > 0:
		return nil, nil, exitCode(1, fmt.Sprintf("%d problem(s) in %s; nothing was run", cfgProblems, cfgPath))
	case ruleProblems > 0:
		return nil, nil, exitCode(1, fmt.Sprintf("%d problem(s) in the rules; nothing was run", ruleProblems))
	}
	return cfg, set, nil
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
