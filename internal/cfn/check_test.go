package cfn

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps what the checks report.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

const checkTemplate = `
Parameters:
  Bucket: {Type: String}
  Unused: {Type: String}
  Size: {Type: Number, Default: 5, MinValue: 1, MaxValue: 10}
  Mode: {Type: String, Default: a, AllowedValues: [a, b]}
  Prefix: {Type: String, Default: AWSLogs/, AllowedPattern: "[A-Za-z]+/"}
Conditions:
  Big: !Equals [!Ref Size, 10]
  Lonely: !Equals [!Ref Mode, b]
Resources:
  Queue:
    Type: AWS::SQS::Queue
    DependsOn: [Nothing]
    Condition: Missing
    Properties:
      Name: !Sub "${Bucket}-${Queue.Arn}-${AWS::Region}-${!Literal}-${Ghost}"
      Other: !GetAtt Phantom.Arn
      Pick: !If [Big, !Ref Prefix, !Ref AWS::NoValue]
  Policy:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Statement:
          - {Sid: A, Action: sqs:SendMessage, Resource: !GetAtt Queue.Arn}
          - !If [Big, {Sid: B, Action: kms:Decrypt}, !Ref AWS::NoValue]
Outputs:
  Config:
    Value: !Sub "bucket: ${Bucket} size: ${Size} mode: ${!Mode}"
`

func TestCheckReferences(t *testing.T) {
	tpl, err := Decode([]byte(checkTemplate))
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{TB: t}
	CheckReferences(r, tpl)
	want := []string{
		"Resources.Queue.Properties.Name: Ref Ghost is no parameter, resource or pseudo parameter",
		"Resources.Queue.Properties.Other: GetAtt of Phantom, which is no resource",
		"Resources.Queue: DependsOn Nothing, which is no resource",
		"Resources.Queue: condition Missing is not defined",
		"parameter Unused is never used",
		"condition Lonely is never used",
	}
	slices.Sort(want)
	slices.Sort(r.errs)
	if !slices.Equal(r.errs, want) {
		t.Errorf("CheckReferences reported\n%s\nwant\n%s", strings.Join(r.errs, "\n"), strings.Join(want, "\n"))
	}
}

func TestRenderStatementsAccepts(t *testing.T) {
	tpl, err := Decode([]byte(checkTemplate))
	if err != nil {
		t.Fatal(err)
	}
	out := Get(tpl, "Outputs", "Config", "Value")
	if got, err := Render(tpl, out, map[string]string{"Bucket": "trail"}); err != nil || got != "bucket: trail size: 5 mode: ${Mode}" {
		t.Errorf("Render = %q, %v", got, err)
	}
	if _, err := Render(tpl, out, nil); err == nil || !strings.Contains(err.Error(), "no value for Bucket") {
		t.Errorf("Render without Bucket: %v, want it named", err)
	}
	var sids []string
	for _, st := range Statements(Get(tpl, "Resources", "Policy")) {
		sids = append(sids, fmt.Sprint(st["Sid"]))
	}
	if !slices.Equal(sids, []string{"A", "B"}) {
		t.Errorf("Statements = %v, want A and the conditional B", sids)
	}
	if got := ArnOf(Get(tpl, "Resources", "Policy", "Properties", "PolicyDocument", "Statement").([]any)[0].(map[string]any)["Resource"]); got != "Queue" {
		t.Errorf("ArnOf = %q", got)
	}
	params := tpl["Parameters"]
	for _, tt := range []struct {
		param, value, want string
	}{
		{"Size", "5", ""}, {"Size", "11", "above 10"}, {"Size", "0", "below 1"}, {"Size", "x", "not a number"},
		{"Mode", "b", ""}, {"Mode", "c", "not one of"},
		{"Prefix", "trails/", ""}, {"Prefix", "a/b/", "does not match"},
	} {
		err := Accepts(Get(params, tt.param), tt.value)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("Accepts(%s, %q) = %v, want %q", tt.param, tt.value, err, tt.want)
		}
	}
}

// api is an interface as the code declares one for a client it calls.
type api interface {
	GetItem()
	TransactWriteItems()
}

func TestActionsOf(t *testing.T) {
	dir := t.TempDir()
	src := `package x
func f() {
	_ = []types.TransactWriteItem{{Put: nil}, {Delete: nil}}
	_ = types.TransactWriteItem{ConditionCheck: nil}
}
`
	if err := os.WriteFile(filepath.Join(dir, "x.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	got := ActionsOf(t, "dynamodb", dir, reflect.TypeFor[api]())
	want := []string{"dynamodb:ConditionCheckItem", "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem"}
	if !slices.Equal(got, want) {
		t.Errorf("ActionsOf = %v, want %v", got, want)
	}
}
