package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/trailwatch/trailwatch/rules"
)

// TestEveryProblemAtItsKey is issue 15's item 6: every problem of a
// configuration is reported in one pass, each at the line and column of
// its own key or value, naming the key and the accepted forms.
func TestEveryProblemAtItsKey(t *testing.T) {
	const cfg = `source:
  cloudwatch:
    log_groups: [g, g]
    poll_interval: soon
    lookback: -5m
state_dir: /x
quiet_after: 2
reload: {watch: maybe}
lifecycle:
  max_keys: -1
notifiers:
  - name: out
    type: file
    path: alerts.jsonl
    rate_limit: {max: 0, per: 1m}
  - name: hook
    type: webhook
    url: ftp://example.com/
routes:
  - severity: [high, urgent]
    notify: [out, pager]
  - min_severity: severe
    notify: []
rule_overrides:
  - rules: [aws-root-console-login]
    severity: grave
  - rules: [x]
`
	_, err := Parse("c.yaml", []byte(cfg), env(nil))
	if err == nil {
		t.Fatal("Parse accepted the configuration")
	}
	got := err.Error()
	for _, want := range []string{
		"c.yaml:3:21: source.cloudwatch: log_groups[1]: ",
		"c.yaml:4:20: source.cloudwatch.poll_interval: want a duration: a number and a unit (ms, s, m, h), such as 500ms, 30s, 5m or 1h30m",
		"c.yaml:7:14: quiet_after: want a duration",
		"c.yaml:8:17: reload.watch: want true or false",
		"c.yaml:10:13: lifecycle: max_keys must not be negative",
		"c.yaml:15:23: notifier \"out\": rate_limit: max must be at least 1",
		"c.yaml:18:10: notifier \"hook\": webhook: url: ",
		"c.yaml:20:22: routes[0]: severity \"urgent\" is not one of info, low, medium, high, critical",
		"c.yaml:21:19: routes[0]: unknown notifier \"pager\" (defined: out, hook)",
		"c.yaml:22:19: routes[1]: min_severity \"severe\" is not one of info, low, medium, high, critical",
		"c.yaml:22:5: routes[1]: notify is empty",
		"c.yaml:26:15: rule_overrides[0]: severity \"grave\" is not one of",
		"c.yaml:27:5: rule_overrides[1]: give enabled: true|false, severity:",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, ":1:1:") {
		t.Errorf("a problem is placed at 1:1 instead of at its key:\n%s", got)
	}
}

// TestYAMLSyntaxErrorAtTheLine checks that a mis-indented key is reported
// on its own line, not where the enclosing block starts.
func TestYAMLSyntaxErrorAtTheLine(t *testing.T) {
	_, err := Parse("c.yaml", []byte("source:\n  cloudwatch:\n    log_groups: [a]\n     region: x\nstate_dir: /x\n"), env(nil))
	if err == nil || !strings.HasPrefix(err.Error(), "c.yaml:4:6: invalid YAML: ") || !strings.Contains(err.Error(), "indentation") {
		t.Errorf("Parse = %v, want an indentation error at c.yaml:4:6", err)
	}
}

// TestMisspeltListAtItsKey checks that a lists: entry that overrides no
// list is reported at its own key in the configuration, not at config:1:1.
func TestMisspeltListAtItsKey(t *testing.T) {
	cfg, err := Parse("dir/c.yaml", []byte("rules: [builtin]\nlists:\n  allowed_regions: [eu-west-1]\n  alowed_regions: [us-east-1]\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	_, err = rules.LoadWith(cfg.RulesOptions(), cfg.RulePaths()...)
	if err == nil || !strings.Contains(err.Error(), `dir/c.yaml:4:3: lists: "alowed_regions" overrides no list the rules define`) {
		t.Errorf("LoadWith = %v, want the misspelt list at dir/c.yaml:4:3", err)
	}
}

// TestParseReturnsWhatItCould checks that a configuration with problems
// still yields its rule paths and lists, so that validate can report the
// rules' problems in the same pass.
func TestParseReturnsWhatItCould(t *testing.T) {
	cfg, err := Parse("dir/c.yaml", []byte("rules: [mine/]\nquiet_after: soon\nlists: {x: [1]}\n"), env(nil))
	if err == nil || cfg == nil {
		t.Fatalf("Parse = %v, %v; want the problem and a partial configuration", cfg, err)
	}
	if got := strings.Join(cfg.RulePaths(), ","); got != "dir/mine" || len(cfg.Lists["x"]) != 1 {
		t.Errorf("partial configuration: rules %q, lists %v", got, cfg.Lists)
	}
}

// TestPathsRelativeToTheConfigFile is issue 15's item 2: every path in a
// configuration resolves against the configuration file's directory, as
// its rules always did, so that any command given the same --config, from
// any directory, uses the running service's files.
func TestPathsRelativeToTheConfigFile(t *testing.T) {
	const data = `state_dir: state
rules: [builtin, team/]
notifiers:
  - name: out
    type: file
    path: alerts/out.jsonl
  - name: stdout
    type: file
    path: "-"
  - name: pd
    type: pagerduty
    routing_key_file: secrets/pd
  - name: mail
    type: email
    smtp_host: smtp.example.com
    from: a@example.com
    to: [b@example.com]
    username: tw
    password_file: /run/secrets/smtp
    tls_ca_file: ca.pem
`
	cfg, err := Parse("live/config.yaml", []byte(data), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	spec := func(i int, field string) string {
		return reflectField(cfg.Notifiers[i].Spec, field)
	}
	for _, c := range []struct{ what, got, want string }{
		{"state_dir", cfg.StateDir, "live/state"},
		{"rules", strings.Join(cfg.RulePaths(), ","), "builtin,live/team"},
		{"file path", spec(0, "Path"), "live/alerts/out.jsonl"},
		{"stdout stays", spec(1, "Path"), "-"},
		{"routing_key_file", spec(2, "RoutingKeyFile"), "live/secrets/pd"},
		{"absolute stays", spec(3, "PasswordFile"), "/run/secrets/smtp"},
		{"tls_ca_file", spec(3, "TLSCAFile"), "live/ca.pem"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
}

func reflectField(spec any, name string) string {
	return reflect.ValueOf(spec).Elem().FieldByName(name).String()
}
