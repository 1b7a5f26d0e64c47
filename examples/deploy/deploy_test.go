// Package deploy_test checks the deployment examples in examples/deploy so
// that none of them goes stale: the IAM policies grant exactly the actions
// trailwatch calls, the CloudFormation template is well formed and wires the
// trail to its log group, the rules CI workflow runs the right commands, the
// systemd unit keeps its sandbox, and the Dockerfile builds a binary that
// reports the version it was given and accepts the flags the examples pass.
package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/trailwatch/trailwatch/internal/cfn"
)

// account is the placeholder account every example uses (AWS's own
// documentation placeholder), so a real account ID cannot slip in.
const account = "111122223333"

// readFile reads a file of this directory.
func readFile(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return data
}

// ---------------------------------------------------------------- IAM

// stringList is an IAM policy field that is either a string or a list.
type stringList []string

func (s *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("decode string or list of strings: %w", err)
	}
	*s = many
	return nil
}

type policyDoc struct {
	Version   string
	Statement []policyStatement
}

// policyStatement has only the fields the examples may use: NotAction,
// NotResource and Principal make decoding fail, as they have no place in a
// least-privilege identity policy.
type policyStatement struct {
	Sid       string
	Effect    string
	Action    stringList
	Resource  stringList
	Condition map[string]map[string]stringList
}

func loadPolicy(t *testing.T, name string) policyDoc {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(readFile(t, name)))
	dec.DisallowUnknownFields()
	var doc policyDoc
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return doc
}

// wildcardResources are the only resources with a `*` the policies may
// grant, each with the reason AWS leaves no narrower choice. No statement
// may use Resource "*": every action trailwatch calls supports
// resource-level permissions.
var wildcardResources = map[string]string{
	"arn:aws:logs:us-east-1:" + account + ":log-group:*": "logs:DescribeLogGroups lists log groups instead of acting on one, " +
		"so IAM authorizes it against the account's log-group:* ARN (Service Authorization Reference, CloudWatch Logs)",
	"arn:aws:logs:us-east-1:" + account + ":log-group:aws-cloudtrail-logs-trailwatch:*": "the log group's ARN with its streams, " +
		"the form CloudWatch Logs itself reports; FilterLogEvents reads every stream of the one group",
}

