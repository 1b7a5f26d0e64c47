package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/engine/outbox"
	"github.com/trailwatch/trailwatch/internal/app"
	"github.com/trailwatch/trailwatch/notifiers"
)

// writeTree writes files (path → content) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const ownRuleYAML = `rules:
  - id: own-rule
    title: Own rule
    severity: low
    when: eventName == "X"
`

// TestConfigPathsFromAnyDirectory is issue 15's item 2, through the real
// binary: silence and outbox given the service's --config from another
// directory use the service's state_dir (relative to the configuration
// file), as the running service does.
func TestConfigPathsFromAnyDirectory(t *testing.T) {
	hooks := make(chan string, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hooks <- r.URL.Path
	}))
	defer hook.Close()
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"live/config.yaml": `state_dir: state
rules: [rules/]
notifiers:
  - name: out
    type: file
    path: alerts.jsonl
  - name: hook
    type: webhook
    url_file: secrets/hook-url
routes:
  - notify: [out]
`,
		"live/secrets/hook-url": hook.URL + "/from-the-secret-file\n",
		"live/rules/own.yaml":   ownRuleYAML,
		"elsewhere/.keep":       "",
	})
	live := filepath.Join(root, "live")
	// The outbox a service running in live/ would have made.
	ob, err := outbox.Open(filepath.Join(live, "state", outbox.FileName), outbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ob.Close()

	code, out, errs := proc{Dir: root}.run(t, "silence", "add", "--config", "live/config.yaml", "--rule", "own-rule", "--for", "1h", "--comment", "test")
	if code != 0 {
		t.Fatalf("silence add from the parent directory: exit %d\n%s", code, errs)
	}
	id := strings.TrimSpace(out)
	silences, err := lifecycle.LoadSilences(filepath.Join(live, "state"))
	if err != nil || len(silences) != 1 || silences[0].ID != id {
		t.Fatalf("the silence is not in live/state, where the service reads it: %v %+v", err, silences)
	}
	code, out, errs = proc{Dir: filepath.Join(root, "elsewhere")}.run(t, "silence", "list", "--config", "../live/config.yaml")
	if code != 0 || !strings.Contains(out, id) {
		t.Errorf("silence list from a sibling directory: exit %d, silence %s not listed\n%s%s", code, id, out, errs)
	}
	// The file notifier's path and the webhook's url_file, from a sibling
	// directory: the files beside the configuration.
	code, out, errs = proc{Dir: filepath.Join(root, "elsewhere")}.run(t, "notify-test", "--config", "../live/config.yaml", "out", "hook")
	if code != 0 {
		t.Errorf("notify-test from a sibling directory: exit %d\n%s%s", code, out, errs)
	}
	if data, err := os.ReadFile(filepath.Join(live, "alerts.jsonl")); err != nil || !strings.Contains(string(data), `"rule_id":"trailwatch-notify-test"`) {
		t.Errorf("the file notifier did not write live/alerts.jsonl: %v %s", err, data)
	}
	select {
	case p := <-hooks:
		if p != "/from-the-secret-file" {
			t.Errorf("the webhook was called at %s", p)
		}
	default:
		t.Error("the webhook named by live/secrets/hook-url was not called")
	}
	for _, dir := range []string{root, filepath.Join(root, "elsewhere")} {
		cfg, _ := filepath.Rel(dir, filepath.Join(live, "config.yaml"))
		if code, out, errs := (proc{Dir: dir}).run(t, "outbox", "--config", cfg); code != 0 || !strings.Contains(out, "0 entries") {
			t.Errorf("outbox --config %s from %s: exit %d\n%s%s", cfg, dir, code, out, errs)
		}
	}
}

// TestSilenceAddRefusesUnknownRule is part of issue 15's item 5: a silence
// for a rule id no loaded rule has would silence nothing; it is refused
// with the nearest id.
func TestSilenceAddRefusesUnknownRule(t *testing.T) {
	dir := t.TempDir()
	code, _, errs := proc{}.run(t, "silence", "add", "--state-dir", dir, "--rule", "aws-rot-console-login", "--for", "1h", "--comment", "x")
	if code != 1 || !strings.Contains(errs, "--rule aws-rot-console-login: no loaded rule has this id (did you mean aws-root-console-login?)") {
		t.Errorf("exit %d, stderr:\n%s", code, errs)
	}
	if s, _ := lifecycle.LoadSilences(dir); len(s) != 0 {
		t.Errorf("a silence was written: %+v", s)
	}
	// A team's own rule is known through --rules (or the config's rules).
	writeTree(t, dir, map[string]string{"rules/own.yaml": ownRuleYAML})
	if code, _, errs := (proc{}).run(t, "silence", "add", "--state-dir", dir, "--rules", filepath.Join(dir, "rules"), "--rule", "own-rule", "--for", "1h", "--comment", "x"); code != 0 {
		t.Errorf("silence add for a rule of --rules: exit %d\n%s", code, errs)
	}
}

// TestRulesListAndOverrides is issue 15's item 4: a disabled built-in rule
// is enabled and re-graded from the configuration, without copying it;
// `rules list` shows the result, and replay raises its alert.
func TestRulesListAndOverrides(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"config.yaml": `rules: [builtin]
lists:
  allowed_regions: [eu-west-1]
