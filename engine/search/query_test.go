package search

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/rules"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
	"github.com/trailwatch/trailwatch/rules/pattern"

	"github.com/trailwatch/trailwatch/internal/corpus"
)

const (
	recUser = `{"eventVersion":"1.09","userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::111122223333:user/ops/alice","accountId":"111122223333","accessKeyId":"AKIAALICE","userName":"alice"},"eventTime":"2024-05-01T08:00:00Z","eventSource":"ec2.amazonaws.com","eventName":"AuthorizeSecurityGroupIngress","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.7","requestParameters":{"groupId":"sg-0abc"},"responseElements":null,"eventID":"e-1","readOnly":false}`
	recRole = `{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLE:deploy-42","arn":"arn:aws:sts::111122223333:assumed-role/Deploy/deploy-42","accessKeyId":"ASIADEPLOY","sessionContext":{"sessionIssuer":{"type":"Role","arn":"arn:aws:iam::111122223333:role/Deploy","userName":"Deploy"}}},"eventTime":"2024-05-01T09:00:00Z","eventSource":"ec2.amazonaws.com","eventName":"RunInstances","requestParameters":{"instancesSet":{"items":[{"imageId":"ami-1"}]}},"responseElements":{"instancesSet":{"items":[{"instanceId":"i-0123"},{"instanceId":"i-0456"}]}},"eventID":"e-2","readOnly":false}`
	recRoot = `{"eventVersion":"1.09","userIdentity":{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333"},"eventTime":"2024-05-01T10:00:00Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","responseElements":{"ConsoleLogin":"Failure"},"eventID":"e-3","readOnly":"True"}`
	recKMS  = `{"eventVersion":"1.09","userIdentity":{"type":"AWSService","invokedBy":"cloudtrail.amazonaws.com"},"eventTime":"2024-05-01T11:00:00Z","eventSource":"kms.amazonaws.com","eventName":"GenerateDataKey","resources":[{"ARN":"arn:aws:kms:us-east-1:111122223333:key/k-1","type":"AWS::KMS::Key"}],"eventID":"e-4","readOnly":true}`
)

func boolp(b bool) *bool { return &b }

func mustWhere(t *testing.T, src string) *rules.Condition {
	t.Helper()
	c, err := rules.CompileCondition(src)
	if err != nil {
		t.Fatalf("compile %q: %v", src, err)
	}
	return c
}

