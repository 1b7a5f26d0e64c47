package rules

import (
	"fmt"
	"testing"
)

func TestDetectionHelpers(t *testing.T) {
	rec := `{"eventVersion":"1.08","eventID":"x","eventName":"PutBucketPolicy",
	  "userIdentity":{"type":"AWSService","invokedBy":"delivery.logs.amazonaws.com"},
	  "requestParameters":{"bucketPolicy":"{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\"}]}",
	    "policyDocument":"%7B%22Statement%22%3A%5B%7B%22Effect%22%3A%22Deny%22%7D%5D%7D",
	    "broken":"{\"Statement\":", "plain":"hello",
	    "containerDefinitions":[{"command":["sh","-c","curl $AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]},{"command":"echo"}],
	    "VersioningConfiguration":{"Status":"Suspended","MfaDelete":false},"count":3}}`
	tests := []struct {
		expr string
		want bool
	}{
		{`principal(userIdentity) == "delivery.logs.amazonaws.com"`, true},
		{`parseJSON(requestParameters.bucketPolicy).Statement[0].Principal == "*"`, true},
		{`parseJSON(requestParameters.policyDocument).Statement[0].Effect == "Deny"`, true},
		{`parseJSON(requestParameters.broken) == nil`, true},
		{`parseJSON(requestParameters.plain) == nil`, true},
		{`parseJSON(requestParameters.missing) == nil`, true},
		{`parseJSON(requestParameters.VersioningConfiguration).Status == "Suspended"`, true},
		{`parseJSON(42) == nil`, true},
		{`len(leaves(requestParameters, "containerDefinitions.command")) == 4`, true},
		{`any(leaves(requestParameters, "containerDefinitions.command"), {str(#) contains "AWS_CONTAINER_CREDENTIALS"})`, true},
		{`"Suspended" in leaves(requestParameters, "")`, true},
		{`false in leaves(requestParameters, "VersioningConfiguration")`, true},
		{`len(leaves(requestParameters, "no.such.path")) == 0`, true},
		{`len(leaves(requestParameters, "plain.deeper")) == 0`, true},
		{`leaves(requestParameters, "count") == [3.0]`, true},
		{`len(leaves(nil, "")) == 0`, true},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			if got := evalOn(t, tt.expr, rec); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLeavesOrderIsStable(t *testing.T) {
	v := map[string]any{"b": []any{"2", map[string]any{"z": 1.0, "a": true}}, "a": "1"}
	want := "[1 2 true 1]"
	for range 20 {
		if got := fmt.Sprint(leaves(v, "")); got != want {
			t.Fatalf("leaves = %s, want %s", got, want)
		}
	}
}