rule_overrides:
  - rules: [aws-instance-launched-outside-regions]
    enabled: true
    severity: critical
  - rules: ["aws-key-pair-*"]
    enabled: false
notifiers:
  - name: out
    type: file
    path: "-"
`,
		"run.jsonl": `{"eventVersion":"1.09","eventID":"ev-1","eventTime":"2024-07-12T09:50:00Z","eventSource":"ec2.amazonaws.com","eventName":"RunInstances","awsRegion":"ap-southeast-3","sourceIPAddress":"203.0.113.91","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::444455556666:user/dev","accountId":"444455556666"},"requestParameters":{"instanceType":"p3.16xlarge"},"recipientAccountId":"444455556666"}` + "\n",
	})
	cfg := filepath.Join(dir, "config.yaml")
	list := func(args ...string) map[string]ruleInfo {
		t.Helper()
		code, out, errs := proc{}.run(t, append([]string{"rules", "list", "--output", "json"}, args...)...)
		if code != 0 {
			t.Fatalf("rules list %v: exit %d\n%s", args, code, errs)
		}
		var infos []ruleInfo
		if err := json.Unmarshal([]byte(out), &infos); err != nil {
			t.Fatalf("rules list --output json: %v\n%s", err, out)
		}
		m := map[string]ruleInfo{}
		for _, r := range infos {
			m[r.ID] = r
		}
		return m
	}
	def := list()
	if r := def["aws-instance-launched-outside-regions"]; r.Enabled || r.Severity != "high" || r.Pack != "builtin:aws" || len(r.Tags) == 0 || r.Title == "" {
		t.Errorf("without a configuration: %+v, want the shipped rule, disabled", r)
	}
	tuned := list("--config", cfg)
	if r := tuned["aws-instance-launched-outside-regions"]; !r.Enabled || r.Severity != "critical" {
		t.Errorf("with rule_overrides: %+v, want enabled and critical", r)
	}
	if r := tuned["aws-key-pair-deleted"]; r.Enabled {
		t.Errorf("aws-key-pair-deleted is still enabled: %+v", r)
	}
	code, out, errs := proc{}.run(t, "replay", "--config", cfg, "--output", "json", filepath.Join(dir, "run.jsonl"))
	if code != 0 || !strings.Contains(out, `"rule_id":"aws-instance-launched-outside-regions"`) || !strings.Contains(out, `"severity":"critical"`) {
		t.Errorf("replay with the enabled rule: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = proc{}.run(t, "rules", "list")
	if code != 0 || !regexp.MustCompile(`^ID +SEVERITY +ENABLED +PACK +TAGS +TITLE\n`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^aws-instance-launched-outside-regions +high +false +builtin:aws +\S*attack:\S* +\S`).MatchString(out) {
		t.Errorf("rules list table: exit %d\n%s", code, out)
	}
}

// refuser refuses every alert for good: the outbox dead-letters them.
type refuser struct{}

func (refuser) Notify(context.Context, notifiers.Alert) error {
	return notifiers.Permanent(errors.New("410 gone"))
}