func TestQueryMatch(t *testing.T) {
	at := func(s string) time.Time { v, _ := time.Parse(time.RFC3339, s); return v }
	tests := []struct {
		name string
		q    Query
		want []string // event ids of the matching records, in input order
	}{
		{"empty query matches all", Query{}, []string{"e-1", "e-2", "e-3", "e-4"}},
		{"access key", Query{AccessKey: "AKIAALICE"}, []string{"e-1"}},
		{"event name", Query{EventName: "ConsoleLogin"}, []string{"e-3"}},
		{"event name is exact", Query{EventName: "consolelogin"}, nil},
		{"event source short name", Query{EventSource: "ec2"}, []string{"e-1", "e-2"}},
		{"event source full name", Query{EventSource: "kms.amazonaws.com"}, []string{"e-4"}},
		{"event id", Query{EventID: "e-2"}, []string{"e-2"}},
		{"user name", Query{User: "alice"}, []string{"e-1"}},
		{"user ARN", Query{User: "arn:aws:iam::111122223333:user/ops/alice"}, []string{"e-1"}},
		{"role session name", Query{User: "deploy-42"}, []string{"e-2"}},
		{"session issuer name", Query{User: "Deploy"}, []string{"e-2"}},
		{"session issuer ARN", Query{User: "arn:aws:iam::111122223333:role/Deploy"}, []string{"e-2"}},
		{"root", Query{User: "root"}, []string{"e-3"}},
		{"principal id", Query{User: "AROAEXAMPLE:deploy-42"}, []string{"e-2"}},
		{"resource type from resources", Query{ResourceType: "AWS::KMS::Key"}, []string{"e-4"}},
		{"resource type from mapping", Query{ResourceType: "AWS::EC2::SecurityGroup"}, []string{"e-1"}},
		{"instance type from mapping", Query{ResourceType: "AWS::EC2::Instance"}, []string{"e-2"}},
		{"resource name from ARN end", Query{ResourceName: "k-1"}, []string{"e-4"}},
		{"resource name as ARN", Query{ResourceName: "arn:aws:kms:us-east-1:111122223333:key/k-1"}, []string{"e-4"}},
		{"resource name from mapped field", Query{ResourceName: "sg-0abc"}, []string{"e-1"}},
		{"resource name in an array", Query{ResourceName: "i-0456"}, []string{"e-2"}},
		{"type and name", Query{ResourceType: "AWS::EC2::Instance", ResourceName: "sg-0abc"}, nil},
		{"read only true, string True included", Query{ReadOnly: boolp(true)}, []string{"e-3", "e-4"}},
		{"read only false", Query{ReadOnly: boolp(false)}, []string{"e-1", "e-2"}},
		{"where", Query{Where: mustWhere(t, `sourceIPAddress startsWith "203."`)}, []string{"e-1"}},
		{"combined", Query{EventSource: "ec2", User: "Deploy", ReadOnly: boolp(false)}, []string{"e-2"}},
		{"time range half open", Query{Start: at("2024-05-01T09:00:00Z"), End: at("2024-05-01T11:00:00Z")}, []string{"e-2", "e-3"}},
	}
	recs := []string{recUser, recRole, recRoot, recKMS}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, r := range recs {
				ev, err := cloudtrail.DecodeEvent([]byte(r))
				if err != nil {
					t.Fatal(err)
				}
				ok, err := tt.q.Match(ev)
				if err != nil {
					t.Fatalf("match: %v", err)
				}
				if ok {
					got = append(got, ev.EventID)
				}
				checkPatternNecessary(t, &tt.q, []byte(r), ok)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// checkPatternNecessary fails if the query's filter pattern rejects a
// record the query matches: CloudWatch would then never send it.
func checkPatternNecessary(t *testing.T, q *Query, raw []byte, matched bool) {
	t.Helper()
	src := q.FilterPattern()
	if src == "" {
		return
	}
	p, err := pattern.Parse(src)
	if err != nil {
		t.Fatalf("filter pattern %s does not parse: %v", src, err)
	}
	if !matched {
		return
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	if !p.Match(m) {
		t.Errorf("filter pattern %s rejects a matching record: %s", src, raw)
	}
}

func TestFilterPattern(t *testing.T) {
	tests := []struct {
		name string
		q    Query
		want string
	}{
		{"nothing to filter", Query{}, ""},
		{"where stays local", Query{Where: mustWhere(t, `readOnly`)}, ""},
		{"read only false stays local", Query{ReadOnly: boolp(false)}, ""},
		{"access key", Query{AccessKey: "AKIAX"}, `{ $.userIdentity.accessKeyId = "AKIAX" }`},
		{"two attributes", Query{EventName: "ConsoleLogin", EventSource: "signin"},
			`{ $.eventName = "ConsoleLogin" && $.eventSource = "signin.amazonaws.com" }`},
		{"quotes escaped", Query{EventName: `a"b`}, `{ $.eventName = "a\"b" }`},
		{"read only true", Query{ReadOnly: boolp(true)}, `{ $.readOnly IS TRUE || $.readOnly = "*" }`},
		{"resource type without mapping", Query{ResourceType: "AWS::Foo::Bar"}, `{ $.resources[*].type = "AWS::Foo::Bar" }`},
		{"resource type with mapping", Query{ResourceType: "AWS::EC2::KeyPair", EventName: "DeleteKeyPair"},
			`{ $.eventName = "DeleteKeyPair" && ($.resources[*].type = "AWS::EC2::KeyPair" || $.eventName = "CreateKeyPair" || $.eventName = "DeleteKeyPair" || $.eventName = "ImportKeyPair") }`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.q.FilterPattern()
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestFilterPatternStaysWithinLimits(t *testing.T) {
	// Every attribute at once, with a long value: whatever is rendered
	// must parse and fit; what does not fit is left out, not cut.
	long := strings.Repeat("x", 300)
	q := Query{AccessKey: "AKIA1", EventName: "RunInstances", EventSource: "ec2", EventID: "id", User: long,
		ResourceType: "AWS::EC2::Instance", ResourceName: "i-1", ReadOnly: boolp(true)}
	got := q.FilterPattern()
	if len(got) > MaxPatternLength {
		t.Fatalf("pattern is %d characters, over %d", len(got), MaxPatternLength)
	}
	if _, err := pattern.Parse(got); err != nil {
		t.Fatalf("pattern %s: %v", got, err)
	}
	if !strings.Contains(got, `$.eventID = "id"`) {
		t.Errorf("the most selective constraint was dropped: %s", got)
	}
}

// TestPatternNecessaryOnCorpus checks, on every real record, that a query
// built from the record's own attributes matches it and that the query's
// filter pattern lets it through.
func TestPatternNecessaryOnCorpus(t *testing.T) {
	var paths []string
	corpus, _ := filepath.Glob(filepath.Join(corpus.Dir(), "*.jsonl"))
	if len(corpus) == 0 {
		t.Log("real CloudTrail corpus ../shared/corpus absent: checking the bundled sample only")
	}
	paths = append(paths, corpus...)
	paths = append(paths, "../../examples/events/sample-trail.jsonl")
	n := 0
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			raw := sc.Bytes()
			ev, err := cloudtrail.DecodeEvent(raw)
			if err != nil {
				continue
			}
			n++
			u := ev.UserIdentity
			queries := []Query{
				{AccessKey: u.AccessKeyID, EventName: ev.EventName},
				{EventSource: ev.EventSource, EventID: ev.EventID, ReadOnly: boolp(ev.ReadOnly)},
				{User: u.UserName}, {User: arnName(u.ARN)}, {User: u.SessionContext.SessionIssuer.ARN},
			}
			for _, r := range Resources(ev) {
				queries = append(queries, Query{ResourceType: r.Type, ResourceName: r.Name})
			}
			for i := range queries {
				ok, err := queries[i].Match(ev)
				if err != nil || !ok {
					t.Fatalf("%s: query %s does not match the record it was built from (%v)", p, queries[i].String(), err)
				}
				checkPatternNecessary(t, &queries[i], raw, true)
			}
		}
		f.Close()
	}
	t.Logf("%d records checked", n)
}
