package cfn

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// PseudoParameters are the names Ref and Sub may use besides a template's
// parameters and resources.
var PseudoParameters = map[string]bool{
	"AWS::AccountId": true, "AWS::NotificationARNs": true, "AWS::NoValue": true, "AWS::Partition": true,
	"AWS::Region": true, "AWS::StackId": true, "AWS::StackName": true, "AWS::URLSuffix": true,
}

// subVar matches a ${Name} or ${Resource.Attribute} of an Fn::Sub string;
// ${!Literal} stays as written.
var subVar = regexp.MustCompile(`\$\{([^}]*)\}`)

// subVars returns the names an Fn::Sub string refers to.
func subVars(s string) []string {
	var out []string
	for _, m := range subVar.FindAllStringSubmatch(s, -1) {
		if !strings.HasPrefix(m[1], "!") {
			out = append(out, m[1])
		}
	}
	return out
}

// Reference is one use of a name: a Ref, a GetAtt, a variable of a Sub or
// the condition of an If.
type Reference struct {
	Kind, Name, Where string
}

// References walks v (a decoded template or a part of one, at where) and
// returns every name it refers to.
func References(v any, where string) []Reference {
	var out []Reference
	switch x := v.(type) {
	case []any:
		for i, e := range x {
			out = append(out, References(e, fmt.Sprintf("%s[%d]", where, i))...)
		}
	case map[string]any:
		if ref, ok := intrinsicRefs(x, where); ok {
			return ref
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = append(out, References(x[k], where+"."+k)...)
		}
	}
	return out
}

// intrinsicRefs returns the names an intrinsic function (a map of one
// key) refers to, those of its arguments included; ok is false when m is
// not one of the intrinsics that refer to names.
func intrinsicRefs(m map[string]any, where string) (out []Reference, ok bool) {
	if len(m) != 1 {
		return nil, false
	}
	for fn, arg := range m {
		switch fn {
		case "Ref":
			return []Reference{{"Ref", fmt.Sprint(arg), where}}, true
		case "Fn::GetAtt":
			if l, isList := arg.([]any); isList && len(l) == 2 {
				return []Reference{{"GetAtt", fmt.Sprint(l[0]), where}}, true
			}
			return []Reference{{"GetAtt", fmt.Sprint(arg), where}}, true
		case "Fn::Sub":
			s, local := arg, map[string]any{}
			if l, isList := arg.([]any); isList && len(l) == 2 {
				s = l[0]
				local, _ = l[1].(map[string]any)
				out = References(l[1], where+".Fn::Sub")
			}
			for _, name := range subVars(fmt.Sprint(s)) {
				if _, isLocal := local[name]; isLocal {
					continue
				}
				if res, _, isAttr := strings.Cut(name, "."); isAttr {
					out = append(out, Reference{"GetAtt", res, where})
				} else {
					out = append(out, Reference{"Ref", name, where})
				}
			}
			return out, true
		case "Fn::If":
			l, isList := arg.([]any)
			if !isList || len(l) != 3 {
				return []Reference{{"Condition", fmt.Sprint(arg), where}}, true
			}
			out = append(out, Reference{"Condition", fmt.Sprint(l[0]), where})
			return append(out, References(l[1:], where+".Fn::If")...), true
		}
	}
	return nil, false
}