// TestOutboxDeadAndBulkRequeue is part of issue 15's item 5, through the
// real binary: `outbox --dead` (named by the service's log) lists dead
// letters, `--requeue NOTIFIER` moves all of a notifier's back, and the
// configuration comes from $TRAILWATCH_CONFIG when --config is not given.
func TestOutboxDeadAndBulkRequeue(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"config.yaml": "state_dir: state\nnotifiers:\n  - {name: hook, type: file, path: out.jsonl}\n  - {name: mail, type: file, path: mail.jsonl}\n"})
	ob, err := outbox.Open(filepath.Join(dir, "state", outbox.FileName), outbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := app.TestAlert(time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC))
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := ob.Enqueue(ctx, outbox.Item{Key: "k1", Notifier: "hook", Alert: a}, outbox.Item{Key: "k2", Notifier: "hook", Alert: a}, outbox.Item{Key: "k1", Notifier: "mail", Alert: a}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ob.Run(ctx, map[string]notifiers.Notifier{"hook": refuser{}, "mail": refuser{}}) }()
	var logs syncBuffer
	waitFor(t, &logs, "the refused alerts to be dead-lettered", func() bool {
		dead, err := ob.List(outbox.Dead)
		return err == nil && len(dead) == 3
	})
	cancel()
	<-done
	ob.Close()

	env := proc{Env: []string{"TRAILWATCH_CONFIG=" + filepath.Join(dir, "config.yaml")}}
	code, out, errs := env.run(t, "outbox", "--dead")
	if code != 0 || !strings.Contains(out, "3 entries") {
		t.Fatalf("outbox --dead: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = env.run(t, "outbox", "--requeue", "hook")
	if code != 0 || !strings.Contains(out, "requeued 2 dead letters of hook") {
		t.Fatalf("outbox --requeue hook: exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ := env.run(t, "outbox", "--pending"); code != 0 || !strings.Contains(out, "2 entries") || strings.Contains(out, "mail") {
		t.Errorf("after the bulk requeue, pending: exit %d\n%s", code, out)
	}
	if code, out, _ := env.run(t, "outbox", "--dead"); code != 0 || !strings.Contains(out, "1 entries") {
		t.Errorf("after the bulk requeue, dead: exit %d\n%s", code, out)
	}
	if code, _, errs := env.run(t, "outbox", "--dead", "--state", "all"); code != 2 || !strings.Contains(errs, "give one of --dead, --pending and --state") {
		t.Errorf("--dead with --state: exit %d\n%s", code, errs)
	}
}

// TestSearchWithoutSourceUsesTheServiceConfig: the runbooks' `trailwatch
// search --user root --since 24h` names no source; it searches the log
// groups of the service's configuration ($TRAILWATCH_CONFIG) instead of
// failing as wrong usage, and says what to give when there is none.
func TestSearchWithoutSourceUsesTheServiceConfig(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"config.yaml":  "state_dir: state\n",
		"kinesis.yaml": "state_dir: state\nsource:\n  kinesis: {stream: s, lease_table: l}\n",
	})
	for file, has := range map[string]string{"config.yaml": "no source", "kinesis.yaml": "source.kinesis"} {
		code, _, errs := proc{Env: []string{"TRAILWATCH_CONFIG=" + filepath.Join(dir, file)}}.run(t, "search", "--user", "root", "--since", "24h")
		if want := "search --config reads the log groups of source.cloudwatch, and this configuration has " + has + ": give --log-group NAME"; code != 1 || !strings.Contains(errs, want) {
			t.Errorf("with $TRAILWATCH_CONFIG=%s: exit %d, want the configuration read and refused with %q\n%s", file, code, want, errs)
		}
	}
	old := systemConfig
	systemConfig = filepath.Join(dir, "absent.yaml")
	t.Cleanup(func() { systemConfig = old })
	t.Setenv("TRAILWATCH_CONFIG", "")
	code, _, errs := runArgs(t, "search", "--user", "root", "--since", "24h")
	if code != 2 || !strings.Contains(errs, "$TRAILWATCH_CONFIG") {
		t.Errorf("without any configuration: exit %d\n%s", code, errs)
	}
}

