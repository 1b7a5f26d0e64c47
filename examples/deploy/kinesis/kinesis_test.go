// Package kinesis_test checks the Kinesis deployment example so it cannot
// go stale: every reference in the CloudFormation template resolves; the
// tables have the keys and TTL that engine/kinesis and engine/dynamostate
// expect; the instances' policy grants exactly the calls the code's own
// interfaces declare, each on its own resource; CloudWatch Logs may only
// put records into the stream; the configuration the stack outputs, and
// the one the README shows, load with trailwatch's config loader; and the
// README names every file, parameter and output and links only to files
// that exist.
package kinesis_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/kinesis"
	"github.com/trailwatch/trailwatch/internal/cfn"
	"github.com/trailwatch/trailwatch/internal/config"
)

// instanceActions is what InstancePolicy must grant, by the template
// resource it is granted on. TestInstanceActionsAreWhatTheCodeCalls
// derives the same lists from the code.
var instanceActions = map[string][]string{
	"Stream":           {"kinesis:DescribeStreamSummary", "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards"},
	"LeaseTable":       {"dynamodb:PutItem", "dynamodb:Scan", "dynamodb:UpdateItem"},
	"SharedStateTable": {"dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
}

// example gives the stack's generated names and its Region the values the
// README's configuration uses; parameters not named here take their
// defaults.
var example = map[string]string{
	"Stream.Arn":       "arn:aws:kinesis:us-east-1:111122223333:stream/trailwatch-kinesis-Stream-1A2B3C4D5E6F",
	"LeaseTable":       "trailwatch-kinesis-LeaseTable-1A2B3C4D5E6F",
	"SharedStateTable": "trailwatch-kinesis-SharedStateTable-1A2B3C4D5E6F",
	"AWS::Region":      "us-east-1",
}

// ------------------------------------------------------------ template
// pseudoParameters are the names !Ref and !Sub may use besides the
// template's parameters and resources.
var pseudoParameters = map[string]bool{
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

// reference is one use of a name: a Ref, a GetAtt, a variable of a Sub or
// the condition of an If.
type reference struct {
	kind, name, where string
}

// references walks v and returns every name it refers to.
func references(v any, where string) []reference {
	var out []reference
	switch x := v.(type) {
	case []any:
		for i, e := range x {
			out = append(out, references(e, fmt.Sprintf("%s[%d]", where, i))...)
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
			out = append(out, references(x[k], where+"."+k)...)
		}
	}
	return out
}

// intrinsicRefs returns the names an intrinsic function (a map of one
// key) refers to, those of its arguments included; ok is false when m is
// not one of the intrinsics that refer to names.
func intrinsicRefs(m map[string]any, where string) (out []reference, ok bool) {
	if len(m) != 1 {
		return nil, false
	}
	for fn, arg := range m {
		switch fn {
		case "Ref":
			return []reference{{"Ref", fmt.Sprint(arg), where}}, true
		case "Fn::GetAtt":
			if l, isList := arg.([]any); isList && len(l) == 2 {
				return []reference{{"GetAtt", fmt.Sprint(l[0]), where}}, true
			}
			return []reference{{"GetAtt", fmt.Sprint(arg), where}}, true
		case "Fn::Sub":
			s, local := arg, map[string]any{}
			if l, isList := arg.([]any); isList && len(l) == 2 {
				s = l[0]
				local, _ = l[1].(map[string]any)
				out = references(l[1], where+".Fn::Sub")
			}
			for _, name := range subVars(fmt.Sprint(s)) {
				if _, isLocal := local[name]; isLocal {
					continue
				}
				if res, _, isAttr := strings.Cut(name, "."); isAttr {
					out = append(out, reference{"GetAtt", res, where})
				} else {
					out = append(out, reference{"Ref", name, where})
				}
			}
			return out, true
		case "Fn::If":
			l, isList := arg.([]any)
			if !isList || len(l) != 3 {
				return []reference{{"Condition", fmt.Sprint(arg), where}}, true
			}
			out = append(out, reference{"Condition", fmt.Sprint(l[0]), where})
			return append(out, references(l[1:], where+".Fn::If")...), true
		}
	}
	return nil, false
}

// resolve returns the value a name of a Sub takes in the example: an
// example value, else the parameter's default.
func resolve(tpl map[string]any, name string, params map[string]string) (string, bool) {
	if v, ok := params[name]; ok {
		return v, true
	}
	if v, ok := example[name]; ok {
		return v, true
	}
	if def := cfn.Get(tpl, "Parameters", name, "Default"); def != nil {
		return fmt.Sprint(def), true
	}
	return "", false
}

// render evaluates an Fn::Sub of a plain string as CloudFormation would
// with the example's names, params overriding parameter defaults.
func render(t *testing.T, tpl map[string]any, sub any, params map[string]string) string {
	t.Helper()
	s, ok := cfn.Get(sub, "Fn::Sub").(string)
	if !ok {
		t.Fatalf("%v is not an !Sub of a string", sub)
	}
	return subVar.ReplaceAllStringFunc(s, func(m string) string {
		name := m[2 : len(m)-1]
		if strings.HasPrefix(name, "!") {
			return "${" + name[1:] + "}"
		}
		v, ok := resolve(tpl, name, params)
		if !ok {
			t.Errorf("no example value for ${%s}: add it to example", name)
		}
		return v
	})
}

// statements returns the policy statements of a policy resource's
// document (Properties.PolicyDocument).
func statements(res any) []map[string]any {
	var out []map[string]any
	l, _ := cfn.Get(res, "Properties", "PolicyDocument", "Statement").([]any)
	for _, st := range l {
		m, _ := st.(map[string]any)
		out = append(out, m)
	}
	return out
}

// arnOf returns the resource whose Arn attribute v is (!GetAtt X.Arn), or
// "" if v is anything else.
func arnOf(v any) string {
	l, _ := cfn.Get(v, "Fn::GetAtt").([]any)
	if len(l) != 2 || l[1] != "Arn" {
		return ""
	}
	return fmt.Sprint(l[0])
}

func TestTemplate(t *testing.T) {
	tpl := loadTemplate(t)
	res, _ := tpl["Resources"].(map[string]any)
	params, _ := tpl["Parameters"].(map[string]any)
	conds, _ := tpl["Conditions"].(map[string]any)

	t.Run("every reference resolves and every parameter and condition is used", func(t *testing.T) {
		var refs []reference
		for _, section := range []string{"Conditions", "Resources", "Outputs"} {
			refs = append(refs, references(tpl[section], section)...)
		}
		used := map[string]bool{}
		for _, r := range refs {
			used[r.name] = true
			_, isParam := params[r.name]
			_, isRes := res[r.name]
			_, isCond := conds[r.name]
			switch {
			case r.kind == "Ref" && !isParam && !isRes && !pseudoParameters[r.name]:
				t.Errorf("%s: Ref %s is no parameter, resource or pseudo parameter", r.where, r.name)
			case r.kind == "GetAtt" && !isRes:
				t.Errorf("%s: GetAtt of %s, which is no resource", r.where, r.name)
			case r.kind == "Condition" && !isCond:
				t.Errorf("%s: condition %s is not defined", r.where, r.name)
			}
		}
		for name, r := range res {
			for _, dep := range cfn.Strings(cfn.Get(r, "DependsOn")) {
				if _, ok := res[dep]; !ok {
					t.Errorf("Resources.%s: DependsOn %s, which is no resource", name, dep)
				}
			}
			if c := cfn.Get(r, "Condition"); c != nil {
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
	})

	t.Run("the stream is encrypted with the AWS managed key", func(t *testing.T) {
		p := cfn.Get(res, "Stream", "Properties")
		if got := cfn.Get(res, "Stream", "Type"); got != "AWS::Kinesis::Stream" {
			t.Fatalf("Stream is a %v", got)
		}
		if got, want := fmt.Sprint(cfn.Get(p, "StreamEncryption")), "map[EncryptionType:KMS KeyId:alias/aws/kinesis]"; got != want {
			t.Errorf("StreamEncryption = %s, want %s", got, want)
		}
		if got := fmt.Sprint(cfn.Get(p, "RetentionPeriodHours")); got != "map[Ref:RetentionHours]" {
			t.Errorf("RetentionPeriodHours = %s, want !Ref RetentionHours", got)
		}
		// Kinesis keeps records from 24 hours to 365 days.
		if lo, hi := cfn.Get(params, "RetentionHours", "MinValue"), cfn.Get(params, "RetentionHours", "MaxValue"); lo != 24 || hi != 8760 {
			t.Errorf("RetentionHours allows %v to %v, want 24 to 8760", lo, hi)
		}
		if got := fmt.Sprint(cfn.Get(p, "ShardCount")); got != "map[Fn::If:[Provisioned map[Ref:ShardCount] map[Ref:AWS::NoValue]]]" {
			t.Errorf("ShardCount = %s, want !If [Provisioned, !Ref ShardCount, !Ref AWS::NoValue]", got)
		}
	})

	t.Run("the tables are what the code expects", func(t *testing.T) {
		tests := []struct {
			resource, key, ttl string
		}{
			// The lease's expires_at is Unix milliseconds, not a TTL: a
			// TTL on it would be wrong, so there must be none.
			{"LeaseTable", kinesis.AttrShardID, ""},
			{"SharedStateTable", dynamostate.AttrKey, dynamostate.AttrTTL},
		}
		for _, tt := range tests {
			t.Run(tt.resource, func(t *testing.T) {
				p := cfn.Get(res, tt.resource, "Properties")
				if got := cfn.Get(res, tt.resource, "Type"); got != "AWS::DynamoDB::Table" {
					t.Fatalf("%s is a %v", tt.resource, got)
				}
				if got := cfn.Get(p, "BillingMode"); got != "PAY_PER_REQUEST" {
					t.Errorf("BillingMode = %v, want PAY_PER_REQUEST", got)
				}
				ks, _ := cfn.Get(p, "KeySchema").([]any)
				if len(ks) != 1 || cfn.Get(ks[0], "AttributeName") != tt.key || cfn.Get(ks[0], "KeyType") != "HASH" {
					t.Errorf("KeySchema = %v, want one HASH key %q", ks, tt.key)
				}
				ad, _ := cfn.Get(p, "AttributeDefinitions").([]any)
				if len(ad) != 1 || cfn.Get(ad[0], "AttributeName") != tt.key || cfn.Get(ad[0], "AttributeType") != "S" {
					t.Errorf("AttributeDefinitions = %v, want %q, a string", ad, tt.key)
				}
				if got := cfn.Get(p, "PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled"); got != true {
					t.Errorf("point-in-time recovery = %v, want true", got)
				}
				ttl := cfn.Get(p, "TimeToLiveSpecification")
				switch {
				case tt.ttl == "" && ttl != nil:
					t.Errorf("TimeToLiveSpecification = %v, want none", ttl)
				case tt.ttl != "" && (cfn.Get(ttl, "AttributeName") != tt.ttl || cfn.Get(ttl, "Enabled") != true):
					t.Errorf("TimeToLiveSpecification = %v, want %q enabled", ttl, tt.ttl)
				}
			})
		}
	})

	t.Run("CloudWatch Logs may only put records into the stream", func(t *testing.T) {
		role := cfn.Get(res, "SubscriptionRole", "Properties")
		trust, _ := cfn.Get(role, "AssumeRolePolicyDocument", "Statement").([]any)
		if len(trust) != 1 {
			t.Fatalf("trust policy has %d statements, want 1", len(trust))
		}
		st := trust[0]
		if cfn.Get(st, "Effect") != "Allow" || cfn.Get(st, "Action") != "sts:AssumeRole" ||
			fmt.Sprint(cfn.Get(st, "Principal")) != "map[Service:logs.amazonaws.com]" {
			t.Errorf("trust statement = %v, want logs.amazonaws.com allowed sts:AssumeRole", st)
		}
		// The confused-deputy conditions the CloudWatch Logs guide documents
		// for a subscription's role.
		if got, want := fmt.Sprint(cfn.Get(st, "Condition", "StringLike", "aws:SourceArn", "Fn::Sub")),
			"arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:*"; got != want {
			t.Errorf("aws:SourceArn condition = %s, want StringLike !Sub %s", got, want)
		}
		if got := fmt.Sprint(cfn.Get(st, "Condition", "StringEquals", "aws:SourceAccount")); got != "map[Ref:AWS::AccountId]" {
			t.Errorf("aws:SourceAccount condition = %s, want StringEquals !Ref AWS::AccountId", got)
		}
		if cfn.Get(role, "Policies") != nil || cfn.Get(role, "ManagedPolicyArns") != nil {
			t.Error("SubscriptionRole has policies of its own; its one policy is SubscriptionRolePolicy")
		}

		var granted []string
		for name, r := range res {
			switch cfn.Get(r, "Type") {
			case "AWS::IAM::RolePolicy", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy":
			default:
				continue
			}
			roles := cfn.Strings(cfn.Get(r, "Properties", "Roles"))
			if one := cfn.Get(r, "Properties", "RoleName"); one != nil {
				roles = append(roles, fmt.Sprint(one))
			}
			if !slices.Contains(roles, "map[Ref:SubscriptionRole]") {
				continue
			}
			for _, st := range statements(r) {
				for _, a := range cfn.Strings(st["Action"]) {
					granted = append(granted, fmt.Sprintf("%s: %s %s on %s", name, st["Effect"], a, arnOf(st["Resource"])))
				}
			}
		}
		if want := []string{"SubscriptionRolePolicy: Allow kinesis:PutRecord on Stream"}; !slices.Equal(granted, want) {
			t.Errorf("the subscription role may %q, want %q", granted, want)
		}
	})

	t.Run("the subscription filter feeds the stream once its role may", func(t *testing.T) {
		f := cfn.Get(res, "SubscriptionFilter")
		if !slices.Contains(cfn.Strings(cfn.Get(f, "DependsOn")), "SubscriptionRolePolicy") {
			t.Errorf("SubscriptionFilter.DependsOn = %v, want SubscriptionRolePolicy", cfn.Get(f, "DependsOn"))
		}
		p := cfn.Get(f, "Properties")
		for prop, want := range map[string]string{
			"DestinationArn": "map[Fn::GetAtt:[Stream Arn]]",
			"RoleArn":        "map[Fn::GetAtt:[SubscriptionRole Arn]]",
			"LogGroupName":   "map[Ref:LogGroupName]",
			"FilterPattern":  "map[Ref:FilterPattern]",
			"Distribution":   "map[Ref:Distribution]",
		} {
			if got := fmt.Sprint(cfn.Get(p, prop)); got != want {
				t.Errorf("SubscriptionFilter.%s = %s, want %s", prop, got, want)
			}
		}
		if def := cfn.Get(params, "FilterPattern", "Default"); def != "" {
			t.Errorf("FilterPattern defaults to %q, want empty (every record)", def)
		}
		// A fixed name would let a second stack on the same log group
		// silently take over the first one's filter.
		if name := fmt.Sprint(cfn.Get(p, "FilterName", "Fn::Sub")); !strings.Contains(name, "${AWS::StackName}") {
			t.Errorf("FilterName = %v, want one per stack (!Sub with ${AWS::StackName})", cfn.Get(p, "FilterName"))
		}
	})

	t.Run("the instance policy grants exactly what the code calls", func(t *testing.T) {
		pol := cfn.Get(res, "InstancePolicy")
		if got := cfn.Get(pol, "Type"); got != "AWS::IAM::ManagedPolicy" {
			t.Fatalf("InstancePolicy is a %v", got)
		}
		if got := cfn.Get(pol, "Properties", "PolicyDocument", "Version"); got != "2012-10-17" {
			t.Errorf("Version = %v, want 2012-10-17", got)
		}
		got := map[string][]string{}
		for _, st := range statements(pol) {
			for k := range st {
				if !slices.Contains([]string{"Sid", "Effect", "Action", "Resource"}, k) {
					t.Errorf("statement %v: %s has no place here", st["Sid"], k)
				}
			}
			if st["Effect"] != "Allow" {
				t.Errorf("statement %v: Effect = %v, want Allow", st["Sid"], st["Effect"])
			}
			on := arnOf(st["Resource"])
			if on == "" {
				t.Errorf("statement %v: Resource = %v, want one !GetAtt X.Arn of this stack", st["Sid"], st["Resource"])
				continue
			}
			for _, a := range cfn.Strings(st["Action"]) {
				if strings.Contains(a, "*") {
					t.Errorf("statement %v: wildcard action %q", st["Sid"], a)
				}
				got[on] = append(got[on], a)
			}
		}
		for on := range got {
			sort.Strings(got[on])
		}
		if !reflect.DeepEqual(got, instanceActions) {
			t.Errorf("instance policy grants %v, want %v", got, instanceActions)
		}
	})

	t.Run("the policy is attached only to the role given", func(t *testing.T) {
		if got := fmt.Sprint(cfn.Get(res, "InstancePolicy", "Properties", "Roles")); got != "map[Fn::If:[AttachToRole [map[Ref:InstanceRoleName]] map[Ref:AWS::NoValue]]]" {
			t.Errorf("InstancePolicy.Roles = %s, want !If [AttachToRole, [!Ref InstanceRoleName], !Ref AWS::NoValue]", got)
		}
		if got := fmt.Sprint(conds["AttachToRole"]); got != "map[Fn::Not:[map[Fn::Equals:[map[Ref:InstanceRoleName] ]]]]" {
			t.Errorf("condition AttachToRole = %s, want !Not [!Equals [!Ref InstanceRoleName, \"\"]]", got)
		}
	})

	t.Run("the alarms watch this stream", func(t *testing.T) {
		for _, name := range []string{"FallingBehindAlarm", "QuietStreamAlarm"} {
			p := cfn.Get(res, name, "Properties")
			if cfn.Get(p, "Namespace") != "AWS/Kinesis" || fmt.Sprint(cfn.Get(p, "Dimensions")) != "[map[Name:StreamName Value:map[Ref:Stream]]]" {
				t.Errorf("%s watches %v %v, want AWS/Kinesis of StreamName !Ref Stream", name, cfn.Get(p, "Namespace"), cfn.Get(p, "Dimensions"))
			}
			// No data means no instance reads, or no record arrives.
			if cfn.Get(p, "TreatMissingData") != "breaching" {
				t.Errorf("%s: TreatMissingData = %v, want breaching", name, cfn.Get(p, "TreatMissingData"))
			}
		}
	})

	t.Run("the configuration output loads", func(t *testing.T) {
		out := cfn.Get(tpl, "Outputs", "TrailwatchConfig", "Value")
		cfg := loadConfig(t, render(t, tpl, out, nil))
		k, ss := cfg.Source.Kinesis, cfg.SharedState
		if k == nil || ss == nil {
			t.Fatalf("source.kinesis = %v, shared_state = %v, want both", k, ss)
		}
		want := kinesis.Config{
			Stream: example["Stream.Arn"], LeaseTable: example["LeaseTable"], Region: example["AWS::Region"],
			Start: "latest", LeaseDuration: 30 * time.Second,
		}
		want.SetDefaults()
		if *k != want {
			t.Errorf("source.kinesis = %+v, want %+v", *k, want)
		}
		if ss.DynamoDBTable != example["SharedStateTable"] {
			t.Errorf("shared_state.dynamodb_table = %q, want %q", ss.DynamoDBTable, example["SharedStateTable"])
		}
	})

	t.Run("every Start and LeaseDuration CloudFormation accepts loads", func(t *testing.T) {
		out := cfn.Get(tpl, "Outputs", "TrailwatchConfig", "Value")
		for _, start := range cfn.Strings(cfn.Get(params, "Start", "AllowedValues")) {
			loadConfig(t, render(t, tpl, out, map[string]string{"Start": start}))
		}
		pattern := regexp.MustCompile("^(?:" + fmt.Sprint(cfn.Get(params, "LeaseDuration", "AllowedPattern")) + ")$")
		if def := fmt.Sprint(cfn.Get(params, "LeaseDuration", "Default")); !pattern.MatchString(def) {
			t.Errorf("LeaseDuration's default %q does not match its AllowedPattern", def)
		}
		for _, d := range []string{"3s", "9s", "10s", "30s", "120s", "9999s", "1m", "5m", "99m", "2s", "0s", "1s", "30", "1h", "100m", "-5s", "03s"} {
			if !pattern.MatchString(d) {
				continue // CloudFormation refuses it
			}
			cfg := loadConfig(t, render(t, tpl, out, map[string]string{"LeaseDuration": d}))
			if want, _ := time.ParseDuration(d); cfg.Source.Kinesis.LeaseDuration != want {
				t.Errorf("LeaseDuration=%s loads as %s", d, cfg.Source.Kinesis.LeaseDuration)
			}
		}
		for _, bad := range []string{"2s", "0s", "30", "-5s"} {
			if pattern.MatchString(bad) {
				t.Errorf("LeaseDuration accepts %q, which trailwatch refuses", bad)
			}
		}
	})

	t.Run("cfn-lint", func(t *testing.T) { cfn.Lint(t, "template.yaml") })
}

// loadConfig writes a configuration to a file and loads it as `trailwatch
// run` does.
func loadConfig(t *testing.T, text string) *config.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("the configuration does not load:\n%v\n---\n%s", err, text)
	}
	return cfg
}

// ------------------------------------------------------------ the code

// transactionActions maps the item kinds of a TransactWriteItems request
// to the IAM actions that authorise them ("Using IAM with DynamoDB
// transactions", Amazon DynamoDB Developer Guide).
var transactionActions = map[string]string{
	"Put": "dynamodb:PutItem", "Update": "dynamodb:UpdateItem", "Delete": "dynamodb:DeleteItem",
	"ConditionCheck": "dynamodb:ConditionCheckItem",
}

// actionsOf returns the IAM actions of the methods of the API interfaces,
// each named after its operation; TransactWriteItems is replaced by the
// actions of the item kinds the package's source writes in transactions.
func actionsOf(t *testing.T, service, pkgDir string, apis ...reflect.Type) []string {
	t.Helper()
	set := map[string]bool{}
	for _, api := range apis {
		for i := range api.NumMethod() {
			op := api.Method(i).Name
			if op != "TransactWriteItems" {
				set[service+":"+op] = true
				continue
			}
			for _, kind := range transactionItemKinds(t, pkgDir) {
				set[transactionActions[kind]] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// transactionItemKinds returns the fields (Put, Delete, ...) set in the
// types.TransactWriteItem literals of the non-test Go files of dir.
func transactionItemKinds(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	isItem := func(e ast.Expr) bool {
		sel, ok := e.(*ast.SelectorExpr)
		return ok && sel.Sel.Name == "TransactWriteItem"
	}
	kinds := map[string]bool{}
	addKeys := func(lit *ast.CompositeLit) {
		for _, el := range lit.Elts {
			kv, ok := el.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			key, _ := kv.Key.(*ast.Ident)
			if key == nil {
				continue
			}
			if _, known := transactionActions[key.Name]; !known {
				t.Errorf("%s: TransactWriteItem field %s: add its IAM action to transactionActions", dir, key.Name)
			}
			kinds[key.Name] = true
		}
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			switch typ := lit.Type.(type) {
			case *ast.SelectorExpr:
				if isItem(typ) {
					addKeys(lit)
				}
			case *ast.ArrayType:
				// []types.TransactWriteItem{{Put: ...}}: the elements'
				// type is elided.
				if isItem(typ.Elt) {
					for _, el := range lit.Elts {
						if inner, ok := el.(*ast.CompositeLit); ok && inner.Type == nil {
							addKeys(inner)
						}
					}
				}
			}
			return true
		})
	}
	if len(kinds) == 0 {
		t.Errorf("%s: no TransactWriteItem literal found, yet the API has TransactWriteItems", dir)
	}
	out := make([]string, 0, len(kinds))
	for k := range kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestInstanceActionsAreWhatTheCodeCalls(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	code := map[string][]string{
		// engine/kinesis's Source reads the stream through API, and its
		// leases go through DynamoDB.
		"Stream":     actionsOf(t, "kinesis", "", reflect.TypeFor[kinesis.API]()),
		"LeaseTable": actionsOf(t, "dynamodb", "", reflect.TypeFor[kinesis.DynamoDB]()),
		// `run` and `silence` use the delivery Store and the
		// LifecycleStore on the shared table.
		"SharedStateTable": actionsOf(t, "dynamodb", filepath.Join(root, "engine", "dynamostate"),
			reflect.TypeFor[dynamostate.API](), reflect.TypeFor[dynamostate.LifecycleAPI]()),
	}
	if !reflect.DeepEqual(code, instanceActions) {
		t.Errorf("the code calls %v, instanceActions (and so the policy) grants %v", code, instanceActions)
	}
}

// -------------------------------------------------------------- README

func readme(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// codeBlocks returns the README's fenced blocks of one language.
func codeBlocks(text, lang string) []string {
	re := regexp.MustCompile("(?ms)^```" + regexp.QuoteMeta(lang) + "\n(.*?)^```")
	var out []string
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	return out
}

func TestREADME(t *testing.T) {
	text := readme(t)
	tpl := loadTemplate(t)
	params, _ := tpl["Parameters"].(map[string]any)

	t.Run("it names every file", func(t *testing.T) {
		err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || path == "README.md" {
				return err
			}
			if !strings.Contains(text, "`"+filepath.ToSlash(path)+"`") {
				t.Errorf("README.md does not mention `%s`", path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("it names every resource, parameter and output", func(t *testing.T) {
		for _, section := range []string{"Resources", "Parameters", "Outputs"} {
			m, _ := tpl[section].(map[string]any)
			for name := range m {
				if !strings.Contains(text, "`"+name+"`") {
					t.Errorf("README.md does not mention %s `%s`", strings.ToLower(strings.TrimSuffix(section, "s")), name)
				}
			}
		}
	})

	t.Run("its configuration is the stack's output plus the rest, and loads", func(t *testing.T) {
		var cfgText string
		for _, b := range codeBlocks(text, "yaml") {
			if strings.Contains(b, "source:") {
				cfgText = b
			}
		}
		if cfgText == "" {
			t.Fatal("README.md shows no configuration (a yaml block with source:)")
		}
		// The output verbatim; the rest of the configuration follows it.
		snippet := render(t, tpl, cfn.Get(tpl, "Outputs", "TrailwatchConfig", "Value"), nil)
		if !strings.Contains(cfgText, snippet) {
			t.Errorf("the README's configuration does not hold the TrailwatchConfig output as it is:\n%s", snippet)
		}
		env := map[string]string{"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/XXXXXXXX"}
		cfg, err := config.Parse("/etc/trailwatch/config.yaml", []byte(cfgText),
			func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			t.Fatalf("the README's configuration does not load:\n%v", err)
		}
		if cfg.Source.Kinesis == nil || cfg.SharedState == nil || len(cfg.Notifiers) == 0 || len(cfg.Routes) == 0 {
			t.Error("the README's configuration should show source.kinesis, shared_state, notifiers and routes")
		}
		if cfg.StateDir == "" {
			t.Error("the README's configuration has no state_dir: each instance needs a persistent one")
		}
	})

	t.Run("its commands pass parameters the template has, with values it accepts", func(t *testing.T) {
		override := regexp.MustCompile(`^([A-Z][a-z][A-Za-z0-9]*)=(\S+)$`)
		seen := 0
		for _, b := range codeBlocks(text, "sh") {
			if !strings.Contains(b, "aws cloudformation deploy") {
				continue
			}
			if !strings.Contains(b, "--capabilities CAPABILITY_IAM") {
				t.Error("the deploy command lacks --capabilities CAPABILITY_IAM")
			}
			for _, word := range strings.Fields(b) {
				m := override.FindStringSubmatch(word)
				if m == nil {
					continue
				}
				seen++
				p, ok := params[m[1]]
				if !ok {
					t.Errorf("the README passes %s, which is no parameter of template.yaml", m[1])
					continue
				}
				if err := accepts(p, m[2]); err != nil {
					t.Errorf("the README passes %s=%s: %v", m[1], m[2], err)
				}
			}
		}
		if seen == 0 {
			t.Error("README.md shows no aws cloudformation deploy with --parameter-overrides")
		}
		// CAPABILITY_IAM covers IAM resources whose names CloudFormation
		// generates; a name of our own would need CAPABILITY_NAMED_IAM.
		res, _ := tpl["Resources"].(map[string]any)
		for name, r := range res {
			for _, prop := range []string{"RoleName", "ManagedPolicyName", "UserName", "GroupName"} {
				if cfn.Get(r, "Type") != "AWS::IAM::RolePolicy" && cfn.Get(r, "Properties", prop) != nil {
					t.Errorf("%s names itself (%s): the README's CAPABILITY_IAM is not enough", name, prop)
				}
			}
		}
	})

	t.Run("its links lead to files and headings that exist", func(t *testing.T) {
		link := regexp.MustCompile(`\]\(([^)\s#]+)(#[^)\s]*)?\)`)
		for _, m := range link.FindAllStringSubmatch(text, -1) {
			target, anchor := m[1], strings.TrimPrefix(m[2], "#")
			if strings.Contains(target, "://") {
				continue
			}
			data, err := os.ReadFile(target)
			if err != nil {
				t.Errorf("link to %s: %v", target, err)
				continue
			}
			if anchor != "" && !slices.Contains(headingAnchors(string(data)), anchor) {
				t.Errorf("link to %s#%s: no such heading", target, anchor)
			}
		}
	})
}

// accepts reports why CloudFormation would refuse v for parameter p.
func accepts(p any, v string) error {
	if allowed := cfn.Strings(cfn.Get(p, "AllowedValues")); allowed != nil && !slices.Contains(allowed, v) {
		return fmt.Errorf("not one of %q", allowed)
	}
	if pat, ok := cfn.Get(p, "AllowedPattern").(string); ok && !regexp.MustCompile("^(?:"+pat+")$").MatchString(v) {
		return fmt.Errorf("does not match %s", pat)
	}
	if cfn.Get(p, "Type") == "Number" {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("not a number")
		}
		if lo, ok := cfn.Get(p, "MinValue").(int); ok && n < float64(lo) {
			return fmt.Errorf("below %d", lo)
		}
		if hi, ok := cfn.Get(p, "MaxValue").(int); ok && n > float64(hi) {
			return fmt.Errorf("above %d", hi)
		}
	}
	return nil
}

// headingAnchors returns the anchors GitHub gives a Markdown file's
// headings: lower case, punctuation dropped, spaces as hyphens.
func headingAnchors(md string) []string {
	var out []string
	inCode := false
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9'):
				b.WriteRune(r)
			}
		}
		out = append(out, b.String())
	}
	return out
}

func loadTemplate(t *testing.T) map[string]any {
	t.Helper()
	m, err := cfn.ReadFile("template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return m
}
