// Package config loads trailwatch's service configuration: the source,
// the state directory, the rules, the named notifiers and the routes that
// send alerts to them.
//
// Unknown keys are errors, reported with file:line:col like rule problems.
// `${NAME}` (or `${NAME:-default}`) in a value is replaced with the
// environment variable's value after the YAML is parsed, so a secret can
// neither break nor inject YAML structure, and it never appears in an
// error message: errors name keys and places, not values.
package config

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/rules"
)

// Config is a whole trailwatch configuration file.
type Config struct {
	// Source is where records come from (run's; the Lambda has none): one
	// registered source type and its block (see sources.go).
	Source Source `yaml:"source"`
	// StateDir holds checkpoints and the alert outbox.
	StateDir string `yaml:"state_dir"`
	// Rules are rule paths and builtin:NAME, as --rules; empty means every
	// built-in pack. Relative paths are relative to the config file.
	Rules []string `yaml:"rules"`
	// Listen is the address of the metrics and health endpoints (empty: off).
	Listen string `yaml:"listen"`
	// QuietAfter raises a built-in alert when a log group delivers no
	// records for this long, and another when records resume (0: off).
	QuietAfter time.Duration `yaml:"quiet_after"`
	// Lifecycle sets the alert lifecycle's defaults (dedup window, memory
	// bound, samples kept per aggregated alert).
	Lifecycle lifecycle.Config `yaml:"lifecycle"`
	// Lists replaces named lists that the rule files define (a rule pack's
	// tunables: allowed_regions, trusted_accounts, ...).
	Lists map[string][]any `yaml:"lists"`
	// RuleOverrides enable, disable or re-grade rules (built-in ones
	// included) without copying them; see RuleOverride.
	RuleOverrides []RuleOverride `yaml:"rule_overrides"`
	// Notifiers are the named alert destinations.
	Notifiers []Notifier `yaml:"-"`
	// Routes send alerts to notifiers; see Route.
	Routes []Route `yaml:"routes"`
	// SharedState, when set, records every delivery in a DynamoDB table
	// shared by every process working on the same alerts (several `run`
	// instances on one Kinesis stream), so none sends an alert another
	// already delivered.
	SharedState *SharedState `yaml:"shared_state"`
	// Outbox sets how run delivers from its outbox (the send timeout).
	Outbox Outbox `yaml:"outbox"`
	// Reload sets how `run` reloads the configuration and rules besides
	// SIGHUP.
	Reload Reload `yaml:"reload"`

	// File is the path the configuration was read from. Relative paths
	// in the configuration (state_dir, rules, a file notifier's path,
	// every *_file and *_dir) are resolved against its directory.
	File string `yaml:"-"`

	// listPos and overridePos place lists and rule_overrides entries in
	// the file, for the rule loader's errors.
	listPos     map[string]rules.Position
	overridePos []rules.Position
}

// RuleOverride is one entry of `rule_overrides`: it enables, disables or
// re-grades every loaded rule whose id matches one of Rules.
type RuleOverride struct {
	// Rules are rule ids; `*` and `?` are wildcards ("cis-*").
	Rules []string `yaml:"rules"`
	// Enabled, when given, enables (true) or disables (false) the rules.
	Enabled *bool `yaml:"enabled"`
	// Severity, when given, replaces the rules' severity.
	Severity string `yaml:"severity"`
}

// SharedState is the `shared_state` block: the delivery ledger, the dedup
// windows and threshold groups, and the silences, in one DynamoDB table
// (see engine/dynamostate).
type SharedState struct {
	// DynamoDBTable is the delivery table (partition key pk, a string;
	// Time to Live on expires_at).
	DynamoDBTable string `yaml:"dynamodb_table"`
	// Region is the table's AWS region; empty means source.kinesis's
	// region if set, else the SDK's default chain.
	Region string `yaml:"region"`
	// Lease is how long a claimed delivery holds before another process
	// may retake it (0: 60s). It must exceed outbox.send_timeout by
	// dynamostate.LeaseMargin (10s).
	Lease time.Duration `yaml:"lease"`
	// TTL is how long a delivery record is kept (0: 7 days).
	TTL time.Duration `yaml:"ttl"`
}

// DefaultReloadDebounce is reload.debounce when the configuration leaves
// it out: longer than an editor's save or a checkout, short enough to
// feel immediate.
const DefaultReloadDebounce = time.Second