func TestIAMPolicies(t *testing.T) {
	logGroup := "arn:aws:logs:us-east-1:" + account + ":log-group:aws-cloudtrail-logs-trailwatch"
	sesResources := []string{
		"arn:aws:ses:us-east-1:" + account + ":configuration-set/trailwatch",
		"arn:aws:ses:us-east-1:" + account + ":identity/example.com",
	}
	tests := []struct {
		file string
		// want maps each action to the resources it is granted on, sorted.
		want map[string][]string
		// conditions maps a Sid to the condition keys it must carry.
		conditions map[string][]string
	}{
		{
			file: "iam-policy.json",
			want: map[string][]string{
				"logs:FilterLogEvents":   {logGroup, logGroup + ":*"},
				"logs:DescribeLogGroups": {"arn:aws:logs:us-east-1:" + account + ":log-group:*"},
				"sns:Publish":            {"arn:aws:sns:us-east-1:" + account + ":trailwatch-alerts"},
				// SES v2 SendEmail is authorized as ses:SendEmail, and as
				// ses:SendRawEmail when the content is raw (ses_raw: true).
				"ses:SendEmail":    sesResources,
				"ses:SendRawEmail": sesResources,
			},
			conditions: map[string][]string{"SendAlertMailWithSES": {"ses:FromAddress"}},
		},
		{
			file: "iam-policy-kms.json",
			want: map[string][]string{
				// An SSE-KMS topic needs both from its publishers.
				"kms:GenerateDataKey": {"arn:aws:kms:us-east-1:" + account + ":key/1234abcd-12ab-34cd-56ef-1234567890ab"},
				"kms:Decrypt":         {"arn:aws:kms:us-east-1:" + account + ":key/1234abcd-12ab-34cd-56ef-1234567890ab"},
			},
			conditions: map[string][]string{"PublishToKMSEncryptedAlertTopic": {"kms:CallerAccount", "kms:ViaService"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			doc := loadPolicy(t, tt.file)
			if doc.Version != "2012-10-17" {
				t.Errorf("Version = %q, want 2012-10-17 (the older version disables policy variables)", doc.Version)
			}
			got := map[string][]string{}
			sids := map[string]bool{}
			for i, st := range doc.Statement {
				if st.Sid == "" || sids[st.Sid] {
					t.Errorf("statement %d: Sid %q is empty or repeated", i, st.Sid)
				}
				sids[st.Sid] = true
				if st.Effect != "Allow" {
					t.Errorf("%s: Effect = %q, want Allow", st.Sid, st.Effect)
				}
				if len(st.Action) == 0 || len(st.Resource) == 0 {
					t.Errorf("%s: needs both Action and Resource", st.Sid)
				}
				for _, a := range st.Action {
					if strings.Contains(a, "*") {
						t.Errorf("%s: wildcard action %q", st.Sid, a)
					}
					got[a] = append(got[a], st.Resource...)
				}
				for _, r := range st.Resource {
					checkResource(t, st.Sid, r)
				}
				for _, key := range tt.conditions[st.Sid] {
					if !conditionHas(st.Condition, key) {
						t.Errorf("%s: no %s condition", st.Sid, key)
					}
				}
			}
			for sid := range tt.conditions {
				if !sids[sid] {
					t.Errorf("no statement %q", sid)
				}
			}
			for a := range got {
				sort.Strings(got[a])
			}
			for a := range tt.want {
				sort.Strings(tt.want[a])
			}
			for a, res := range got {
				if want, ok := tt.want[a]; !ok {
					t.Errorf("%s is granted (on %v) but trailwatch does not need it", a, res)
				} else if !slices.Equal(res, want) {
					t.Errorf("%s is granted on %v, want %v", a, res, want)
				}
			}
			for a, want := range tt.want {
				if _, ok := got[a]; !ok {
					t.Errorf("%s is not granted, want it on %v", a, want)
				}
			}
		})
	}
}

// checkResource rejects Resource "*", ARNs of another account, and
// wildcards that wildcardResources does not justify.
func checkResource(t *testing.T, sid, r string) {
	t.Helper()
	if r == "*" {
		t.Errorf(`%s: Resource "*"`, sid)
		return
	}
	parts := strings.SplitN(r, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[1] != "aws" {
		t.Errorf("%s: %q is not an ARN", sid, r)
		return
	}
	if parts[4] != account {
		t.Errorf("%s: %q: account %q, want the placeholder %s", sid, r, parts[4], account)
	}
	if strings.Contains(r, "*") && wildcardResources[r] == "" {
		t.Errorf("%s: wildcard resource %q has no recorded reason", sid, r)
	}
}

func conditionHas(cond map[string]map[string]stringList, key string) bool {
	for _, kv := range cond {
		if len(kv[key]) > 0 {
			return true
		}
	}
	return false
}

// ------------------------------------------------------ CloudFormation

type template = map[string]any

func loadTemplate(t *testing.T) template {
	t.Helper()
	m, err := cfn.Decode(readFile(t, "cloudtrail-cloudwatch.yaml"))
	if err != nil {
		t.Fatalf("cloudtrail-cloudwatch.yaml: %v", err)
	}
	return m
}

// get walks a path of map keys and list indexes.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func ref(name string) map[string]any { return map[string]any{"Ref": name} }

func getAtt(res, attr string) map[string]any {
	return map[string]any{"Fn::GetAtt": []any{res, attr}}
}

func TestCloudFormationTemplate(t *testing.T) {
	tpl := loadTemplate(t)
	resources, _ := tpl["Resources"].(map[string]any)

	t.Run("resources", func(t *testing.T) {
		want := map[string]string{
			"TrailBucket":       "AWS::S3::Bucket",
			"TrailBucketPolicy": "AWS::S3::BucketPolicy",
			"TrailLogGroup":     "AWS::Logs::LogGroup",
			"TrailLogsRole":     "AWS::IAM::Role",
			"Trail":             "AWS::CloudTrail::Trail",
			"AlertTopic":        "AWS::SNS::Topic",
		}
		for name, typ := range want {
			if got := get(resources, name, "Type"); got != typ {
				t.Errorf("Resources.%s.Type = %v, want %s", name, got, typ)
			}
		}
		if got := tpl["AWSTemplateFormatVersion"]; got != "2010-09-09" {
			t.Errorf("AWSTemplateFormatVersion = %v", got)
		}
	})

	t.Run("trail", func(t *testing.T) {
		trail := get(resources, "Trail")
		for _, tc := range []struct {
			path []any
			want any
		}{
			{[]any{"Properties", "IsMultiRegionTrail"}, true},
			{[]any{"Properties", "IsLogging"}, true},
			{[]any{"Properties", "IncludeGlobalServiceEvents"}, true},
			{[]any{"Properties", "EnableLogFileValidation"}, true},
			{[]any{"Properties", "TrailName"}, ref("TrailName")},
			{[]any{"Properties", "S3BucketName"}, ref("TrailBucket")},
			{[]any{"Properties", "CloudWatchLogsLogGroupArn"}, getAtt("TrailLogGroup", "Arn")},
			{[]any{"Properties", "CloudWatchLogsRoleArn"}, getAtt("TrailLogsRole", "Arn")},
			// CloudTrail checks the bucket policy when the trail is created.
			{[]any{"DependsOn"}, "TrailBucketPolicy"},
		} {
			if got := get(trail, tc.path...); !jsonEqual(got, tc.want) {
				t.Errorf("Trail.%v = %v, want %v", tc.path, got, tc.want)
			}
		}
		if get(trail, "Properties", "KMSKeyId", "Fn::If") == nil {
			t.Errorf("Trail.Properties.KMSKeyId should be conditional on HasKmsKey (KMS is optional)")
		}
	})

	t.Run("bucket policy", func(t *testing.T) {
		stmts, _ := get(resources, "TrailBucketPolicy", "Properties", "PolicyDocument", "Statement").([]any)
		bySid := map[string]any{}
		for _, s := range stmts {
			bySid[fmt.Sprint(get(s, "Sid"))] = s
		}
		for sid, action := range map[string]string{"AWSCloudTrailAclCheck": "s3:GetBucketAcl", "AWSCloudTrailWrite": "s3:PutObject"} {
			s := bySid[sid]
			if s == nil {
				t.Errorf("no %s statement", sid)
				continue
			}
			if got := get(s, "Action"); got != action {
				t.Errorf("%s: Action = %v, want %s", sid, got, action)
			}
			if got := get(s, "Principal", "Service"); got != "cloudtrail.amazonaws.com" {
				t.Errorf("%s: Principal.Service = %v", sid, got)
			}
			src := fmt.Sprint(get(s, "Condition", "StringEquals", "aws:SourceArn"))
			if !strings.Contains(src, ":trail/${TrailName}") {
				t.Errorf("%s: aws:SourceArn condition = %s, want the trail's ARN", sid, src)
			}
		}
		if got := get(bySid["AWSCloudTrailWrite"], "Condition", "StringEquals", "s3:x-amz-acl"); got != "bucket-owner-full-control" {
			t.Errorf("AWSCloudTrailWrite: s3:x-amz-acl = %v", got)
		}
	})

	t.Run("log group and role", func(t *testing.T) {
		if get(resources, "TrailLogGroup", "Properties", "RetentionInDays") == nil {
			t.Errorf("TrailLogGroup has no RetentionInDays")
		}
		role := get(resources, "TrailLogsRole", "Properties")
		if got := get(role, "AssumeRolePolicyDocument", "Statement", 0, "Principal", "Service"); got != "cloudtrail.amazonaws.com" {
			t.Errorf("TrailLogsRole trusts %v, want cloudtrail.amazonaws.com", got)
		}
		var actions []string
		policies, _ := get(role, "Policies").([]any)
		for _, p := range policies {
			stmts, _ := get(p, "PolicyDocument", "Statement").([]any)
			for _, s := range stmts {
				actions = append(actions, fmt.Sprint(get(s, "Action")))
				res := fmt.Sprint(get(s, "Resource"))
				if !strings.Contains(res, "log-group:${TrailLogGroup}:log-stream:") {
					t.Errorf("TrailLogsRole grants %v on %s, want only the log group's streams", get(s, "Action"), res)
				}
			}
		}
		sort.Strings(actions)
		if want := []string{"logs:CreateLogStream", "logs:PutLogEvents"}; !slices.Equal(actions, want) {
			t.Errorf("TrailLogsRole actions = %v, want %v", actions, want)
		}
	})

	t.Run("outputs", func(t *testing.T) {
		if got := get(tpl, "Outputs", "LogGroupName", "Value"); !jsonEqual(got, ref("TrailLogGroup")) {
			t.Errorf("Outputs.LogGroupName.Value = %v, want !Ref TrailLogGroup", got)
		}
		if got := get(tpl, "Outputs", "AlertTopicArn", "Value"); !jsonEqual(got, ref("AlertTopic")) {
			t.Errorf("Outputs.AlertTopicArn.Value = %v, want !Ref AlertTopic", got)
		}
	})

	t.Run("references resolve", func(t *testing.T) {
		for _, err := range checkReferences(tpl) {
			t.Error(err)
		}
	})

	t.Run("matches iam-policy.json", func(t *testing.T) {
		// The example service policy names the log group and topic this
		// template creates by default: a rename must update both.
		policy := string(readFile(t, "iam-policy.json"))
		group := fmt.Sprint(get(tpl, "Parameters", "LogGroupName", "Default"))
		if !strings.Contains(policy, ":log-group:"+group+`"`) {
			t.Errorf("iam-policy.json does not grant FilterLogEvents on the template's log group %q", group)
		}
		topic := fmt.Sprint(get(resources, "AlertTopic", "Properties", "TopicName"))
		if !strings.Contains(policy, ":sns:us-east-1:"+account+":"+topic+`"`) {
			t.Errorf("iam-policy.json does not grant sns:Publish on the template's topic %q", topic)
		}
	})

	t.Run("cfn-lint", func(t *testing.T) { cfn.Lint(t, "cloudtrail-cloudwatch.yaml") })
}

// subVar matches ${Name} and ${Resource.Attr} in Fn::Sub strings; ${!x} is
// a literal.
var subVar = regexp.MustCompile(`\$\{([^!}][^}]*)\}`)

// checkReferences reports every Ref, GetAtt, Sub variable and condition
// name that names nothing the template defines.
func checkReferences(tpl template) []error {
	defined := map[string]bool{}
	for _, section := range []string{"Parameters", "Resources"} {
		m, _ := tpl[section].(map[string]any)
		for k := range m {
			defined[k] = true
		}
	}
	resources, _ := tpl["Resources"].(map[string]any)
	conds, _ := tpl["Conditions"].(map[string]any)
	known := func(name string) bool { return defined[name] || strings.HasPrefix(name, "AWS::") }
	var errs []error
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for k, e := range x {
				switch k {
				case "Ref":
					if s, _ := e.(string); !known(s) {
						errs = append(errs, fmt.Errorf("Ref to undefined %q", e))
					}
				case "Fn::GetAtt":
					if res := fmt.Sprint(get(e, 0)); resources[res] == nil {
						errs = append(errs, fmt.Errorf("GetAtt of undefined resource %q", res))
					}
				case "Fn::If":
					if c := fmt.Sprint(get(e, 0)); conds[c] == nil {
						errs = append(errs, fmt.Errorf("Fn::If on undefined condition %q", c))
					}
				case "Condition":
					if c, ok := e.(string); ok && conds[c] == nil {
						errs = append(errs, fmt.Errorf("undefined condition %q", c))
					}
				case "Fn::Sub":
					s, _ := e.(string)
					vars := map[string]bool{}
					if l, ok := e.([]any); ok && len(l) == 2 {
						s, _ = l[0].(string)
						m, _ := l[1].(map[string]any)
						for name := range m {
							vars[name] = true
						}
						walk(l[1])
					}
					for _, sm := range subVar.FindAllStringSubmatch(s, -1) {
						name, attr, isAtt := strings.Cut(sm[1], ".")
						switch {
						case vars[name] || strings.HasPrefix(name, "AWS::"):
						case isAtt && resources[name] == nil:
							errs = append(errs, fmt.Errorf("Fn::Sub ${%s.%s}: undefined resource %q", name, attr, name))
						case !isAtt && !known(name):
							errs = append(errs, fmt.Errorf("Fn::Sub ${%s}: undefined name", name))
						}
					}
					continue
				}
				walk(e)
			}
		}
	}
	for _, section := range []string{"Conditions", "Resources", "Outputs"} {
		walk(tpl[section])
	}
	if len(errs) == 0 && len(resources) == 0 {
		errs = append(errs, errors.New("the template defines no resources"))
	}
	return errs
}

