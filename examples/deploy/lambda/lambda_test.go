// Package lambda_test checks the Lambda deployment example so it cannot go
// stale: the CloudFormation template is well formed, grants the function
// exactly what trailwatch-lambda calls and nothing wider, and agrees with
// the code on the table's key and TTL attribute, on the environment and on
// which S3 prefix a configuration in S3 spans; the README names every file;
// build.sh is valid shell.
package lambda_test

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/internal/cfn"
	"github.com/trailwatch/trailwatch/internal/s3bundle"
)

// branches returns the values v may take: both branches of an Fn::If
// (less AWS::NoValue), else v itself.
func branches(v any) []any {
	m, _ := v.(map[string]any)
	args, ok := m["Fn::If"].([]any)
	if !ok || len(args) != 3 {
		return []any{v}
	}
	var out []any
	for _, b := range args[1:] {
		if fmt.Sprint(b) != "map[Ref:AWS::NoValue]" {
			out = append(out, b)
		}
	}
	return out
}

// statements returns the role's policy statements, those that depend on a
// condition included, each with the condition's name ("" if none).
func statements(res map[string]any) (sts []any, conds []string) {
	pols, _ := cfn.Get(res, "FunctionRole", "Properties", "Policies").([]any)
	for _, pol := range pols {
		for _, st := range cfn.Get(pol, "PolicyDocument", "Statement").([]any) {
			cond := ""
			if args, ok := cfn.Get(st, "Fn::If").([]any); ok {
				cond = fmt.Sprint(args[0])
			}
			for _, b := range branches(st) {
				sts = append(sts, b)
				conds = append(conds, cond)
			}
		}
	}
	return sts, conds
}

