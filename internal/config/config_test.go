package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/cloudwatch"
	"github.com/trailwatch/trailwatch/notifiers"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

const good = `source:
  cloudwatch:
    log_groups: [aws-cloudtrail-logs-111122223333]
    region: eu-west-1
    poll_interval: 10s
    lookback: 20m
    start: -1h
state_dir: /var/lib/trailwatch
rules: [builtin, team-rules/]
lists:
  allowed_regions: [eu-west-1]
notifiers:
  - name: mail
    type: email
    smtp_host: smtp.example.com
    smtp_port: ${SMTP_PORT:-587}
    tls: starttls
    username: trailwatch
    password: ${SMTP_PASSWORD}
    from: trailwatch@example.com
    to: [secops@example.com]
  - name: page
    type: sns
    topic_arn: arn:aws:sns:eu-west-1:111122223333:trailwatch-page
routes:
  - severity: [critical]
    notify: [page]
    continue: true
  - rules: ["cis-*"]
    notify: [mail]
  - min_severity: high
    notify: [mail]
`

func TestParseGood(t *testing.T) {
	cfg, err := Parse("dir/config.yaml", []byte(good), env(map[string]string{"SMTP_PASSWORD": "hunter2"}))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	cw := SourceAs[cloudwatch.Config](cfg.Source)
	if cw == nil || cw.LogGroups[0] != "aws-cloudtrail-logs-111122223333" || cw.Lookback.Minutes() != 20 || cw.Start != "-1h" {
		t.Fatalf("source = %+v", cw)
	}
	if len(cfg.Notifiers) != 2 || cfg.Notifiers[0].Type != "email" {
		t.Fatalf("notifiers = %+v", cfg.Notifiers)
	}
	if got := strings.Join(cfg.RulePaths(), ","); got != "builtin,dir/team-rules" {
		t.Errorf("rule paths = %s", got)
	}
	if cfg.Lists["allowed_regions"][0] != "eu-west-1" {
		t.Errorf("lists = %v", cfg.Lists)
	}
	tests := []struct {
		name string
		a    notifiers.Alert
		own  []string
		want string
	}{
		{"critical pages and goes on to mail", notifiers.Alert{RuleID: "aws-root-console-login", Severity: "critical"}, nil, "page,mail"},
		{"cis rule by id", notifiers.Alert{RuleID: "cis-cloudwatch-4", Severity: "low"}, nil, "mail"},
		{"low non-cis goes nowhere", notifiers.Alert{RuleID: "x", Severity: "low"}, nil, ""},
		{"rule's own notify adds", notifiers.Alert{RuleID: "x", Severity: "low"}, []string{"page"}, "page"},
		{"no repeats", notifiers.Alert{RuleID: "cis-1", Severity: "critical"}, []string{"mail"}, "page,mail"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(cfg.Targets(&tt.a, tt.own), ","); got != tt.want {
				t.Errorf("targets = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseProblems(t *testing.T) {
	bad := `source:
  cloudwatch:
    log_groups: [g]
    poll_intervall: 5s
state_dir: /x
verbose: true
notifiers:
  - name: mail
    type: email
    smtp_host: smtp.example.com
    smtp_port: ${SMTP_PORT}
    from: trailwatch@example.com
    to: [secops@example.com]
    passwrd: x
  - name: mail
    type: sns
    topic_arn: arn:aws:sns:eu-west-1:111122223333:t
  - name: hook
    type: carrier-pigeon
routes:
  - severity: [urgent]
    notify: [pager]
`
	_, err := Parse("c.yaml", []byte(bad), env(map[string]string{"SMTP_PORT": "secret-not-a-port"}))
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("Parse = %v, want an ErrorList", err)
	}
	text := err.Error()
	for _, want := range []string{
		`c.yaml:4:5: unknown key "poll_intervall" in source.cloudwatch`,
		`c.yaml:6:1: unknown key "verbose"`,
		`c.yaml:14:5: unknown key "passwrd"`,
		`c.yaml:15:11: notifier "mail" is defined twice`,
		`c.yaml:19:11: notifier "hook": unknown type "carrier-pigeon"`,
		`c.yaml:21:16: routes[0]: severity "urgent" is not one of`,
		`c.yaml:22:14: routes[0]: unknown notifier "pager" (defined: mail, hook)`,
		`c.yaml:11:16: notifier "mail": smtp_port: want a whole number`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing problem %q in:\n%s", want, text)
		}
	}
	if strings.Contains(text, "secret-not-a-port") {
		t.Errorf("an environment value leaked into the errors:\n%s", text)
	}
}

func TestSecretsNeverInErrors(t *testing.T) {
	cfg := `notifiers:
  - name: mail
    type: email
    smtp_host: smtp.example.com
    smtp_port: ${SMTP_PORT}
    from: trailwatch@example.com
    to: [secops@example.com]
    password: ${SMTP_PASSWORD}
`
	_, err := Parse("c.yaml", []byte(cfg), env(map[string]string{"SMTP_PORT": "hunter2-port", "SMTP_PASSWORD": "hunter2"}))
	if err == nil {
		t.Fatal("a non-numeric port must be an error")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("secret in error: %v", err)
	}
	_, err = Parse("c.yaml", []byte(cfg), env(nil))
	if err == nil || !strings.Contains(err.Error(), "environment variable SMTP_PORT is not set") {
		t.Errorf("missing env var: %v", err)
	}
}

func TestEnvCannotInjectYAML(t *testing.T) {
	cfg := `notifiers:
  - name: page
    type: sns
    topic_arn: ${TOPIC}
`
	_, err := Parse("c.yaml", []byte(cfg), env(map[string]string{"TOPIC": "arn:aws:sns:eu-west-1:111122223333:t\n    region: us-east-1"}))
	if err == nil {
		t.Fatal("a value with a newline is not a topic ARN; it must not become a region key")
	}
	if strings.Contains(err.Error(), "differs from the topic") {
		t.Errorf("the environment value was parsed as YAML: %v", err)
	}
}

func TestRateLimitAndLifecycle(t *testing.T) {
	cfg, err := Parse("c.yaml", []byte(`lifecycle:
  dedup_window: 1h
  max_keys: 1000
quiet_after: 30m
notifiers:
  - name: out
    type: file
    path: alerts.jsonl
    rate_limit: {max: 20, per: 1m, digest_every: 5m}
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Lifecycle.DedupWindow.Hours() != 1 || cfg.QuietAfter.Minutes() != 30 {
		t.Errorf("lifecycle = %+v, quiet_after = %v", cfg.Lifecycle, cfg.QuietAfter)
	}
	if rl := cfg.Notifiers[0].RateLimit; rl == nil || rl.Max != 20 || rl.DigestEvery.Minutes() != 5 {
		t.Errorf("rate_limit = %+v", rl)
	}
	_, err = Parse("c.yaml", []byte(`notifiers:
  - name: out
    type: file
    path: a
    rate_limit: {max: 20, pre: 1m}
`), env(nil))
	if err == nil || !strings.Contains(err.Error(), `c.yaml:5:27: unknown key "pre" in notifier "out": rate_limit`) {
		t.Errorf("rate_limit typo: %v", err)
	}
}

func TestReload(t *testing.T) {
	tests := []struct {
		name         string
		yaml         string
		wantWatch    bool
		wantDebounce time.Duration
		wantErr      string
	}{
		{"absent: SIGHUP only", "state_dir: /x\n", false, 0, ""},
		{"watch with the default debounce", "reload: {watch: true}\n", true, 0, ""},
		{"watch with a debounce", "reload:\n  watch: true\n  debounce: 250ms\n", true, 250 * time.Millisecond, ""},
		{"unknown key", "reload: {watch: true, debounse: 1s}\n", false, 0, `c.yaml:1:23: unknown key "debounse" in reload (expected one of debounce, watch)`},
		{"negative debounce", "reload:\n  watch: true\n  debounce: -1s\n", false, 0, "c.yaml:3:13: reload: debounce must not be negative"},
		{"not a duration", "reload: {debounce: soon}\n", false, 0, "c.yaml:1:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("c.yaml", []byte(tt.yaml), env(nil))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if cfg.Reload.Watch != tt.wantWatch || cfg.Reload.Debounce != tt.wantDebounce {
				t.Errorf("reload = %+v, want watch %v, debounce %v", cfg.Reload, tt.wantWatch, tt.wantDebounce)
			}
		})
	}
}