func jsonEqual(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

// ------------------------------------------------------------ workflow

type workflow struct {
	Name        string            `yaml:"name"`
	On          yaml.Node         `yaml:"on"`
	Permissions map[string]string `yaml:"permissions"`
	Concurrency yaml.Node         `yaml:"concurrency"`
	Env         map[string]string `yaml:"env"`
	Jobs        map[string]struct {
		Name           string `yaml:"name"`
		RunsOn         string `yaml:"runs-on"`
		TimeoutMinutes int    `yaml:"timeout-minutes"`
		Steps          []struct {
			Name string            `yaml:"name"`
			Uses string            `yaml:"uses"`
			Run  string            `yaml:"run"`
			With map[string]any    `yaml:"with"`
			Env  map[string]string `yaml:"env"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

func loadWorkflow(t *testing.T) workflow {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, "rules-ci.yml")))
	dec.KnownFields(true)
	var wf workflow
	if err := dec.Decode(&wf); err != nil {
		t.Fatalf("parse rules-ci.yml: %v", err)
	}
	return wf
}

// pinnedAction is owner/repo@<full commit SHA>: a tag can be moved to other
// code, a commit cannot.
var pinnedAction = regexp.MustCompile(`^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$`)

// trailwatchCommands returns the trailwatch command lines of the workflow's
// run steps, one per line.
func (wf workflow) trailwatchCommands() []string {
	var cmds []string
	for _, job := range wf.Jobs {
		for _, st := range job.Steps {
			for _, line := range strings.Split(st.Run, "\n") {
				line = strings.TrimSpace(line)
				if strings.HasPrefix(line, "trailwatch ") {
					cmds = append(cmds, line)
				}
			}
		}
	}
	return cmds
}

func TestRulesWorkflow(t *testing.T) {
	wf := loadWorkflow(t)
	if len(wf.Jobs) == 0 {
		t.Fatal("rules-ci.yml has no jobs")
	}
	if got := wf.Permissions["contents"]; got != "read" || len(wf.Permissions) != 1 {
		t.Errorf("permissions = %v, want only contents: read", wf.Permissions)
	}
	if !regexp.MustCompile(`^v\d+\.\d+\.\d+$`).MatchString(wf.Env["TRAILWATCH_VERSION"]) {
		t.Errorf("env.TRAILWATCH_VERSION = %q, want a pinned release such as v1.2.3", wf.Env["TRAILWATCH_VERSION"])
	}
	var runs []string
	for name, job := range wf.Jobs {
		if job.RunsOn == "" || strings.Contains(job.RunsOn, "latest") {
			t.Errorf("job %s: runs-on %q, want a pinned runner image", name, job.RunsOn)
		}
		if job.TimeoutMinutes == 0 {
			t.Errorf("job %s: no timeout-minutes", name)
		}
		for i, st := range job.Steps {
			if st.Uses != "" && !pinnedAction.MatchString(st.Uses) {
				t.Errorf("job %s step %d: uses %q, want an action pinned to a commit SHA", name, i, st.Uses)
			}
			runs = append(runs, st.Run)
		}
	}
	all := strings.Join(runs, "\n")
	for _, want := range []string{
		`go install "github.com/trailwatch/trailwatch/cmd/trailwatch@${TRAILWATCH_VERSION}"`,
		"trailwatch validate --rules rules/",
		"trailwatch test --rules rules/ --require-tests",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no run step runs %q", want)
		}
	}
}

// ------------------------------------------------------------- systemd

// unitFile is a parsed systemd unit: section -> key -> every value given,
// in order (a key may repeat; an empty assignment resets the list).
type unitFile map[string]map[string][]string

func parseUnit(data []byte) (unitFile, error) {
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
			continue
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		case strings.HasSuffix(line, `\`):
			return nil, fmt.Errorf("line %d: continuation lines are not supported by this check", n)
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			return nil, fmt.Errorf("line %d: %q is not key=value inside a section", n, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		u[section][k] = append(u[section][k], v)
	}
	return u, sc.Err()
}

func TestSystemdUnit(t *testing.T) {
	u, err := parseUnit(readFile(t, "trailwatch.service"))
	if err != nil {
		t.Fatalf("parse trailwatch.service: %v", err)
	}
	svc := u["Service"]
	if svc == nil {
		t.Fatal("trailwatch.service has no [Service] section")
	}
	last := func(k string) (string, bool) {
		v := svc[k]
		if len(v) == 0 {
			return "", false
		}
		return v[len(v)-1], true
	}
	tests := []struct {
		key, want string
	}{
		{"StateDirectory", "trailwatch"},
		{"ProtectSystem", "strict"},
		{"ProtectHome", "yes"},
		{"PrivateTmp", "yes"},
		{"NoNewPrivileges", "yes"},
		{"CapabilityBoundingSet", ""},
		{"RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"},
		{"MemoryDenyWriteExecute", "yes"},
		{"LockPersonality", "yes"},
		{"ProtectKernelTunables", "yes"},
		{"ProtectKernelModules", "yes"},
		{"ProtectKernelLogs", "yes"},
		{"ProtectControlGroups", "yes"},
		{"ReadWritePaths", "/var/lib/trailwatch"},
		{"EnvironmentFile", "/etc/trailwatch/secrets.env"},
		{"ExecReload", "/bin/kill -HUP $MAINPID"},
		{"Restart", "on-failure"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, ok := last(tt.key)
			if !ok {
				t.Fatalf("[Service] has no %s=", tt.key)
			}
			if got != tt.want {
				t.Errorf("%s=%s, want %s=%s", tt.key, got, tt.key, tt.want)
			}
		})
	}
	t.Run("SystemCallFilter", func(t *testing.T) {
		if !slices.Contains(svc["SystemCallFilter"], "@system-service") {
			t.Errorf("SystemCallFilter=%v, want @system-service among them", svc["SystemCallFilter"])
		}
	})
	t.Run("TimeoutStopSec", func(t *testing.T) {
		if v, ok := last("TimeoutStopSec"); !ok || v == "" || v == "infinity" {
			t.Errorf("TimeoutStopSec=%q, want a bounded stop timeout", v)
		}
	})
	t.Run("user", func(t *testing.T) {
		dyn, _ := last("DynamicUser")
		user, _ := last("User")
		if dyn != "yes" && user != "trailwatch" {
			t.Errorf("DynamicUser=%q User=%q, want DynamicUser=yes or User=trailwatch", dyn, user)
		}
		if user == "root" || user == "0" {
			t.Errorf("User=%s", user)
		}
	})
	t.Run("ExecStart", func(t *testing.T) {
		v, _ := last("ExecStart")
		if !strings.HasPrefix(v, "/usr/local/bin/trailwatch run --config /etc/trailwatch/config.yaml") {
			t.Errorf("ExecStart=%s", v)
		}
	})
}

// unitExecStartArgs returns the trailwatch arguments of the unit's
// ExecStart line.
func unitExecStartArgs(t *testing.T) []string {
	t.Helper()
	u, err := parseUnit(readFile(t, "trailwatch.service"))
	if err != nil {
		t.Fatalf("parse trailwatch.service: %v", err)
	}
	v := u["Service"]["ExecStart"]
	if len(v) == 0 {
		t.Fatal("trailwatch.service: no ExecStart")
	}
	return strings.Fields(v[len(v)-1])[1:]
}

// ---------------------------------------------------------- Dockerfile

// dockerInstruction is one Dockerfile instruction, continuation lines
// joined.
type dockerInstruction struct {
	Cmd, Args string
	Line      int
}

func parseDockerfile(data []byte) ([]dockerInstruction, error) {
	var out []dockerInstruction
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: start})
		cur.Reset()
	}
	if cur.Len() > 0 {
		return nil, errors.New("the Dockerfile ends inside a continuation line")
	}
	return out, sc.Err()
}

// dockerfile is what the checks need from the Dockerfile.
type dockerfile struct {
	instructions []dockerInstruction
	stages       [][]dockerInstruction // split at FROM
	args         map[string]string     // ARG defaults
}

func loadDockerfile(t *testing.T) dockerfile {
	t.Helper()
	ins, err := parseDockerfile(readFile(t, "Dockerfile"))
	if err != nil {
		t.Fatalf("parse Dockerfile: %v", err)
	}
	df := dockerfile{instructions: ins, args: map[string]string{}}
	for _, in := range ins {
		switch in.Cmd {
		case "FROM":
			df.stages = append(df.stages, nil)
		case "ARG":
			if k, v, ok := strings.Cut(in.Args, "="); ok {
				df.args[k] = v
			}
		}
		if len(df.stages) > 0 {
			df.stages[len(df.stages)-1] = append(df.stages[len(df.stages)-1], in)
		}
	}
	return df
}

// ldflagsRe finds the -ldflags value of the go build command.
var ldflagsRe = regexp.MustCompile(`-ldflags\s+"([^"]+)"`)

// buildLdflags returns the Dockerfile's -ldflags with ${VERSION} replaced.
func (df dockerfile) buildLdflags(version string) (string, error) {
	for _, in := range df.instructions {
		if in.Cmd != "RUN" || !strings.Contains(in.Args, "go build") {
			continue
		}
		m := ldflagsRe.FindStringSubmatch(in.Args)
		if m == nil {
			return "", fmt.Errorf("line %d: go build without -ldflags", in.Line)
		}
		return strings.ReplaceAll(m[1], "${VERSION}", version), nil
	}
	return "", errors.New("no RUN go build")
}

// execForm decodes an instruction's JSON (exec form) arguments.
func execForm(in dockerInstruction) ([]string, error) {
	var args []string
	if err := json.Unmarshal([]byte(in.Args), &args); err != nil {
		return nil, fmt.Errorf("line %d: %s is not in exec (JSON) form: %w", in.Line, in.Cmd, err)
	}
	return args, nil
}

func TestDockerfile(t *testing.T) {
	df := loadDockerfile(t)
	if len(df.stages) < 2 {
		t.Fatalf("Dockerfile has %d stage(s), want a multi-stage build", len(df.stages))
	}
	final := df.stages[len(df.stages)-1]
	lastOf := func(cmd string) (dockerInstruction, bool) {
		var found dockerInstruction
		ok := false
		for _, in := range final {
			if in.Cmd == cmd {
				found, ok = in, true
			}
		}
		return found, ok
	}

	t.Run("base images pinned", func(t *testing.T) {
		argRe := regexp.MustCompile(`\$\{(\w+)\}`)
		for _, stage := range df.stages {
			from := stage[0]
			fields := strings.Fields(from.Args)
			image := ""
			for _, f := range fields {
				if !strings.HasPrefix(f, "--") {
					image = f
					break
				}
			}
			image = argRe.ReplaceAllStringFunc(image, func(s string) string { return df.args[s[2:len(s)-1]] })
			switch {
			case image == "scratch":
			case strings.Contains(image, "latest"):
				t.Errorf("line %d: FROM %s uses a latest tag", from.Line, image)
			case !strings.Contains(image[strings.LastIndex(image, "/")+1:], ":") && !strings.Contains(image, "@sha256:"):
				t.Errorf("line %d: FROM %s has no tag (that means latest)", from.Line, image)
			}
		}
	})

	t.Run("static build", func(t *testing.T) {
		var build string
		for _, in := range df.instructions {
			if in.Cmd == "RUN" && strings.Contains(in.Args, "go build") {
				build = in.Args
			}
		}
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/trailwatch"} {
			if !strings.Contains(build, want) {
				t.Errorf("go build step lacks %s: %s", want, build)
			}
		}
		ld, err := df.buildLdflags("VERSION")
		if err != nil {
			t.Fatal(err)
		}
		if want := "-s -w -X github.com/trailwatch/trailwatch/internal/version.Version=VERSION"; ld != want {
			t.Errorf("-ldflags %q, want %q", ld, want)
		}
	})

	t.Run("final stage", func(t *testing.T) {
		from := strings.Fields(final[0].Args)
		if img := from[len(from)-1]; img != "scratch" && !strings.HasPrefix(img, "gcr.io/distroless/static") {
			t.Errorf("final stage FROM %s, want distroless static or scratch", img)
		}
		user, ok := lastOf("USER")
		if !ok {
			t.Fatal("final stage has no USER (it would run as root)")
		}
		uid, gid, _ := strings.Cut(user.Args, ":")
		for _, id := range []string{uid, gid} {
			if id == "" {
				continue
			}
			n, err := strconv.Atoi(id)
			if err != nil || n == 0 {
				t.Errorf("line %d: USER %s, want a numeric non-root uid[:gid]", user.Line, user.Args)
			}
		}
		vol, ok := lastOf("VOLUME")
		if !ok || !strings.Contains(vol.Args, "/var/lib/trailwatch") {
			t.Errorf("final stage VOLUME %q, want /var/lib/trailwatch", vol.Args)
		}
		if ep, ok := lastOf("ENTRYPOINT"); !ok {
			t.Error("no ENTRYPOINT")
		} else if args, err := execForm(ep); err != nil || !slices.Equal(args, []string{"/trailwatch"}) {
			t.Errorf("ENTRYPOINT %s (%v), want [\"/trailwatch\"]", ep.Args, err)
		}
		if cmd, ok := lastOf("CMD"); !ok {
			t.Error("no CMD")
		} else if args, err := execForm(cmd); err != nil || !slices.Equal(args, []string{"run", "--config", "/etc/trailwatch/config.yaml"}) {
			t.Errorf("CMD %s (%v), want [\"run\",\"--config\",\"/etc/trailwatch/config.yaml\"]", cmd.Args, err)
		}
	})

	t.Run("docker run example", func(t *testing.T) {
		data := string(readFile(t, "Dockerfile"))
		for _, want := range []string{"docker run", "--read-only", "--tmpfs /tmp", "-v "} {
			if !strings.Contains(data, want) {
				t.Errorf("the Dockerfile's usage comment lacks %q", want)
			}
		}
	})
}

// dockerCmdArgs returns the final stage's CMD.
func dockerCmdArgs(t *testing.T) []string {
	t.Helper()
	df := loadDockerfile(t)
	var args []string
	for _, in := range df.stages[len(df.stages)-1] {
		if in.Cmd == "CMD" {
			var err error
			if args, err = execForm(in); err != nil {
				t.Fatal(err)
			}
		}
	}
	return args
}

// -------------------------------------------------------------- README

func TestREADMECoversEveryFile(t *testing.T) {
	readme := string(readFile(t, "README.md"))
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || name == "README.md" || strings.HasSuffix(name, "_test.go") {
			continue
		}
		if !strings.Contains(readme, name) {
			t.Errorf("README.md does not mention %s", name)
		}
	}
}