func TestTemplate(t *testing.T) {
	tpl := loadTemplate(t)
	res, _ := tpl["Resources"].(map[string]any)

	t.Run("the table is what engine/dynamostate expects", func(t *testing.T) {
		p := cfn.Get(res, "DeliveryTable", "Properties")
		if got := fmt.Sprint(cfn.Get(p, "BillingMode")); got != "PAY_PER_REQUEST" {
			t.Errorf("BillingMode = %s, want PAY_PER_REQUEST", got)
		}
		ks := cfn.Get(p, "KeySchema").([]any)
		if len(ks) != 1 || cfn.Get(ks[0], "AttributeName") != dynamostate.AttrKey || cfn.Get(ks[0], "KeyType") != "HASH" {
			t.Errorf("KeySchema = %v, want one HASH key %q", ks, dynamostate.AttrKey)
		}
		if got := cfn.Get(p, "TimeToLiveSpecification", "AttributeName"); got != dynamostate.AttrTTL {
			t.Errorf("TTL attribute = %v, want %q", got, dynamostate.AttrTTL)
		}
		if got := cfn.Get(p, "TimeToLiveSpecification", "Enabled"); got != true {
			t.Errorf("TTL enabled = %v, want true", got)
		}
	})

	t.Run("the function's environment points at the bundle and the table", func(t *testing.T) {
		p := cfn.Get(res, "Function", "Properties")
		vars, _ := cfn.Get(p, "Environment", "Variables").(map[string]any)
		args, _ := cfn.Get(vars, "TRAILWATCH_CONFIG", "Fn::If").([]any)
		if len(args) != 3 || args[0] != "ConfigInS3" {
			t.Fatalf("TRAILWATCH_CONFIG = %v, want !If [ConfigInS3, the S3 URI, the bundled file]", vars["TRAILWATCH_CONFIG"])
		}
		if cfg := fmt.Sprint(args[2]); !s3bundle.IsURI(cfg) {
			if _, err := os.Stat(cfg); err != nil {
				t.Errorf("TRAILWATCH_CONFIG without ConfigBucket = %q, not a file of the package (build.sh ships bundle/): %v", cfg, err)
			}
		} else {
			t.Errorf("TRAILWATCH_CONFIG without ConfigBucket = %q, want the bundled file", cfg)
		}
		if got, want := fmt.Sprint(cfn.Get(args[1], "Fn::Sub")), "s3://${ConfigBucket}/${ConfigPrefix}config.yaml"; got != want {
			t.Errorf("TRAILWATCH_CONFIG with ConfigBucket = %v, want !Sub %s", args[1], want)
		}
		if got := fmt.Sprint(cfn.Get(tpl, "Conditions", "ConfigInS3")); got != "map[Fn::Not:[map[Fn::Equals:[map[Ref:ConfigBucket] ]]]]" {
			t.Errorf("condition ConfigInS3 = %s, want !Not [!Equals [!Ref ConfigBucket, \"\"]]", got)
		}
		if got := fmt.Sprint(vars["TRAILWATCH_DELIVERY_TABLE"]); got != "map[Ref:DeliveryTable]" {
			t.Errorf("TRAILWATCH_DELIVERY_TABLE = %s, want !Ref DeliveryTable", got)
		}
		if cfn.Get(p, "Handler") != "bootstrap" || cfn.Get(p, "Runtime") != "provided.al2023" {
			t.Errorf("Handler/Runtime = %v/%v, want bootstrap/provided.al2023 (build.sh's layout)", cfn.Get(p, "Handler"), cfn.Get(p, "Runtime"))
		}
	})

	t.Run("failed batches are retried, then kept", func(t *testing.T) {
		p := cfn.Get(res, "AsyncRetries", "Properties")
		if got := fmt.Sprint(cfn.Get(p, "MaximumRetryAttempts")); got != "2" {
			t.Errorf("MaximumRetryAttempts = %s, want 2", got)
		}
		if got := fmt.Sprint(cfn.Get(p, "DestinationConfig", "OnFailure", "Destination")); !strings.Contains(got, "DeadLetterQueue") {
			t.Errorf("OnFailure destination = %s, want the dead-letter queue", got)
		}
	})

	t.Run("CloudWatch Logs may invoke it before the filter exists", func(t *testing.T) {
		if got := fmt.Sprint(cfn.Get(res, "SubscriptionFilter", "DependsOn")); got != "LogsInvokePermission" {
			t.Errorf("SubscriptionFilter.DependsOn = %s, want LogsInvokePermission", got)
		}
		if got := cfn.Get(res, "LogsInvokePermission", "Properties", "Principal"); got != "logs.amazonaws.com" {
			t.Errorf("permission principal = %v, want logs.amazonaws.com", got)
		}
		if cfn.Get(res, "LogsInvokePermission", "Properties", "SourceArn") == nil {
			t.Error("the invoke permission has no SourceArn: any log group could invoke the function")
		}
	})

	t.Run("the role grants exactly what the function calls", func(t *testing.T) {
		sts, _ := statements(res)
		var actions []string
		for _, st := range sts {
			if cfn.Get(st, "Effect") != "Allow" {
				continue
			}
			for _, r := range cfn.Strings(cfn.Get(st, "Resource")) {
				if strings.Contains(r, "*") && !strings.Contains(r, "Fn::") {
					t.Errorf("statement %v has a wildcard resource %q", cfn.Get(st, "Sid"), r)
				}
			}
			for _, a := range cfn.Strings(cfn.Get(st, "Action")) {
				if strings.Contains(a, "*") {
					t.Errorf("wildcard action %q", a)
				}
				actions = append(actions, a)
			}
		}
		sort.Strings(actions)
		want := []string{
			"dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
			"logs:CreateLogStream", "logs:PutLogEvents", "s3:GetObject", "s3:ListBucket", "sqs:SendMessage",
		}
		if !slices.Equal(actions, want) {
			t.Errorf("role actions = %q, want %q", actions, want)
		}
	})

	t.Run("the role reads the configuration's S3 prefix only, and only when it is in S3", func(t *testing.T) {
		sts, conds := statements(res)
		found := map[string]bool{}
		for i, st := range sts {
			actions := cfn.Strings(cfn.Get(st, "Action"))
			if !slices.ContainsFunc(actions, func(a string) bool { return strings.HasPrefix(a, "s3:") }) {
				continue
			}
			if conds[i] != "ConfigInS3" {
				t.Errorf("statement %v grants %q whatever ConfigBucket is, want it under !If ConfigInS3", cfn.Get(st, "Sid"), actions)
			}
			for _, a := range actions {
				found[a] = true
				resource := fmt.Sprint(cfn.Get(st, "Resource", "Fn::Sub"))
				switch a {
				case "s3:GetObject":
					if want := "arn:${AWS::Partition}:s3:::${ConfigBucket}/${ConfigPrefix}*"; resource != want {
						t.Errorf("s3:GetObject on %q, want %q", resource, want)
					}
				case "s3:ListBucket":
					if want := "arn:${AWS::Partition}:s3:::${ConfigBucket}"; resource != want {
						t.Errorf("s3:ListBucket on %q, want %q", resource, want)
					}
					if got := fmt.Sprint(cfn.Get(st, "Condition", "StringLike", "s3:prefix", "Fn::Sub")); got != "${ConfigPrefix}*" {
						t.Errorf("s3:ListBucket limited to s3:prefix %q, want ${ConfigPrefix}*", got)
					}
				default:
					t.Errorf("unexpected S3 action %q", a)
				}
			}
		}
		if !found["s3:GetObject"] || !found["s3:ListBucket"] {
			t.Errorf("S3 actions granted: %v, want s3:GetObject and s3:ListBucket", found)
		}
	})

	t.Run("the prefix granted is the prefix trailwatch-lambda copies", func(t *testing.T) {
		param := cfn.Get(tpl, "Parameters", "ConfigPrefix")
		pattern := regexp.MustCompile("^(?:" + fmt.Sprint(cfn.Get(param, "AllowedPattern")) + ")$")
		def := fmt.Sprint(cfn.Get(param, "Default"))
		for _, prefix := range []string{def, "teams/security/trailwatch/", "trailwatch", "/trailwatch/", ""} {
			if !pattern.MatchString(prefix) {
				continue // CloudFormation refuses it
			}
			uri := "s3://config-bucket/" + prefix + "config.yaml"
			loc, err := s3bundle.ParseURI(uri)
			if err != nil {
				t.Errorf("ConfigPrefix %q makes TRAILWATCH_CONFIG %s: %v", prefix, uri, err)
				continue
			}
			if loc.Prefix() != prefix {
				t.Errorf("ConfigPrefix %q: the role grants objects under %q, the function copies those under %q", prefix, prefix, loc.Prefix())
			}
		}
		if !pattern.MatchString(def) {
			t.Errorf("ConfigPrefix's default %q does not match its AllowedPattern", def)
		}
		for _, bad := range []string{"trailwatch", "", "/trailwatch/"} {
			if pattern.MatchString(bad) {
				t.Errorf("ConfigPrefix accepts %q", bad)
			}
		}
	})

	t.Run("cfn-lint", func(t *testing.T) { cfn.Lint(t, "template.yaml") })
}

func TestBuildScriptIsValidShell(t *testing.T) {
	out, err := exec.CommandContext(t.Context(), "bash", "-n", "build.sh").CombinedOutput()
	if err != nil {
		t.Errorf("bash -n build.sh: %v\n%s", err, out)
	}
	st, err := os.Stat("build.sh")
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&0o111 == 0 {
		t.Error("build.sh is not executable")
	}
}

func TestREADMECoversEveryFile(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == "README.md" {
			return err
		}
		if !strings.Contains(string(readme), "`"+filepath.ToSlash(path)+"`") {
			t.Errorf("README.md does not mention `%s`", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func loadTemplate(t *testing.T) map[string]any {
	t.Helper()
	m, err := cfn.ReadFile("template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return m
}