// TestValidateRefusesWhatRunRefuses is issue 15's item 3, through the
// real binary against moto: validate refuses a configuration run would
// refuse (a source but no state_dir), and with --check-aws runs run's own
// start-up checks, so a shared_state table that does not exist is found
// by validate, not by run at its first alert.
func TestValidateRefusesWhatRunRefuses(t *testing.T) {
	e := newRunEnv(t, "")
	if code, out, errs := (proc{}).run(t, "validate", "--config", e.cfgPath, "--check-aws"); code != 0 {
		t.Fatalf("validate --check-aws of a configuration run accepts: exit %d\n%s%s", code, out, errs)
	}
	data, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	noState := filepath.Join(e.dir, "no-state.yaml")
	e.writeFile(noState, regexp.MustCompile(`(?m)^state_dir: .*\n`).ReplaceAllString(string(data), ""))
	code, out, _ := proc{}.run(t, "validate", "--config", noState)
	if code != 1 || !strings.Contains(out, "state_dir is required for run") {
		t.Errorf("validate of a configuration without state_dir: exit %d\n%s", code, out)
	}
	badTable := filepath.Join(e.dir, "bad-table.yaml")
	e.writeFile(badTable, string(data)+"shared_state:\n  dynamodb_table: trailwatch-no-such-table\n  region: us-east-1\n")
	if code, out, errs := (proc{}).run(t, "validate", "--config", badTable); code != 0 {
		t.Errorf("validate without --check-aws reaches AWS or refuses the table: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs := proc{}.run(t, "validate", "--config", badTable, "--check-aws")
	if code != 1 || !strings.Contains(out, "trailwatch-no-such-table") || !strings.Contains(errs, "problem(s) that run would refuse to start with") {
		t.Errorf("validate --check-aws with a missing shared_state table: exit %d\n%s%s", code, out, errs)
	}
	t.Run("every missing resource of every source", checkAWSFindsEveryMissingResource)
}

// checkAWSFindsEveryMissingResource is issue 15's item 3 for every
// source type, against the moto AWS_ENDPOINT_URL names: `validate
// --check-aws` names every table, stream, log group and queue the
// configuration uses that does not exist, all at once; run refuses the
// same configuration before it says it is running.
func checkAWSFindsEveryMissingResource(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"own.yaml": ownRuleYAML}) // the built-in packs are slow to compile under -race
	const tail = "state_dir: state\nrules: [own.yaml]\nnotifiers:\n  - {name: out, type: file, path: out.jsonl}\n"
	for _, tc := range []struct {
		source string
		config string
		want   []string
	}{
		{"kinesis", "source:\n  kinesis:\n    stream: no-such-stream\n    lease_table: no-such-leases\n    region: us-east-1\n" +
			"shared_state:\n  dynamodb_table: no-such-shared\n",
			[]string{`shared state table "no-such-shared"`, `kinesis stream "no-such-stream"`, `lease table "no-such-leases"`}},
		{"cloudwatch", "source:\n  cloudwatch:\n    log_groups: [no-such-group, no-such-other]\n    region: us-east-1\n",
			[]string{`log group "no-such-group"`, `log group "no-such-other"`}},
		{"s3sqs", "source:\n  s3sqs:\n    queue: https://sqs.us-east-1.amazonaws.com/123456789012/no-such-queue\n    region: us-east-1\n",
			[]string{"no-such-queue"}},
	} {
		t.Run(tc.source, func(t *testing.T) {
			cfg := filepath.Join(dir, tc.source+".yaml")
			writeTree(t, dir, map[string]string{tc.source + ".yaml": tc.config + tail})
			if code, out, errs := (proc{}).run(t, "validate", "--config", cfg); code != 0 {
				t.Errorf("validate without --check-aws: exit %d\n%s%s", code, out, errs)
			}
			code, out, errs := proc{}.run(t, "validate", "--config", cfg, "--check-aws")
			if want := fmt.Sprintf("%d problem(s) that run would refuse to start with", len(tc.want)); code != 1 || !strings.Contains(errs, want) {
				t.Errorf("validate --check-aws: exit %d, want 1 and %q\n%s%s", code, want, out, errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("validate --check-aws does not name %s:\n%s", w, out)
				}
			}
			code, _, errs = runBounded(t, "run", "--config", cfg)
			if code != 1 || strings.Contains(errs, "trailwatch running") {
				t.Errorf("run: exit %d, want 1 before running; log:\n%s", code, errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(errs, w) {
					t.Errorf("run does not name %s (every problem at once):\n%s", w, errs)
				}
			}
		})
	}
}

// TestUnroutedRulesAreNamed is issue 15's item 3: rules whose alerts no
// route delivers (and that name no notifier) are named by validate, and
// by run's log when it starts; a configuration that routes everything
// gets no warning.
func TestUnroutedRulesAreNamed(t *testing.T) {
	dir := t.TempDir()
	const base = "source:\n  cloudwatch:\n    log_groups: [g]\nrules: [rules.yaml]\nnotifiers:\n  - {name: page, type: file, path: page.jsonl}\n"
	writeTree(t, dir, map[string]string{
		"rules.yaml": ownRuleYAML + `  - id: own-critical
    title: Own critical rule
    severity: critical
    when: eventName == "Y"
  - id: own-disabled
    title: Own disabled rule
    severity: low
    enabled: false
    when: eventName == "Z"
`,
		"critical-only.yaml": base + "state_dir: state\nroutes:\n  - {severity: [critical], notify: [page]}\n",
		"everything.yaml":    base + "state_dir: state\nroutes:\n  - {severity: [critical], notify: [page]}\n  - {notify: [page]}\n",
		"no-state.yaml":      base + "routes:\n  - {severity: [critical], notify: [page]}\n",
	})
	code, out, errs := proc{}.run(t, "validate", "--config", filepath.Join(dir, "critical-only.yaml"))
	if code != 0 || !regexp.MustCompile(`warning: \d+ enabled rules would raise alerts that reach no notifier`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^  own-rule \(low\) at \S*rules.yaml:2:5$`).MatchString(out) ||
		strings.Contains(out, "own-critical") || strings.Contains(out, "own-disabled") {
		t.Errorf("validate with routes for critical alerts only: exit %d, want 0 and a warning naming own-rule (not the critical nor the disabled rule)\n%s%s", code, out, errs)
	}
	if code, out, errs := (proc{}).run(t, "validate", "--config", filepath.Join(dir, "everything.yaml")); code != 0 || strings.Contains(out, "warning") {
		t.Errorf("validate with every alert routed: exit %d, want no warning\n%s%s", code, out, errs)
	}
	// run names them when it starts (here it then refuses the missing
	// state_dir, before it reaches AWS).
	code, _, errs = runBounded(t, "run", "--config", filepath.Join(dir, "no-state.yaml"))
	if code != 1 || !strings.Contains(errs, "level=WARN msg=\"enabled rules whose alerts reach no notifier") || !strings.Contains(errs, "rules=[own-rule]") {
		t.Errorf("run: exit %d, want the warning in its log\n%s", code, errs)
	}
}

// TestValidateReportsEveryProblemAtItsKey is issue 15's item 6 through the
// real binary: one validate run reports every problem of the
// configuration and of its rules, each at its own key's line and column
// with the forms accepted; a misspelt lists: entry at its key; a key
// indented too far on its own line.
func TestValidateReportsEveryProblemAtItsKey(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"config.yaml": `source:
  cloudwatch:
    log_groups: [g]
    poll_interval: 5
state_dir: state
rules: [lists.yaml, team.yaml]
lists:
  allowed_region: [eu-west-1]
notifiers:
  - name: out
    type: file
    path: out.jsonl
  - name: mail
    type: email
    ses: true
routes:
  - min_severity: urgent
    notify: [out, pager]
rule_overrides:
  - rules: [aws-no-such-rule]
    enabled: true
`,
		"lists.yaml": "lists:\n  allowed_regions: [us-east-1]\n" + ownRuleYAML,
		"team.yaml": `rules:
  - id: t1
    title: T
    severity: sever
    when: eventNmae == "X"
`,
		"indent.yaml": "state_dir: state\nnotifiers:\n  - name: out\n    type: file\n      path: out.jsonl\n",
	})
	code, out, errs := proc{Dir: dir}.run(t, "validate", "--config", "config.yaml")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{
		"config.yaml:4:20: source.cloudwatch.poll_interval: want a duration: a number and a unit (ms, s, m, h), such as 500ms, 30s, 5m or 1h30m",
		`config.yaml:15:5: unknown key "ses" in notifier "mail" (type email accepts `,
		"transport,",
		`config.yaml:17:19: routes[0]: min_severity "urgent" is not one of info, low, medium, high, critical`,
		`config.yaml:18:19: routes[0]: unknown notifier "pager" (defined: out, mail)`,
		`config.yaml:8:3: lists: "allowed_region" overrides no list the rules define (have allowed_regions)`,
		`config.yaml:20:5: rule_overrides: "aws-no-such-rule" matches no loaded rule`,
		`team.yaml:4:15: rule "t1": severity "sever" is not one of info, low, medium, high, critical`,
		`team.yaml:5:11: rule "t1": when: unknown name eventNmae`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("validate does not report %q; output:\n%s%s", want, out, errs)
		}
	}
	if strings.Contains(out, ":1:1:") {
		t.Errorf("a problem is placed at 1:1:\n%s", out)
	}
	code, out, _ = proc{Dir: dir}.run(t, "validate", "--config", "indent.yaml")
	if code != 1 || !strings.HasPrefix(out, "indent.yaml:5:7: invalid YAML: ") || !strings.Contains(out, "check the indentation") {
		t.Errorf("a key indented too far: exit %d, want it reported at indent.yaml:5:7\n%s", code, out)
	}
}

// TestValidateRefusesQuietAfterRunRefuses is issue 15's item 3: what run
// decides from the source it builds (quiet_after needs a source that
// knows its log groups) plain validate refuses too, without AWS.
func TestValidateRefusesQuietAfterRunRefuses(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"own.yaml":    ownRuleYAML,
		"config.yaml": "source:\n  kinesis: {stream: s, lease_table: l, region: us-east-1}\nstate_dir: state\nquiet_after: 1h\nrules: [own.yaml]\nnotifiers:\n  - {name: out, type: file, path: out.jsonl}\n",
	})
	const want = "quiet_after needs a source whose log groups are known in advance (source.cloudwatch), not source.kinesis"
	cfg := filepath.Join(dir, "config.yaml")
	code, out, errs := proc{Env: []string{"AWS_ENDPOINT_URL=http://127.0.0.1:1"}}.run(t, "validate", "--config", cfg)
	if code != 1 || !strings.Contains(out, want) {
		t.Errorf("validate: exit %d, want 1 and %q\n%s%s", code, want, out, errs)
	}
	code, _, errs = runBounded(t, "run", "--config", cfg)
	if code != 1 || !strings.Contains(errs, want) {
		t.Errorf("run: exit %d, want 1 and %q\n%s", code, want, errs)
	}
}

// TestValidateReportsSecretsAndRunProblemsTogether is issue 15's item 6:
// a secret file run could not read and what run would refuse of the
// configuration (no state_dir) are reported by one validate run.
func TestValidateReportsSecretsAndRunProblemsTogether(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"own.yaml":    ownRuleYAML,
		"config.yaml": "source:\n  cloudwatch: {log_groups: [g], region: us-east-1}\nrules: [own.yaml]\nnotifiers:\n  - {name: pager, type: pagerduty, routing_key_file: missing-key}\n",
	})
	code, out, errs := proc{}.run(t, "validate", "--config", filepath.Join(dir, "config.yaml"))
	for _, want := range []string{`notifier "pager": pagerduty: routing_key_file: read secret file: open `, "state_dir is required for run"} {
		if !strings.Contains(out, want) {
			t.Errorf("validate does not report %q", want)
		}
	}
	if code != 1 || !strings.Contains(errs, "2 problem(s) that run would refuse to start with") {
		t.Errorf("exit %d, want 1 and both problems counted\n%s%s", code, out, errs)
	}

	// A mistake in the file and in a rule does not hide what run would
	// refuse (the missing state_dir): fixing one does not reveal another.
	writeTree(t, dir, map[string]string{
		"bad-rule.yaml": strings.Replace(ownRuleYAML, "severity: low", "severity: lowish", 1),
		"typo.yaml":     "source:\n  cloudwatch: {log_groups: [g], region: us-east-1, poll_interval: soon}\nrules: [bad-rule.yaml]\n",
	})
	code, out, errs = proc{Dir: dir}.run(t, "validate", "--config", "typo.yaml")
	for _, want := range []string{"typo.yaml:2:67: source.cloudwatch.poll_interval: want a duration", `bad-rule.yaml:4:15: rule "own-rule": severity "lowish"`, "typo.yaml: state_dir is required for run"} {
		if !strings.Contains(out, want) {
			t.Errorf("validate does not report %q", want)
		}
	}
	if want := "1 problem(s) in typo.yaml, 1 in the rules and 1 that run would refuse to start with; nothing was run"; code != 1 || !strings.Contains(errs, want) {
		t.Errorf("exit %d, want 1 and %q\n%s%s", code, want, out, errs)
	}
}

// TestSearchSourceIPAndPrincipal is issue 15's item 5 through the real
// binary: the flags the runbooks name find what they say on the bundled
// sample (a CIDR block; a principal ARN exactly, not a prefix of it), and a
// --source-ip that is neither an address nor a CIDR block is wrong usage,
// not a search that finds nothing.
func TestSearchSourceIPAndPrincipal(t *testing.T) {
	const sample = "../../examples/events/sample-trail.jsonl"
	records := func(args ...string) []map[string]any {
		t.Helper()
		code, out, errs := proc{}.run(t, append(append([]string{"search", "-o", "jsonl"}, args...), sample)...)
		if code != 0 {
			t.Fatalf("search %v: exit %d\n%s", args, code, errs)
		}
		var recs []map[string]any
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line == "" {
				continue
			}
			var r map[string]any
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("search %v: %v in %q", args, err, line)
			}
			recs = append(recs, r)
		}
		return recs
	}
	recs := records("--source-ip", "185.220.101.0/24")
	for _, r := range recs {
		if ip, _ := r["sourceIPAddress"].(string); !strings.HasPrefix(ip, "185.220.101.") {
			t.Errorf("--source-ip 185.220.101.0/24 found a record from %q", ip)
		}
	}
	if len(recs) != 4 {
		t.Errorf("--source-ip 185.220.101.0/24: %d records, want the sample's 4", len(recs))
	}
	const alice = "arn:aws:iam::111122223333:user/alice"
	recs = records("--principal", alice)
	for _, r := range recs {
		if arn, _ := r["userIdentity"].(map[string]any)["arn"].(string); arn != alice {
			t.Errorf("--principal %s found a record of %q", alice, arn)
		}
	}
	if len(recs) != 14 {
		t.Errorf("--principal %s: %d records, want the sample's 14", alice, len(recs))
	}
	if recs := records("--principal", strings.TrimSuffix(alice, "e")); len(recs) != 0 {
		t.Errorf("--principal takes an ARN exactly: a prefix found %d records", len(recs))
	}
	code, _, errs := proc{}.run(t, "search", "--source-ip", "300.1.2.3/8", sample)
	if code != 2 || !strings.Contains(errs, `--source-ip "300.1.2.3/8" is not a CIDR block`) {
		t.Errorf("--source-ip 300.1.2.3/8: exit %d, want 2 and the reason\n%s", code, errs)
	}
}

// TestValidateRefusesNoSourceUnlessLambda is issue 15's item 3: a
// configuration without a source, which run refuses, is refused by
// validate too, unless --lambda says it has none on purpose (the Lambda
// function's).
func TestValidateRefusesNoSourceUnlessLambda(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"own.yaml":    ownRuleYAML,
		"config.yaml": "rules: [own.yaml]\nnotifiers:\n  - {name: out, type: file, path: out.jsonl}\n",
	})
	cfg := filepath.Join(dir, "config.yaml")
	code, out, errs := proc{}.run(t, "validate", "--config", cfg)
	if code != 1 || !strings.Contains(out, "run needs a source: one of source.cloudwatch") || !strings.Contains(out, "state_dir is required for run") ||
		!strings.Contains(out, "is validated with --lambda") {
		t.Errorf("validate of a configuration without a source: exit %d, want 1, the problems and the note on --lambda\n%s%s", code, out, errs)
	}
	if code, out, errs := (proc{}).run(t, "validate", "--lambda", "--config", cfg); code != 0 {
		t.Errorf("validate --lambda: exit %d, want 0\n%s%s", code, out, errs)
	}
	if code, _, errs := (proc{}).run(t, "validate", "--lambda", "--check-aws", "--config", cfg); code != 2 {
		t.Errorf("validate --lambda --check-aws: exit %d, want 2\n%s", code, errs)
	}
}
