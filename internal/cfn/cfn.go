// Package cfn reads CloudFormation templates written in YAML into plain Go
// values, with the short-form intrinsic functions (!Ref X, !GetAtt R.A,
// !Sub ...) rewritten into their long form ({"Ref": X}, {"Fn::GetAtt":
// [R, A]}, {"Fn::Sub": ...}) as CloudFormation reads them, so that checks
// of a template see one shape. The deployment examples' tests use it.
package cfn

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Intrinsics are the short-form tags a template may use, with the long
// form each stands for.
var Intrinsics = map[string]string{
	"!Ref": "Ref", "!Condition": "Condition",
	"!Sub": "Fn::Sub", "!GetAtt": "Fn::GetAtt", "!If": "Fn::If", "!Equals": "Fn::Equals",
	"!Not": "Fn::Not", "!And": "Fn::And", "!Or": "Fn::Or", "!Join": "Fn::Join",
	"!Select": "Fn::Select", "!Split": "Fn::Split", "!FindInMap": "Fn::FindInMap",
	"!Base64": "Fn::Base64", "!Cidr": "Fn::Cidr", "!GetAZs": "Fn::GetAZs", "!ImportValue": "Fn::ImportValue",
}

// Decode reads a template. Duplicate keys, unknown tags and a !GetAtt
// that is not Resource.Attribute are errors with their line.
func Decode(data []byte) (map[string]any, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Kind == 0 {
		return nil, fmt.Errorf("empty template")
	}
	v, err := Value(&doc)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("top level is %T, want a mapping", v)
	}
	return m, nil
}

// Value turns one YAML node of a template into plain Go values.
func Value(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.DocumentNode:
		return Value(n.Content[0])
	case yaml.AliasNode:
		return Value(n.Alias)
	}
	tag := ""
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		tag = n.Tag
	}
	var v any
	switch n.Kind {
	case yaml.ScalarNode:
		if tag != "" {
			v = n.Value
		} else if err := n.Decode(&v); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
	case yaml.SequenceNode:
		list := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			cv, err := Value(c)
			if err != nil {
				return nil, err
			}
			list = append(list, cv)
		}
		v = list
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("line %d: duplicate key %q", n.Content[i].Line, k)
			}
			cv, err := Value(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[k] = cv
		}
		v = m
	default:
		return nil, fmt.Errorf("line %d: unsupported YAML node", n.Line)
	}
	if tag == "" {
		return v, nil
	}
	long, ok := Intrinsics[tag]
	if !ok {
		return nil, fmt.Errorf("line %d: unknown tag %s", n.Line, tag)
	}
	if long == "Fn::GetAtt" {
		if s, ok := v.(string); ok {
			res, attr, found := strings.Cut(s, ".")
			if !found {
				return nil, fmt.Errorf("line %d: !GetAtt %q is not Resource.Attribute", n.Line, s)
			}
			v = []any{res, attr}
		}
	}
	return map[string]any{long: v}, nil
}

// ReadFile reads and decodes the template at path.
func ReadFile(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Get walks a path of mapping keys from v; it returns nil where the path
// leaves the template.
func Get(v any, path ...string) any {
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	return v
}

// Strings returns a string or a list of values (each printed) as a list
// of strings, and nil for anything else.
func Strings(v any) []string {
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

// Lint runs cfn-lint on the template at path, failing t with its report.
// Without cfn-lint on the PATH it skips, saying how to install it: the
// structural checks of the calling test still ran.
func Lint(t testing.TB, path string) {
	t.Helper()
	lint, err := exec.LookPath("cfn-lint")
	if err != nil {
		t.Skip("cfn-lint is not installed (pip install cfn-lint==1.51.0); the structural checks above still ran")
	}
	if out, err := exec.CommandContext(t.Context(), lint, path).CombinedOutput(); err != nil {
		t.Errorf("cfn-lint %s: %v\n%s", path, err, out)
	}
}
