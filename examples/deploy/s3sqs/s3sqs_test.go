// Package s3sqs_test checks the S3 → SQS deployment example so it cannot go
// stale: every reference in the CloudFormation template resolves; the
// queues and the table are what engine/s3sqs and engine/dynamostate
// expect; the instances' policy grants exactly the calls the code makes,
// each on its own resource; only the bucket may send to the queue; the
// bucket notification output is one S3 accepts and delivers through (in
// moto); the configuration the stack outputs, and the one the README
// shows, load with trailwatch's config loader; and the README names every
// file, resource, parameter and output and links only to what exists.
package s3sqs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"maps"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/trailwatch/trailwatch/engine/awslogs"
	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/s3sqs"
	"github.com/trailwatch/trailwatch/engine/source"
	"github.com/trailwatch/trailwatch/internal/cfn"
	"github.com/trailwatch/trailwatch/internal/config"
	"github.com/trailwatch/trailwatch/internal/mdcheck"
	"github.com/trailwatch/trailwatch/internal/s3test"
)

// instanceActions is what InstancePolicy must grant, by what it is granted
// on. TestInstanceActionsAreWhatTheCodeCalls derives the same from the code.
var instanceActions = map[string][]string{
	"Queue":            {"sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:ReceiveMessage"},
	"DeadLetterQueue":  {"sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"},
	"log files":        {"s3:GetObject"},
	"KmsKeyArn":        {"kms:Decrypt"},
	"SharedStateTable": {"dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
}

// example gives the stack's generated names, its Region and its required
// parameter the values the README's configuration uses; parameters not
// named here take their defaults.
var example = map[string]string{
	"Queue":            "https://sqs.us-east-1.amazonaws.com/111122223333/trailwatch-s3sqs-Queue-1A2B3C4D5E6F",
	"Queue.Arn":        "arn:aws:sqs:us-east-1:111122223333:trailwatch-s3sqs-Queue-1A2B3C4D5E6F",
	"SharedStateTable": "trailwatch-s3sqs-SharedStateTable-1A2B3C4D5E6F",
	"TrailBucketName":  "org-trail-111122223333",
	"AWS::Region":      "us-east-1",
}

// render evaluates an Fn::Sub of a plain string as CloudFormation would
// with the example's names, params overriding them and the defaults.
func render(t *testing.T, tpl map[string]any, sub any, params map[string]string) string {
	t.Helper()
	return cfn.MustRender(t, tpl, sub, example, params)
}

// parseConfig reads a configuration as trailwatch's loader does, with
// the environment env.
func parseConfig(t *testing.T, text string, env map[string]string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("/etc/trailwatch/config.yaml", []byte(text), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatalf("the configuration does not load:\n%v\n---\n%s", err, text)
	}
	return cfg
}

func TestTemplate(t *testing.T) {
	tpl := cfn.Load(t, "template.yaml")
	res, _ := tpl["Resources"].(map[string]any)
	params, _ := tpl["Parameters"].(map[string]any)

	t.Run("every reference resolves and every parameter and condition is used", func(t *testing.T) {
		cfn.CheckReferences(t, tpl)
	})

	t.Run("the queue sends what it cannot deliver to the dead-letter queue", func(t *testing.T) {
		q, dlq := cfn.Get(res, "Queue", "Properties"), cfn.Get(res, "DeadLetterQueue", "Properties")
		for name, p := range map[string]any{"Queue": q, "DeadLetterQueue": dlq} {
			if cfn.Get(res, name, "Type") != "AWS::SQS::Queue" {
				t.Fatalf("%s is a %v", name, cfn.Get(res, name, "Type"))
			}
			// S3 cannot send to a queue encrypted with the AWS managed KMS key.
			if cfn.Get(p, "SqsManagedSseEnabled") != true || cfn.Get(p, "KmsMasterKeyId") != nil {
				t.Errorf("%s: want SSE-SQS (SqsManagedSseEnabled) and no KMS key", name)
			}
			if cfn.Get(p, "MessageRetentionPeriod") != 1209600 {
				t.Errorf("%s keeps messages %v s, want the 14 days SQS allows", name, cfn.Get(p, "MessageRetentionPeriod"))
			}
		}
		if got := fmt.Sprint(cfn.Get(q, "RedrivePolicy")); got != "map[deadLetterTargetArn:map[Fn::GetAtt:[DeadLetterQueue Arn]] maxReceiveCount:map[Ref:MaxReceiveCount]]" {
			t.Errorf("RedrivePolicy = %s", got)
		}
		if got := fmt.Sprint(cfn.Get(q, "VisibilityTimeout")); got != "map[Ref:VisibilityTimeout]" {
			t.Errorf("VisibilityTimeout = %s, want !Ref VisibilityTimeout", got)
		}
		// What CloudFormation accepts for the parameter, the source accepts.
		p := cfn.Get(params, "VisibilityTimeout")
		for _, secs := range []int{0, 2, 3, 300, 43200, 43201} {
			c := s3sqs.Config{Queue: example["Queue"], VisibilityTimeout: time.Duration(secs) * time.Second}
			cfnErr, cfgErr := cfn.Accepts(p, strconv.Itoa(secs)), source.Prepare(&c)
			if secs == 0 {
				continue // the config's default, never CloudFormation's value
			}
			if (cfnErr == nil) != (cfgErr == nil) {
				t.Errorf("VisibilityTimeout=%d: CloudFormation %v, source.s3sqs %v", secs, cfnErr, cfgErr)
			}
		}
	})

	t.Run("only the bucket may send to the queue", func(t *testing.T) {
		pol := cfn.Get(res, "QueuePolicy", "Properties")
		if got := fmt.Sprint(cfn.Get(pol, "Queues")); got != "[map[Ref:Queue]]" {
			t.Errorf("QueuePolicy.Queues = %s", got)
		}
		sts := cfn.Statements(res["QueuePolicy"])
		if len(sts) != 1 {
			t.Fatalf("queue policy has %d statements, want 1", len(sts))
		}
		st := sts[0]
		if st["Effect"] != "Allow" || st["Action"] != "sqs:SendMessage" || cfn.ArnOf(st["Resource"]) != "Queue" ||
			fmt.Sprint(st["Principal"]) != "map[Service:s3.amazonaws.com]" {
			t.Errorf("statement = %v, want s3.amazonaws.com allowed sqs:SendMessage on the queue", st)
		}
		if got := fmt.Sprint(cfn.Get(st, "Condition", "ArnEquals", "aws:SourceArn", "Fn::Sub")); got != "arn:${AWS::Partition}:s3:::${TrailBucketName}" {
			t.Errorf("aws:SourceArn = %s, want the bucket", got)
		}
		if got := fmt.Sprint(cfn.Get(st, "Condition", "StringEquals", "aws:SourceAccount")); got != "map[Ref:AWS::AccountId]" {
			t.Errorf("aws:SourceAccount = %s, want this account", got)
		}
	})

	t.Run("the shared-state table is what the code expects", func(t *testing.T) {
		p := cfn.Get(res, "SharedStateTable", "Properties")
		ks, _ := cfn.Get(p, "KeySchema").([]any)
		if len(ks) != 1 || cfn.Get(ks[0], "AttributeName") != dynamostate.AttrKey || cfn.Get(ks[0], "KeyType") != "HASH" {
			t.Errorf("KeySchema = %v, want one HASH key %q", ks, dynamostate.AttrKey)
		}
		ttl := cfn.Get(p, "TimeToLiveSpecification")
		if cfn.Get(ttl, "AttributeName") != dynamostate.AttrTTL || cfn.Get(ttl, "Enabled") != true {
			t.Errorf("TimeToLiveSpecification = %v, want %q enabled", ttl, dynamostate.AttrTTL)
		}
		if cfn.Get(p, "BillingMode") != "PAY_PER_REQUEST" || cfn.Get(p, "PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled") != true {
			t.Error("want on-demand billing and point-in-time recovery")
		}
	})

	t.Run("the instance policy grants exactly what the code calls", func(t *testing.T) {
		pol := cfn.Get(res, "InstancePolicy")
		if got := cfn.Get(pol, "Type"); got != "AWS::IAM::ManagedPolicy" {
			t.Fatalf("InstancePolicy is a %v", got)
		}
		got := map[string][]string{}
		for _, st := range cfn.Statements(pol) {
			if st["Effect"] != "Allow" {
				t.Errorf("statement %v: Effect = %v, want Allow", st["Sid"], st["Effect"])
			}
			on := cfn.ArnOf(st["Resource"])
			switch {
			case on != "":
			case fmt.Sprint(cfn.Get(st["Resource"], "Fn::Sub")) == "arn:${AWS::Partition}:s3:::${TrailBucketName}/${LogPrefix}*":
				on = "log files"
			case fmt.Sprint(st["Resource"]) == "map[Ref:KmsKeyArn]":
				on = "KmsKeyArn"
			default:
				t.Errorf("statement %v: Resource = %v, want a resource of this stack, the log files or the trail's key", st["Sid"], st["Resource"])
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
		// kms:Decrypt only when the trail encrypts with a key.
		l, _ := cfn.Get(pol, "Properties", "PolicyDocument", "Statement").([]any)
		for _, st := range l {
			if br, ok := cfn.Get(st, "Fn::If").([]any); ok && (br[0] != "Encrypted" || fmt.Sprint(br[2]) != "map[Ref:AWS::NoValue]") {
				t.Errorf("conditional statement %v, want [Encrypted, statement, AWS::NoValue]", br)
			}
		}
		if got := fmt.Sprint(cfn.Get(pol, "Properties", "Roles")); got != "map[Fn::If:[AttachToRole [map[Ref:InstanceRoleName]] map[Ref:AWS::NoValue]]]" {
			t.Errorf("InstancePolicy.Roles = %s", got)
		}
	})

	t.Run("the alarms watch these queues", func(t *testing.T) {
		for name, queue := range map[string]string{"DeadLettersAlarm": "DeadLetterQueue", "FallingBehindAlarm": "Queue", "QuietQueueAlarm": "Queue"} {
			p := cfn.Get(res, name, "Properties")
			if cfn.Get(p, "Namespace") != "AWS/SQS" || fmt.Sprint(cfn.Get(p, "Dimensions")) != fmt.Sprintf("[map[Name:QueueName Value:map[Fn::GetAtt:[%s QueueName]]]]", queue) {
				t.Errorf("%s watches %v %v, want AWS/SQS of %s", name, cfn.Get(p, "Namespace"), cfn.Get(p, "Dimensions"), queue)
			}
		}
	})

	t.Run("the configuration output loads", func(t *testing.T) {
		out := cfn.Get(tpl, "Outputs", "TrailwatchConfig", "Value")
		for _, secs := range []string{"3", "300", "43200"} {
			cfg := parseConfig(t, render(t, tpl, out, map[string]string{"VisibilityTimeout": secs}), nil)
			got, ss := config.SourceAs[s3sqs.Config](cfg.Source), cfg.SharedState
			if got == nil || ss == nil {
				t.Fatalf("source.s3sqs = %v, shared_state = %v, want both", got, ss)
			}
			d, _ := time.ParseDuration(secs + "s")
			want := s3sqs.Config{Queue: example["Queue"], Region: example["AWS::Region"], VisibilityTimeout: d}
			want.SetDefaults()
			if *got != want {
				t.Errorf("source.s3sqs = %+v, want %+v", *got, want)
			}
			if ss.DynamoDBTable != example["SharedStateTable"] {
				t.Errorf("shared_state.dynamodb_table = %q", ss.DynamoDBTable)
			}
		}
	})

	t.Run("cfn-lint", func(t *testing.T) { cfn.Lint(t, "template.yaml") })
}

// TestBucketNotificationOutput applies the BucketNotification output to a
// bucket in moto (with a moto queue's ARN) and writes objects: S3 accepts
// it, notifies the log files under LogPrefix and nothing outside it, and
// trailwatch reads each notification to the object written.
func TestBucketNotificationOutput(t *testing.T) {
	tpl := cfn.Load(t, "template.yaml")
	rig := s3test.Start(t)
	rig.Bucket("org-trail-111122223333")
	q := rig.CreateQueue("events", s3test.QueueOptions{})
	text := render(t, tpl, cfn.Get(tpl, "Outputs", "BucketNotification", "Value"), map[string]string{"Queue.Arn": q.ARN})
	var nc s3types.NotificationConfiguration
	if err := json.Unmarshal([]byte(text), &nc); err != nil {
		t.Fatalf("BucketNotification is not a notification configuration: %v\n%s", err, text)
	}
	if _, err := rig.S3.PutBucketNotificationConfiguration(context.Background(), &s3.PutBucketNotificationConfigurationInput{
		Bucket: aws.String("org-trail-111122223333"), NotificationConfiguration: &nc,
	}); err != nil {
		t.Fatalf("S3 refuses the BucketNotification output: %v", err)
	}
	logKey := "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/111122223333_CloudTrail_us-east-1_20240501T0805Z_a.json.gz"
	for _, k := range []string{"elsewhere/" + logKey, "AWSLogs/111122223333/CloudTrail/us-east-1/README.txt", logKey} {
		rig.Put("org-trail-111122223333", k, s3test.Gzip([]byte(`{"Records":[]}`)))
	}
	var got []string
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 1 && time.Now().Before(deadline) {
		for _, m := range rig.Receive(q, time.Minute) {
			n, err := s3sqs.ParseMessage(aws.ToString(m.Body))
			if err != nil {
				t.Fatalf("trailwatch cannot read S3's message: %v", err)
			}
			for _, o := range n.Objects {
				got = append(got, o.Key)
			}
		}
	}
	if !slices.Equal(got, []string{logKey}) || awslogs.Classify(logKey) != awslogs.Log {
		t.Errorf("notified objects %q, want the log file only", got)
	}
}

// TestInstanceActionsAreWhatTheCodeCalls derives instanceActions from the
// code: the SQS calls engine/s3sqs declares (on the queue, except
// SendMessage, which moves a notification to the dead-letter queue), the
// S3 calls it makes through engine/s3files, and the shared state's.
func TestInstanceActionsAreWhatTheCodeCalls(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	sqsActions := cfn.ActionsOf(t, "sqs", "", reflect.TypeFor[s3sqs.SQS]())
	onDLQ := []string{"sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"}
	code := map[string][]string{
		"Queue":           slices.DeleteFunc(slices.Clone(sqsActions), func(a string) bool { return a == "sqs:SendMessage" }),
		"DeadLetterQueue": onDLQ,
		"log files":       s3Actions(t, filepath.Join(root, "engine", "s3sqs")),
		"KmsKeyArn":       {"kms:Decrypt"},
		"SharedStateTable": cfn.ActionsOf(t, "dynamodb", filepath.Join(root, "engine", "dynamostate"),
			reflect.TypeFor[dynamostate.API](), reflect.TypeFor[dynamostate.LifecycleAPI]()),
	}
	for _, a := range onDLQ {
		if !slices.Contains(sqsActions, a) {
			t.Errorf("%s is granted on the dead-letter queue but engine/s3sqs's SQS interface has no such call", a)
		}
	}
	if !reflect.DeepEqual(code, instanceActions) {
		t.Errorf("the code calls %v, instanceActions (and so the policy) grants %v", code, instanceActions)
	}
}

// s3Actions returns the S3 actions of the engine/s3files functions the
// package in dir calls: Open reads an object (s3:GetObject); List and
// Walk would list the bucket (s3:ListBucket).
func s3Actions(t *testing.T, dir string) []string {
	t.Helper()
	byFunc := map[string]string{"Open": "s3:GetObject", "List": "s3:ListBucket", "Walk": "s3:ListBucket"}
	set := map[string]bool{}
	cfn.InspectPackage(t, dir, func(n ast.Node) bool {
		if call, ok := n.(*ast.CallExpr); ok {
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
				if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "s3files" && byFunc[sel.Sel.Name] != "" {
					set[byFunc[sel.Sel.Name]] = true
				}
			}
		}
		return true
	})
	return slices.Sorted(maps.Keys(set))
}

func TestREADME(t *testing.T) {
	text := cfn.ReadREADME(t)
	tpl := cfn.Load(t, "template.yaml")

	t.Run("it names every file", func(t *testing.T) { mdcheck.CheckNamesEveryFile(t, "README.md", text) })

	t.Run("it names every resource, parameter and output", func(t *testing.T) { cfn.CheckNamed(t, text, tpl) })

	t.Run("its configuration is the stack's output plus the rest, and loads", func(t *testing.T) {
		cfgText := cfn.ConfigBlock(t, text)
		// The output as it is, the commented defaults aside.
		snippet := render(t, tpl, cfn.Get(tpl, "Outputs", "TrailwatchConfig", "Value"), nil)
		uncommented := regexp.MustCompile(`(?m)^\s*#.*\n`).ReplaceAllString(cfgText, "")
		if !strings.Contains(uncommented, snippet) {
			t.Errorf("the README's configuration does not hold the TrailwatchConfig output as it is:\n%s", snippet)
		}
		env := map[string]string{"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/XXXXXXXX"}
		cfg := parseConfig(t, cfgText, env)
		if config.SourceAs[s3sqs.Config](cfg.Source) == nil || cfg.SharedState == nil || len(cfg.Notifiers) == 0 || cfg.StateDir == "" {
			t.Error("the README's configuration should show source.s3sqs, shared_state, notifiers and a state_dir")
		}
		// The commented keys are the source's own, and load uncommented.
		for _, m := range regexp.MustCompile(`(?m)^\s*# (\w+): (\S+)`).FindAllStringSubmatch(cfgText, -1) {
			parseConfig(t, strings.Replace(cfgText, "# "+m[1]+": "+m[2], m[1]+": "+m[2], 1), env)
		}
	})

	t.Run("its commands deploy the template and read outputs it has", func(t *testing.T) {
		cfn.CheckDeployCommands(t, text, tpl)
		for _, b := range mdcheck.CodeBlocks(text, "sh") {
			for _, out := range regexp.MustCompile(`\boutput ([A-Z]\w+)`).FindAllStringSubmatch(b, -1) {
				if cfn.Get(tpl, "Outputs", out[1]) == nil {
					t.Errorf("the README reads output %s, which the template does not have", out[1])
				}
			}
		}
	})

	t.Run("its links lead to files and headings that exist", func(t *testing.T) { mdcheck.CheckLinks(t, text) })
}
