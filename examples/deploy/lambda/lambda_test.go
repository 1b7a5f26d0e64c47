// Package lambda_test checks the Lambda deployment example so it cannot go
// stale: the CloudFormation template is well formed, grants the function
// exactly what trailwatch-lambda calls and nothing wider, and agrees with
// the code on the table's key and TTL attribute and on the environment;
// the README names every file; build.sh is valid shell.
package lambda_test

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/trailwatch/trailwatch/engine/dynamostate"
)

// intrinsics are the short-form CloudFormation tags the template may use.
var intrinsics = map[string]string{
	"!Ref": "Ref", "!Sub": "Fn::Sub", "!GetAtt": "Fn::GetAtt", "!Join": "Fn::Join", "!If": "Fn::If",
}

// value turns the template's YAML into plain Go values with intrinsics in
// their long form ({"Ref": X}), as CloudFormation reads them.
func value(n *yaml.Node) (any, error) {
	if n.Kind == yaml.DocumentNode {
		return value(n.Content[0])
	}
	var v any
	switch n.Kind {
	case yaml.ScalarNode:
		v = n.Value
		if !strings.HasPrefix(n.Tag, "!") || strings.HasPrefix(n.Tag, "!!") {
			if err := n.Decode(&v); err != nil {
				return nil, fmt.Errorf("line %d: %w", n.Line, err)
			}
		}
	case yaml.SequenceNode:
		var l []any
		for _, c := range n.Content {
			cv, err := value(c)
			if err != nil {
				return nil, err
			}
			l = append(l, cv)
		}
		v = l
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("line %d: duplicate key %q", n.Content[i].Line, k)
			}
			cv, err := value(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[k] = cv
		}
		v = m
	default:
		return nil, fmt.Errorf("line %d: unsupported YAML node", n.Line)
	}
	if !strings.HasPrefix(n.Tag, "!") || strings.HasPrefix(n.Tag, "!!") {
		return v, nil
	}
	long, ok := intrinsics[n.Tag]
	if !ok {
		return nil, fmt.Errorf("line %d: unknown tag %s", n.Line, n.Tag)
	}
	if s, isStr := v.(string); isStr && long == "Fn::GetAtt" {
		res, attr, _ := strings.Cut(s, ".")
		v = []any{res, attr}
	}
	return map[string]any{long: v}, nil
}

func get(v any, path ...string) any {
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	return v
}

func loadTemplate(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile("template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("parse template.yaml: %v", err)
	}
	v, err := value(&doc)
	if err != nil {
		t.Fatalf("template.yaml: %v", err)
	}
	return v.(map[string]any)
}

func strs(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, fmt.Sprint(e))
		}
		return out
	}
	return nil
}