// Reload is the `reload` block of `run`.
type Reload struct {
	// Watch reloads when the configuration file or a file under a rule
	// path changes, as SIGHUP does.
	Watch bool `yaml:"watch"`
	// Debounce is how long the watched files must stay quiet after a
	// change before the reload (0: 1s), so that an editor's several writes
	// or a `git pull` make one reload; files that never stop changing are
	// reloaded every ten debounces all the same.
	Debounce time.Duration `yaml:"debounce"`
}

// Route sends matching alerts to notifiers. An alert matches a route when
// every selector the route gives matches (a route with no selector matches
// every alert). Routes are tried in order and the first match wins, unless
// it says `continue: true`; the notifiers a rule names in its own `notify`
// are added to whatever the routes chose.
type Route struct {
	// Severity lists severities; MinSeverity matches that one and above.
	Severity    []string `yaml:"severity"`
	MinSeverity string   `yaml:"min_severity"`
	// Tags matches when the rule has any of these tags (`*` wildcards allowed).
	Tags []string `yaml:"tags"`
	// Rules matches rule ids (`*` wildcards allowed).
	Rules    []string `yaml:"rules"`
	Notify   []string `yaml:"notify"`
	Continue bool     `yaml:"continue"`
}

// Notifier is one named notifier: its type and its type's configuration,
// already decoded and validated.
type Notifier struct {
	Name string
	Type string
	// RateLimit, when set, folds this notifier's alerts above a rate into
	// periodic digests (storm control) instead of dropping them.
	RateLimit *lifecycle.StormConfig
	// Spec is the type's Config value (e.g. slack.Config).
	Spec any
	Pos  rules.Position
}

// Error is a problem in the configuration file.
type Error = rules.Error

// ErrorList is every problem found in a configuration file.
type ErrorList = rules.ErrorList

// Load reads and validates a configuration file. The problems it finds are
// returned together as an ErrorList (see Parse).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return Parse(path, data, os.LookupEnv)
}

// CheckSecrets reads every notifier's secret files (url_file, token_file,
// password_file, ...) as building the notifier does, and reports each one
// that cannot be read or holds what the notifier would refuse, at the
// notifier's place. It never returns a secret. `trailwatch validate
// --config` calls it; run reads them when it builds the notifiers.
func (c *Config) CheckSecrets() error {
	var errs ErrorList
	for _, n := range c.Notifiers {
		s, ok := n.Spec.(interface{ ReadSecrets() error })
		if !ok {
			continue
		}
		err := s.ReadSecrets()
		each := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			each = j.Unwrap()
		}
		for _, e := range each {
			if e != nil {
				errs = append(errs, &Error{Pos: n.Pos, Msg: fmt.Sprintf("notifier %q: %v", n.Name, e)})
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// CheckRuleNotifiers reports rules whose `notify` names a notifier the
// configuration does not define.
func (c *Config) CheckRuleNotifiers(set *rules.Set) error {
	known := map[string]bool{}
	for _, n := range c.Notifiers {
		known[n.Name] = true
	}
	var errs ErrorList
	for _, r := range set.Rules() {
		for _, name := range r.Notify {
			if !known[name] {
				errs = append(errs, &Error{Pos: r.Pos, RuleID: r.ID, Msg: fmt.Sprintf("notify: unknown notifier %q (not defined in %s)", name, c.File)})
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// RulePaths returns the rule paths with relative ones resolved against the
// config file's directory.
func (c *Config) RulePaths() []string {
	out := make([]string, 0, len(c.Rules))
	for _, r := range c.Rules {
		if r == "builtin" || strings.HasPrefix(r, "builtin:") {
			out = append(out, r)
			continue
		}
		out = append(out, c.resolve(r))
	}
	return out
}

// RulesOptions are the options the configuration gives the rule loader:
// its lists and rule overrides, each placed in the file for errors. Every
// command that loads the configuration's rules loads them with these. They
// skip the rules' tests (rules.Options.SkipTests), which only trailwatch
// test and validate read: they set SkipTests false.
func (c *Config) RulesOptions() rules.Options {
	opts := rules.Options{Lists: c.Lists, ListPos: c.listPos, SkipTests: true}
	for i, o := range c.RuleOverrides {
		ro := rules.Override{Rules: o.Rules, Enabled: o.Enabled, Severity: o.Severity}
		if i < len(c.overridePos) {
			ro.Pos = c.overridePos[i]
		} else {
			ro.Pos = rules.Position{File: c.File, Line: 1, Column: 1}
		}
		opts.Overrides = append(opts.Overrides, ro)
	}
	return opts
}
