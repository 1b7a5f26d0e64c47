package decide

import (
	"encoding/json"
	"testing"

	"github.com/trailwatch/trailwatch/rules"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

func testSet(t testing.TB) *rules.Set {
	t.Helper()
	set, err := rules.LoadFiles([]rules.File{{Name: "r.yaml", Data: []byte(`rules:
  - id: key-deleted
    title: Key pair deleted
    severity: medium
    tags: [attack:T1531]
    when: eventName == "DeleteKeyPair" && errorCode == ""
    summary: "{{ requestParameters.keyName }} deleted by {{ userIdentity.userName }}"
  - id: any-error
    title: Error
    severity: low
    when: errorCode != ""
`)}})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestEvaluatorAlerts(t *testing.T) {
	e := NewEvaluator(testSet(t), EvaluatorOptions{})
	rec := `{"eventVersion":"1.08","eventID":"ev-1","eventTime":"2024-05-01T10:00:00Z","eventName":"DeleteKeyPair",
	  "eventSource":"ec2.amazonaws.com","awsRegion":"us-west-2","sourceIPAddress":"198.51.100.1","userAgent":"cli",
	  "recipientAccountId":"111122223333","requestParameters":{"keyName":"k1"},
	  "userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/bob","userName":"bob","accessKeyId":"AKIAX"}}`
	alerts, err := e.Evaluate([]byte(rec), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts) != 1 {
		t.Fatalf("got %d alerts, want 1", len(alerts))
	}
	a := alerts[0].Alert
	if alerts[0].Rule == nil || alerts[0].Rule.ID != "key-deleted" {
		t.Errorf("match rule = %v, want key-deleted", alerts[0].Rule)
	}
	if ev := alerts[0].Event; ev == nil || ev.EventID != "ev-1" || ev.RequestParameters["keyName"] != "k1" {
		t.Errorf("match event = %+v, want the decoded record", ev)
	}
	checks := map[string][2]string{
		"rule_id": {a.RuleID, "key-deleted"}, "summary": {a.Summary, "k1 deleted by bob"}, "principal": {a.Principal, "arn:aws:iam::111122223333:user/bob"},
		"event_id": {a.EventID, "ev-1"}, "account": {a.AccountID, "111122223333"}, "region": {a.AWSRegion, "us-west-2"},
		"source_ip": {a.SourceIP, "198.51.100.1"}, "access_key": {a.AccessKeyID, "AKIAX"}, "user": {a.UserName, "bob"},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
	var back map[string]any
	b, _ := json.Marshal(a)
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"rule_id", "title", "severity", "summary", "event_id", "event_time", "event_name", "principal", "source_ip", "aws_region", "account_id", "event"} {
		if _, ok := back[k]; !ok {
			t.Errorf("public alert JSON lacks %q: %s", k, b)
		}
	}
	if ev, ok := back["event"].(map[string]any); !ok || ev["eventID"] != "ev-1" {
		t.Errorf("alert's event is not the whole record: %v", back["event"])
	}

	// The same record again (CloudTrail's duplicate delivery): no alert.
	again, err := e.Evaluate([]byte(rec), nil)
	if err != nil || len(again) != 0 {
		t.Errorf("duplicate delivery gave %d alerts, err %v; want none", len(again), err)
	}
	if _, err := e.Evaluate([]byte(`{"not":"cloudtrail"}`), nil); err == nil {
		t.Error("a non-CloudTrail object must be an error")
	}
	st := e.Stats()
	if st.Records != 1 || st.Duplicates != 1 || st.Malformed != 1 || st.Alerts != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestAlertKeyStable(t *testing.T) {
	ev := &cloudtrail.Event{EventID: "e1"}
	if AlertKey("r", ev) != AlertKey("r", ev) || AlertKey("r", ev) == AlertKey("s", ev) {
		t.Error("AlertKey must be stable per rule and event and differ across rules")
	}
}
