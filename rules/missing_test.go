package rules

import (
	"testing"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// TestMissingTypedFieldFallsBack checks that `??` falls back when a typed
// string field is absent (read as ""), in conditions, summaries and
// threshold groups, while free-form values keep expr's nil test.
func TestMissingTypedFieldFallsBack(t *testing.T) {
	service := `{"eventVersion":"1.08","eventID":"m1","eventName":"PutObject","errorCode":"AccessDenied",
	  "userIdentity":{"type":"AWSService","invokedBy":"delivery.logs.amazonaws.com"},
	  "requestParameters":{"bucketName":"logs","key":""}}`
	user := `{"eventVersion":"1.08","eventID":"m2","eventName":"PutObject",
	  "userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/ci","principalId":"AIDAEXAMPLE"}}`
	tests := []struct {
		name, tmpl, record, want string
	}{
		{"typed field falls back", `{{ userIdentity.arn ?? userIdentity.invokedBy }}`, service, "delivery.logs.amazonaws.com"},
		{"present typed field is kept", `{{ userIdentity.arn ?? userIdentity.invokedBy }}`, user, "arn:aws:iam::111122223333:user/ci"},
		{"chain of typed fields", `{{ userIdentity.arn ?? userIdentity.userName ?? userIdentity.principalId ?? userIdentity.invokedBy }}`, service, "delivery.logs.amazonaws.com"},
		{"typed field falls back to a constant", `{{ errorMessage ?? "no message" }}`, service, "no message"},
		{"typed field falls back to a free-form value", `{{ userIdentity.userName ?? requestParameters.bucketName }}`, service, "logs"},
		{"free-form empty string is a value", `{{ requestParameters.key ?? "nil" }}`, service, ""},
		{"free-form nil falls back", `{{ requestParameters.missing ?? "nil" }}`, service, "nil"},
		{"free-form then typed", `{{ requestParameters.missing ?? userIdentity.arn ?? userIdentity.type }}`, service, "AWSService"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := cloudtrail.DecodeEvent([]byte(tt.record))
			if err != nil {
				t.Fatal(err)
			}
			if got := renderTemplate(t, tt.tmpl, ev); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	if !evalOn(t, `(userIdentity.arn ?? userIdentity.invokedBy) == "delivery.logs.amazonaws.com"`, service) {
		t.Error("condition: ?? did not fall back on a missing typed field")
	}
}

// TestCoalesceNullMap: `??` whose last operand reads into a null
// free-form part gives nil, not the null map (expr leaves a typed nil
// there), so toList of it is empty.
func TestCoalesceNullMap(t *testing.T) {
	rec := `{"eventVersion":"1","requestParameters":{"functionName":"x"},"responseElements":null}`
	for _, src := range []string{
		`len(toList(requestParameters.layers ?? responseElements.layers)) == 0`,
		`(requestParameters.layers ?? responseElements.layers) == nil`,
		`(requestParameters.functionName ?? responseElements.layers) == "x"`,
	} {
		if !evalOn(t, src, rec) {
			t.Errorf("%s is false", src)
		}
	}
}

// renderTemplate compiles a summary template and renders it on ev, failing
// the test on any error.
func renderTemplate(t *testing.T, tmpl string, ev *cloudtrail.Event) string {
	t.Helper()
	tp, err := parseTemplate(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tp.Render(ev)
	if err != nil {
		t.Fatal(err)
	}
	return got
}