func TestTemplate(t *testing.T) {
	tpl := loadTemplate(t)
	res, _ := tpl["Resources"].(map[string]any)

	t.Run("the table is what engine/dynamostate expects", func(t *testing.T) {
		p := get(res, "DeliveryTable", "Properties")
		if got := fmt.Sprint(get(p, "BillingMode")); got != "PAY_PER_REQUEST" {
			t.Errorf("BillingMode = %s, want PAY_PER_REQUEST", got)
		}
		ks := get(p, "KeySchema").([]any)
		if len(ks) != 1 || get(ks[0], "AttributeName") != dynamostate.AttrKey || get(ks[0], "KeyType") != "HASH" {
			t.Errorf("KeySchema = %v, want one HASH key %q", ks, dynamostate.AttrKey)
		}
		if got := get(p, "TimeToLiveSpecification", "AttributeName"); got != dynamostate.AttrTTL {
			t.Errorf("TTL attribute = %v, want %q", got, dynamostate.AttrTTL)
		}
		if got := get(p, "TimeToLiveSpecification", "Enabled"); got != true {
			t.Errorf("TTL enabled = %v, want true", got)
		}
	})

	t.Run("the function's environment points at the bundle and the table", func(t *testing.T) {
		p := get(res, "Function", "Properties")
		vars, _ := get(p, "Environment", "Variables").(map[string]any)
		cfg := fmt.Sprint(vars["TRAILWATCH_CONFIG"])
		if _, err := os.Stat(cfg); err != nil {
			t.Errorf("TRAILWATCH_CONFIG = %q, not a file of the package (build.sh ships bundle/): %v", cfg, err)
		}
		if got := fmt.Sprint(vars["TRAILWATCH_DELIVERY_TABLE"]); got != "map[Ref:DeliveryTable]" {
			t.Errorf("TRAILWATCH_DELIVERY_TABLE = %s, want !Ref DeliveryTable", got)
		}
		if get(p, "Handler") != "bootstrap" || get(p, "Runtime") != "provided.al2023" {
			t.Errorf("Handler/Runtime = %v/%v, want bootstrap/provided.al2023 (build.sh's layout)", get(p, "Handler"), get(p, "Runtime"))
		}
	})

	t.Run("failed batches are retried, then kept", func(t *testing.T) {
		p := get(res, "AsyncRetries", "Properties")
		if got := fmt.Sprint(get(p, "MaximumRetryAttempts")); got != "2" {
			t.Errorf("MaximumRetryAttempts = %s, want 2", got)
		}
		if got := fmt.Sprint(get(p, "DestinationConfig", "OnFailure", "Destination")); !strings.Contains(got, "DeadLetterQueue") {
			t.Errorf("OnFailure destination = %s, want the dead-letter queue", got)
		}
	})

	t.Run("CloudWatch Logs may invoke it before the filter exists", func(t *testing.T) {
		if got := fmt.Sprint(get(res, "SubscriptionFilter", "DependsOn")); got != "LogsInvokePermission" {
			t.Errorf("SubscriptionFilter.DependsOn = %s, want LogsInvokePermission", got)
		}
		if got := get(res, "LogsInvokePermission", "Properties", "Principal"); got != "logs.amazonaws.com" {
			t.Errorf("permission principal = %v, want logs.amazonaws.com", got)
		}
		if get(res, "LogsInvokePermission", "Properties", "SourceArn") == nil {
			t.Error("the invoke permission has no SourceArn: any log group could invoke the function")
		}
	})

	t.Run("the role grants exactly what the function calls", func(t *testing.T) {
		pols, _ := get(res, "FunctionRole", "Properties", "Policies").([]any)
		var actions []string
		for _, pol := range pols {
			for _, st := range get(pol, "PolicyDocument", "Statement").([]any) {
				if get(st, "Effect") != "Allow" {
					continue
				}
				for _, r := range strs(get(st, "Resource")) {
					if strings.Contains(r, "*") && !strings.Contains(r, "Fn::") {
						t.Errorf("statement %v has a wildcard resource %q", get(st, "Sid"), r)
					}
				}
				for _, a := range strs(get(st, "Action")) {
					if strings.Contains(a, "*") {
						t.Errorf("wildcard action %q", a)
					}
					actions = append(actions, a)
				}
			}
		}
		sort.Strings(actions)
		want := []string{
			"dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
			"logs:CreateLogStream", "logs:PutLogEvents", "sqs:SendMessage",
		}
		if !slices.Equal(actions, want) {
			t.Errorf("role actions = %q, want %q", actions, want)
		}
	})

	t.Run("cfn-lint", func(t *testing.T) {
		lint, err := exec.LookPath("cfn-lint")
		if err != nil {
			t.Skip("cfn-lint is not installed (pip install cfn-lint==1.51.0); the structural checks above still ran")
		}
		if out, err := exec.CommandContext(t.Context(), lint, "template.yaml").CombinedOutput(); err != nil {
			t.Errorf("cfn-lint template.yaml: %v\n%s", err, out)
		}
	})
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