// CheckReferences fails t for every Ref, GetAtt, Sub variable, If
// condition, DependsOn and resource Condition of tpl that names nothing
// the template defines, and for every parameter and condition nothing
// uses.
func CheckReferences(t testing.TB, tpl map[string]any) {
	t.Helper()
	res, _ := tpl["Resources"].(map[string]any)
	params, _ := tpl["Parameters"].(map[string]any)
	conds, _ := tpl["Conditions"].(map[string]any)
	var refs []Reference
	for _, section := range []string{"Conditions", "Resources", "Outputs"} {
		refs = append(refs, References(tpl[section], section)...)
	}
	used := map[string]bool{}
	for _, r := range refs {
		used[r.Name] = true
		_, isParam := params[r.Name]
		_, isRes := res[r.Name]
		_, isCond := conds[r.Name]
		switch {
		case r.Kind == "Ref" && !isParam && !isRes && !PseudoParameters[r.Name]:
			t.Errorf("%s: Ref %s is no parameter, resource or pseudo parameter", r.Where, r.Name)
		case r.Kind == "GetAtt" && !isRes:
			t.Errorf("%s: GetAtt of %s, which is no resource", r.Where, r.Name)
		case r.Kind == "Condition" && !isCond:
			t.Errorf("%s: condition %s is not defined", r.Where, r.Name)
		}
	}
	for name, r := range res {
		for _, dep := range Strings(Get(r, "DependsOn")) {
			if _, ok := res[dep]; !ok {
				t.Errorf("Resources.%s: DependsOn %s, which is no resource", name, dep)
			}
		}
		if c := Get(r, "Condition"); c != nil {
			used[fmt.Sprint(c)] = true
			if _, ok := conds[fmt.Sprint(c)]; !ok {
				t.Errorf("Resources.%s: condition %v is not defined", name, c)
			}
		}
	}
	for name := range params {
		if !used[name] {
			t.Errorf("parameter %s is never used", name)
		}
	}
	for name := range conds {
		if !used[name] {
			t.Errorf("condition %s is never used", name)
		}
	}
}

// Render evaluates sub, an Fn::Sub of a plain string, as CloudFormation
// would: each ${Name} takes values[Name], else the parameter's default;
// ${!Literal} becomes ${Literal}. The error names every variable without
// a value.
func Render(tpl map[string]any, sub any, values map[string]string) (string, error) {
	s, ok := Get(sub, "Fn::Sub").(string)
	if !ok {
		return "", fmt.Errorf("%v is not an !Sub of a string", sub)
	}
	var missing []string
	out := subVar.ReplaceAllStringFunc(s, func(m string) string {
		name := m[2 : len(m)-1]
		if strings.HasPrefix(name, "!") {
			return "${" + name[1:] + "}"
		}
		if v, ok := values[name]; ok {
			return v
		}
		if def := Get(tpl, "Parameters", name, "Default"); def != nil {
			return fmt.Sprint(def)
		}
		missing = append(missing, name)
		return ""
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("no value for %s", strings.Join(missing, ", "))
	}
	return out, nil
}

// Statements returns the policy statements of a policy resource's
// document (Properties.PolicyDocument), leaving out those an !If removes
// (the ones present when its condition holds are kept).
func Statements(res any) []map[string]any {
	var out []map[string]any
	l, _ := Get(res, "Properties", "PolicyDocument", "Statement").([]any)
	for _, st := range l {
		if branches, ok := Get(st, "Fn::If").([]any); ok && len(branches) == 3 {
			st = branches[1]
		}
		if m, ok := st.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// ArnOf returns the resource whose Arn attribute v is (!GetAtt X.Arn), or
// "" if v is anything else.
func ArnOf(v any) string {
	l, _ := Get(v, "Fn::GetAtt").([]any)
	if len(l) != 2 || l[1] != "Arn" {
		return ""
	}
	return fmt.Sprint(l[0])
}

// Accepts reports why CloudFormation would refuse v for parameter p.
func Accepts(p any, v string) error {
	if allowed := Strings(Get(p, "AllowedValues")); allowed != nil && !slices.Contains(allowed, v) {
		return fmt.Errorf("not one of %q", allowed)
	}
	if pat, ok := Get(p, "AllowedPattern").(string); ok && !regexp.MustCompile("^(?:"+pat+")$").MatchString(v) {
		return fmt.Errorf("does not match %s", pat)
	}
	if Get(p, "Type") == "Number" {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("not a number")
		}
		if lo, ok := Get(p, "MinValue").(int); ok && n < float64(lo) {
			return fmt.Errorf("below %d", lo)
		}
		if hi, ok := Get(p, "MaxValue").(int); ok && n > float64(hi) {
			return fmt.Errorf("above %d", hi)
		}
	}
	return nil
}
