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
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/kinesis"
	"github.com/trailwatch/trailwatch/internal/cfn"
	"github.com/trailwatch/trailwatch/internal/config"
	"github.com/trailwatch/trailwatch/internal/mdcheck"
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

// render evaluates an Fn::Sub of a plain string as CloudFormation would
// with the example's names, params overriding parameter defaults.
func render(t *testing.T, tpl map[string]any, sub any, params map[string]string) string {
	t.Helper()
	return cfn.MustRender(t, tpl, sub, example, params)
}

func TestTemplate(t *testing.T) {
	tpl := loadTemplate(t)
	res, _ := tpl["Resources"].(map[string]any)
	params, _ := tpl["Parameters"].(map[string]any)
	conds, _ := tpl["Conditions"].(map[string]any)

	t.Run("every reference resolves and every parameter and condition is used", func(t *testing.T) {
		cfn.CheckReferences(t, tpl)
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
			for _, st := range cfn.Statements(r) {
				for _, a := range cfn.Strings(st["Action"]) {
					granted = append(granted, fmt.Sprintf("%s: %s %s on %s", name, st["Effect"], a, cfn.ArnOf(st["Resource"])))
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
		for _, st := range cfn.Statements(pol) {
			for k := range st {
				if !slices.Contains([]string{"Sid", "Effect", "Action", "Resource"}, k) {
					t.Errorf("statement %v: %s has no place here", st["Sid"], k)
				}
			}
			if st["Effect"] != "Allow" {
				t.Errorf("statement %v: Effect = %v, want Allow", st["Sid"], st["Effect"])
			}
			on := cfn.ArnOf(st["Resource"])
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
		k, ss := config.SourceAs[kinesis.Config](cfg.Source), cfg.SharedState
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
			if want, _ := time.ParseDuration(d); config.SourceAs[kinesis.Config](cfg.Source).LeaseDuration != want {
				t.Errorf("LeaseDuration=%s loads as %s", d, config.SourceAs[kinesis.Config](cfg.Source).LeaseDuration)
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

func TestInstanceActionsAreWhatTheCodeCalls(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	code := map[string][]string{
		// engine/kinesis's Source reads the stream through API, and its
		// leases go through DynamoDB.
		"Stream":     cfn.ActionsOf(t, "kinesis", "", reflect.TypeFor[kinesis.API]()),
		"LeaseTable": cfn.ActionsOf(t, "dynamodb", "", reflect.TypeFor[kinesis.DynamoDB]()),
		// `run` and `silence` use the delivery Store and the
		// LifecycleStore on the shared table.
		"SharedStateTable": cfn.ActionsOf(t, "dynamodb", filepath.Join(root, "engine", "dynamostate"),
			reflect.TypeFor[dynamostate.API](), reflect.TypeFor[dynamostate.LifecycleAPI]()),
	}
	if !reflect.DeepEqual(code, instanceActions) {
		t.Errorf("the code calls %v, instanceActions (and so the policy) grants %v", code, instanceActions)
	}
}

// -------------------------------------------------------------- README

func TestREADME(t *testing.T) {
	text := cfn.ReadREADME(t)
	tpl := loadTemplate(t)

	t.Run("it names every file", func(t *testing.T) { mdcheck.CheckNamesEveryFile(t, "README.md", text) })

	t.Run("it names every resource, parameter and output", func(t *testing.T) { cfn.CheckNamed(t, text, tpl) })

	t.Run("its configuration is the stack's output plus the rest, and loads", func(t *testing.T) {
		cfgText := cfn.ConfigBlock(t, text)
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
		if config.SourceAs[kinesis.Config](cfg.Source) == nil || cfg.SharedState == nil || len(cfg.Notifiers) == 0 || len(cfg.Routes) == 0 {
			t.Error("the README's configuration should show source.kinesis, shared_state, notifiers and routes")
		}
		if cfg.StateDir == "" {
			t.Error("the README's configuration has no state_dir: each instance needs a persistent one")
		}
	})

	t.Run("its commands pass parameters the template has, with values it accepts", func(t *testing.T) {
		cfn.CheckDeployCommands(t, text, tpl)
	})

	t.Run("its links lead to files and headings that exist", func(t *testing.T) { mdcheck.CheckLinks(t, text) })
}

func loadTemplate(t *testing.T) map[string]any { return cfn.Load(t, "template.yaml") }