// ------------------------------------------------------- built binary

const testVersion = "v0.0.0-deploytest"

func buildBinary(dir string) (string, error) {
	ins, err := os.ReadFile("Dockerfile")
	if err != nil {
		return "", fmt.Errorf("build trailwatch: %w", err)
	}
	parsed, err := parseDockerfile(ins)
	if err != nil {
		return "", fmt.Errorf("build trailwatch: %w", err)
	}
	df := dockerfile{instructions: parsed}
	ldflags, err := df.buildLdflags(testVersion)
	if err != nil {
		return "", fmt.Errorf("build trailwatch: %w", err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return "", fmt.Errorf("build trailwatch: %w", err)
	}
	bin := filepath.Join(dir, "trailwatch")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", bin, "./cmd/trailwatch")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build trailwatch: go build: %w\n%s", err, out)
	}
	return bin, nil
}

func TestBuiltBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds trailwatch (slow on a cold build cache); skipped with -short")
	}
	// Built exactly as the Dockerfile builds it.
	bin, err := buildBinary(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	run := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(t.Context(), bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("trailwatch %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	t.Run("version", func(t *testing.T) {
		if out := run(t, "version"); !strings.HasPrefix(out, "trailwatch "+testVersion+" ") {
			t.Errorf("trailwatch version = %q, want it to start with %q", out, "trailwatch "+testVersion)
		}
	})

	// Each example's command line, with --help added, must parse: a renamed
	// subcommand or flag would otherwise only show in production.
	lines := map[string][]string{
		"Dockerfile CMD":               dockerCmdArgs(t),
		"trailwatch.service ExecStart": unitExecStartArgs(t),
	}
	for _, line := range loadWorkflow(t).trailwatchCommands() {
		lines["rules-ci.yml: "+line] = strings.Fields(line)[1:]
	}
	if len(lines) < 4 {
		t.Errorf("found %d example command lines, want the Dockerfile's, the unit's and at least two from rules-ci.yml", len(lines))
	}
	for name, args := range lines {
		t.Run("flags/"+name, func(t *testing.T) {
			run(t, append(slices.Clone(args), "--help")...)
		})
	}

	t.Run("systemd-analyze", func(t *testing.T) {
		sa, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Skip("systemd-analyze is not installed (apt-get install systemd); the key checks in TestSystemdUnit still ran")
		}
		// verify wants ExecStart's binary to exist: point it at the one
		// just built.
		unit := strings.ReplaceAll(string(readFile(t, "trailwatch.service")), "/usr/local/bin/trailwatch", bin)
		path := filepath.Join(t.TempDir(), "trailwatch.service")
		if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.CommandContext(t.Context(), sa, "verify", "--man=no", path).CombinedOutput(); err != nil {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
		// Exposure is scored 0-100 here (shown as 0.0-10.0); 20 is well
		// inside "OK", and a dropped hardening key pushes past it.
		out, err := exec.CommandContext(t.Context(), sa, "security", "--offline=yes", "--threshold=20", "--no-pager", path).CombinedOutput()
		if err != nil {
			t.Errorf("systemd-analyze security: exposure above 2.0 or error: %v\n%s", err, lastLines(string(out), 3))
		}
	})
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
