package cfn

import (
	"reflect"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	got, err := Decode([]byte(`
Parameters:
  Name: {Type: String, Default: "01"}
Resources:
  Topic:
    Type: AWS::SNS::Topic
    Properties:
      TopicName: !Sub "${Name}-alerts"
      Tags: &tags [{Key: a, Value: !Ref Name}]
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      Arn: !GetAtt Topic.TopicArn
      Tags: *tags
      Pick: !If [IsProd, !Join ["", [a, b]], !Ref "AWS::NoValue"]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"Parameters": map[string]any{"Name": map[string]any{"Type": "String", "Default": "01"}},
		"Resources": map[string]any{
			"Topic": map[string]any{"Type": "AWS::SNS::Topic", "Properties": map[string]any{
				"TopicName": map[string]any{"Fn::Sub": "${Name}-alerts"},
				"Tags":      []any{map[string]any{"Key": "a", "Value": map[string]any{"Ref": "Name"}}},
			}},
			"Queue": map[string]any{"Type": "AWS::SQS::Queue", "Properties": map[string]any{
				"Arn":  map[string]any{"Fn::GetAtt": []any{"Topic", "TopicArn"}},
				"Tags": []any{map[string]any{"Key": "a", "Value": map[string]any{"Ref": "Name"}}},
				"Pick": map[string]any{"Fn::If": []any{"IsProd",
					map[string]any{"Fn::Join": []any{"", []any{"a", "b"}}}, map[string]any{"Ref": "AWS::NoValue"}}},
			}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Decode =\n%#v\nwant\n%#v", got, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{"A: 1\nA: 2\n", `line 2: duplicate key "A"`},
		{"A: !Bogus x\n", "line 1: unknown tag !Bogus"},
		{"A: !GetAtt Topic\n", `line 1: !GetAtt "Topic" is not Resource.Attribute`},
		{"- a\n", "top level is []interface {}, want a mapping"},
		{"", "empty template"},
	} {
		_, err := Decode([]byte(tt.src))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Decode(%q) error = %v, want %q", tt.src, err, tt.want)
		}
	}
}

func TestGetAndStrings(t *testing.T) {
	tpl := map[string]any{"A": map[string]any{"B": []any{"x", 2}}, "C": "y"}
	if got := Strings(Get(tpl, "A", "B")); !reflect.DeepEqual(got, []string{"x", "2"}) {
		t.Errorf("Strings(Get(A, B)) = %q", got)
	}
	if got := Strings(Get(tpl, "C")); !reflect.DeepEqual(got, []string{"y"}) {
		t.Errorf("Strings(Get(C)) = %q", got)
	}
	if got := Get(tpl, "C", "D", "E"); got != nil {
		t.Errorf("Get past a leaf = %v, want nil", got)
	}
	if _, err := ReadFile("no-such-template.yaml"); err == nil {
		t.Error("ReadFile of a missing file: no error")
	}
}
