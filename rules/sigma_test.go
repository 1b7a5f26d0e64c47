package rules

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// sigmaRule wraps a detection section (indented by four spaces) in a
// minimal Sigma rule for aws/cloudtrail.
func sigmaRule(detection string) string {
	return "title: test rule\nid: 5d0c3e4f-0000-4000-8000-000000000001\nstatus: test\n" +
		"logsource:\n    product: aws\n    service: cloudtrail\ndetection:\n" + detection + "level: low\n"
}

func loadSigma(t *testing.T, src string) *Set {
	t.Helper()
	set, err := LoadFiles([]File{{Name: "rule.yml", Data: []byte(src)}})
	if err != nil {
		t.Fatalf("load:\n%s\n%v", src, err)
	}
	return set
}

// sigmaMatches evaluates a one-rule set on a record, through the index.
func sigmaMatches(t *testing.T, set *Set, record string) bool {
	t.Helper()
	ev, err := cloudtrail.DecodeEvent([]byte(record))
	if err != nil {
		t.Fatalf("decode %s: %v", record, err)
	}
	var errs []string
	got := set.Match(ev, nil, func(me MatchError) { errs = append(errs, me.Err.Error()) })
	if len(errs) > 0 {
		t.Fatalf("run-time error on %s: %v", record, errs)
	}
	return len(got) > 0
}

// rec builds a record from a few top-level JSON members.
func rec(members string) string {
	return `{"eventVersion":"1.09","eventID":"e","eventTime":"2024-05-01T10:00:00Z",` + members + `}`
}

// TestSigmaSemantics checks, construct by construct, that a Sigma rule
// matches the records pySigma's semantics (its tests and the Sigma
// specification) say it matches, and no others.
func TestSigmaSemantics(t *testing.T) {
	tests := []struct {
		name      string
		detection string
		match     []string
		noMatch   []string
	}{
		{
			name:      "plain strings ignore case",
			detection: "    sel:\n        userAgent: 'trufflehog'\n    condition: sel\n",
			match:     []string{rec(`"userAgent":"TruffleHog"`)},
			noMatch:   []string{rec(`"userAgent":"TruffleHog/3.0"`), rec(`"eventName":"X"`)},
		},
		{
			name:      "cased compares case",
			detection: "    sel:\n        userAgent|cased: 'trufflehog'\n    condition: sel\n",
			match:     []string{rec(`"userAgent":"trufflehog"`)},
			noMatch:   []string{rec(`"userAgent":"TruffleHog"`)},
		},
		{
			name:      "wildcards * and ?",
			detection: "    sel:\n        userAgent: 'aws-cli/2.?.*'\n    condition: sel\n",
			match:     []string{rec(`"userAgent":"AWS-CLI/2.1.0 Python"`), rec(`"userAgent":"aws-cli/2.x."`)},
			noMatch:   []string{rec(`"userAgent":"aws-cli/2.15.0"`), rec(`"userAgent":"boto3 aws-cli/2.1.0"`)},
		},
		{
			name:      "escaped wildcard is literal",
			detection: "    sel:\n        userAgent: 'a\\*b\\?'\n    condition: sel\n",
			match:     []string{rec(`"userAgent":"a*b?"`)},
			noMatch:   []string{rec(`"userAgent":"axbc"`), rec(`"userAgent":"a*bc"`)},
		},
		{
			name:      "a backslash before another character is itself",
			detection: "    sel:\n        userAgent: 'C:\\Windows\\Sys*'\n    condition: sel\n",
			match:     []string{rec(`"userAgent":"C:\\Windows\\System32"`)},
			noMatch:   []string{rec(`"userAgent":"C:WindowsSystem32"`)},
		},
		{
			name:      "contains, startswith, endswith",
			detection: "    a:\n        userAgent|contains: 'Jersey'\n    b:\n        sourceIPAddress|startswith: '10.'\n    c:\n        eventSource|endswith: '.amazonaws.com'\n    condition: a and b and c\n",
			match:     []string{rec(`"userAgent":"aws-internal jersey/1","sourceIPAddress":"10.1.2.3","eventSource":"sts.AMAZONAWS.com"`)},
			noMatch:   []string{rec(`"userAgent":"aws-internal jersey/1","sourceIPAddress":"110.1.2.3","eventSource":"sts.amazonaws.com"`)},
		},
		{
			name:      "a list of values is any of them; all makes it every one",
			detection: "    a:\n        userAgent|contains: [Boto3, Botocore]\n    b:\n        userAgent|contains|all: [Boto3, Python]\n    condition: a and b\n",
			match:     []string{rec(`"userAgent":"Boto3/1.34 Python/3.12"`)},
			noMatch:   []string{rec(`"userAgent":"Botocore/1.34 Python/3.12"`), rec(`"userAgent":"Boto3/1.34 Go"`)},
		},
		{
			name:      "null matches an absent field",
			detection: "    sel:\n        eventName: DeleteBucket\n    ok:\n        errorCode: null\n    condition: sel and ok\n",
			match:     []string{rec(`"eventName":"DeleteBucket"`), rec(`"eventName":"DeleteBucket","errorCode":null`)},
			noMatch:   []string{rec(`"eventName":"DeleteBucket","errorCode":"AccessDenied"`)},
		},
		{
			name:      "null in a free-form part",
			detection: "    sel:\n        requestParameters.policy: null\n    condition: sel\n",
			match:     []string{rec(`"requestParameters":{"bucketName":"b"}`), rec(`"requestParameters":{"policy":null}`), rec(`"eventName":"X"`)},
			noMatch:   []string{rec(`"requestParameters":{"policy":"{}"}`)},
		},
		{
			name:      "a lone * asks for a value",
			detection: "    sel:\n        errorMessage|contains: '*'\n    condition: sel\n",
			match:     []string{rec(`"errorMessage":"nope"`)},
			noMatch:   []string{rec(`"eventName":"X"`)},
		},
		{
			name:      "a value never matches an absent field, even negated through not",
			detection: "    sel:\n        eventName: CreateInstanceExportTask\n    f1:\n        errorCode|contains: '*'\n    f2:\n        responseElements|contains: 'Failure'\n    condition: sel and not 1 of f*\n",
			match:     []string{rec(`"eventName":"CreateInstanceExportTask","responseElements":{"exportTask":{"state":"active"}}`)},
			noMatch:   []string{rec(`"eventName":"CreateInstanceExportTask","errorCode":"X"`), rec(`"eventName":"CreateInstanceExportTask","responseElements":{"status":"failure"}`)},
		},
		{
			name:      "re is a case-sensitive search; i ignores case",
			detection: "    a:\n        userIdentity.arn|re: ':assumed-role/aws:'\n    b:\n        userAgent|re|i: '^BOTO'\n    condition: a and b\n",
			match:     []string{rec(`"userIdentity":{"arn":"arn:aws:sts::1:assumed-role/aws:ec2-instance/i-1"},"userAgent":"boto3"`)},
			noMatch:   []string{rec(`"userIdentity":{"arn":"arn:aws:sts::1:ASSUMED-ROLE/aws:ec2-instance/i-1"},"userAgent":"boto3"`)},
		},
		{
			name:      "exists",
			detection: "    a:\n        errorCode|exists: true\n    b:\n        requestParameters.key|exists: false\n    condition: a and b\n",
			match:     []string{rec(`"errorCode":"X","requestParameters":{"bucketName":"b"}`)},
			noMatch:   []string{rec(`"requestParameters":{"bucketName":"b"}`), rec(`"errorCode":"X","requestParameters":{"key":"k"}`)},
		},
		{
			name:      "cidr",
			detection: "    sel:\n        sourceIPAddress|cidr: 10.0.0.0/8\n    condition: sel\n",
			match:     []string{rec(`"sourceIPAddress":"10.2.3.4"`)},
			noMatch:   []string{rec(`"sourceIPAddress":"11.2.3.4"`), rec(`"sourceIPAddress":"ec2.amazonaws.com"`)},
		},
		{
			name:      "numeric comparisons",
			detection: "    sel:\n        requestParameters.pendingWindowInDays|lt: 8\n    condition: sel\n",
			match:     []string{rec(`"requestParameters":{"pendingWindowInDays":7}`), rec(`"requestParameters":{"pendingWindowInDays":"7"}`)},
			noMatch:   []string{rec(`"requestParameters":{"pendingWindowInDays":30}`), rec(`"requestParameters":{"pendingWindowInDays":"soon"}`), rec(`"eventName":"X"`)},
		},
		{
			name:      "numbers and booleans match their JSON values",
			detection: "    a:\n        requestParameters.fromPort: 22\n    b:\n        requestParameters.enable: 'false'\n    condition: a and b\n",
			match:     []string{rec(`"requestParameters":{"fromPort":22,"enable":false}`), rec(`"requestParameters":{"fromPort":"22","enable":"False"}`)},
			noMatch:   []string{rec(`"requestParameters":{"fromPort":2222,"enable":false}`)},
		},
		{
			name:      "a path walks into lists",
			detection: "    sel:\n        requestParameters.containerDefinitions.command|contains: '$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI'\n    condition: sel\n",
			match:     []string{rec(`"requestParameters":{"containerDefinitions":[{"command":["echo"]},{"command":["sh","-c","curl 169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]}]}`)},
			noMatch:   []string{rec(`"requestParameters":{"containerDefinitions":[{"command":["echo"]}]}`)},
		},
		{
			name:      "a map matches when a value inside it does",
			detection: "    sel:\n        requestParameters|contains: 'Suspended'\n    condition: sel\n",
			match:     []string{rec(`"requestParameters":{"bucketName":"b","VersioningConfiguration":{"Status":"Suspended"}}`)},
			noMatch:   []string{rec(`"requestParameters":{"bucketName":"b","VersioningConfiguration":{"Status":"Enabled"}}`)},
		},
		{
			name:      "resources",
			detection: "    sel:\n        resources.ARN|endswith: ':trail/org'\n    condition: sel\n",
			match:     []string{rec(`"resources":[{"ARN":"arn:aws:s3:::b"},{"ARN":"arn:aws:cloudtrail:us-east-1:1:trail/org"}]`)},
			noMatch:   []string{rec(`"resources":[{"ARN":"arn:aws:s3:::b"}]`)},
		},
		{
			name:      "fieldref",
			detection: "    sel:\n        eventName: UpdateLoginProfile\n    self:\n        userIdentity.userName|fieldref: requestParameters.userName\n    condition: sel and not self\n",
			match:     []string{rec(`"eventName":"UpdateLoginProfile","userIdentity":{"userName":"admin"},"requestParameters":{"userName":"bob"}`)},
			noMatch:   []string{rec(`"eventName":"UpdateLoginProfile","userIdentity":{"userName":"bob"},"requestParameters":{"userName":"bob"}`)},
		},
		{
			name:      "neq",
			detection: "    sel:\n        eventName: GetObject\n        userIdentity.type|neq: AWSService\n    condition: sel\n",
			match:     []string{rec(`"eventName":"GetObject","userIdentity":{"type":"IAMUser"}`)},
			noMatch:   []string{rec(`"eventName":"GetObject","userIdentity":{"type":"AWSService"}`)},
		},
		{
			name:      "base64 and base64offset",
			detection: "    a:\n        requestParameters.userData|base64offset|contains: 'curl '\n    condition: a\n",
			match: []string{
				rec(`"requestParameters":{"userData":"` + b64("#!/bin/sh\ncurl x") + `"}`),
				rec(`"requestParameters":{"userData":"` + b64("#!/bin/bash\ncurl x") + `"}`),
				rec(`"requestParameters":{"userData":"` + b64("curl x") + `"}`),
			},
			noMatch: []string{rec(`"requestParameters":{"userData":"` + b64("#!/bin/sh\nwget x") + `"}`)},
		},
		{
			name:      "a list of maps is any of them",
			detection: "    sel:\n        userIdentity.arn|contains: ':assumed-role/'\n    filter:\n        - eventSource: ssm.amazonaws.com\n        - sourceIPAddress: AWS Internal\n    condition: sel and not filter\n",
			match:     []string{rec(`"userIdentity":{"arn":"arn:aws:sts::1:assumed-role/r/s"},"eventSource":"s3.amazonaws.com","sourceIPAddress":"1.2.3.4"`)},
			noMatch: []string{rec(`"userIdentity":{"arn":"arn:aws:sts::1:assumed-role/r/s"},"eventSource":"ssm.amazonaws.com","sourceIPAddress":"1.2.3.4"`),
				rec(`"userIdentity":{"arn":"arn:aws:sts::1:assumed-role/r/s"},"eventSource":"s3.amazonaws.com","sourceIPAddress":"AWS Internal"`)},
		},
		{
			name:      "1 of, all of, them leaves out _ identifiers",
			detection: "    selection_a:\n        eventName: A\n    selection_b:\n        eventSource: b.amazonaws.com\n    _hidden:\n        awsRegion: nowhere\n    condition: 1 of selection_* and all of them\n",
			match:     []string{rec(`"eventName":"A","eventSource":"b.amazonaws.com","awsRegion":"us-east-1"`)},
			noMatch:   []string{rec(`"eventName":"A","eventSource":"c.amazonaws.com"`)},
		},
		{
			name:      "any of, 1 of them",
			detection: "    a:\n        eventName: A\n    b:\n        eventName: B\n    condition: any of a* or 1 of them\n",
			match:     []string{rec(`"eventName":"A"`), rec(`"eventName":"B"`)},
			noMatch:   []string{rec(`"eventName":"C"`)},
		},
		{
			name:      "and binds tighter than or, not tighter than and",
			detection: "    a:\n        eventName: A\n    b:\n        awsRegion: b\n    c:\n        eventSource: c\n    condition: a or b and c\n",
			match:     []string{rec(`"eventName":"A"`), rec(`"awsRegion":"b","eventSource":"c"`)},
			noMatch:   []string{rec(`"awsRegion":"b"`)},
		},
		{
			name:      "not applies to the next term only; parentheses group",
			detection: "    a:\n        eventName: A\n    b:\n        awsRegion: b\n    c:\n        eventSource: c\n    condition: not a and (b or c)\n",
			match:     []string{rec(`"eventName":"X","awsRegion":"b"`)},
			noMatch:   []string{rec(`"eventName":"A","awsRegion":"b"`), rec(`"eventName":"X"`)},
		},
		{
			name:      "a list of conditions is any of them",
			detection: "    a:\n        eventName: A\n    b:\n        eventName: B\n    condition:\n        - a\n        - b\n",
			match:     []string{rec(`"eventName":"B"`)},
			noMatch:   []string{rec(`"eventName":"C"`)},
		},
		{
			name:      "eventName is compared exactly",
			detection: "    sel:\n        eventName: [StopLogging, DeleteTrail]\n    condition: sel\n",
			match:     []string{rec(`"eventName":"DeleteTrail"`)},
			noMatch:   []string{rec(`"eventName":"deletetrail"`)},
		},
		{
			name:      "an empty string matches an absent typed field",
			detection: "    sel:\n        eventName: X\n        errorCode: ''\n    condition: sel\n",
			match:     []string{rec(`"eventName":"X"`)},
			noMatch:   []string{rec(`"eventName":"X","errorCode":"E"`)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := loadSigma(t, sigmaRule(tt.detection))
			for _, r := range tt.match {
				if !sigmaMatches(t, set, r) {
					t.Errorf("no match on %s\nwhen: %s", r, set.Rules()[0].When)
				}
			}
			for _, r := range tt.noMatch {
				if sigmaMatches(t, set, r) {
					t.Errorf("matched %s\nwhen: %s", r, set.Rules()[0].When)
				}
			}
		})
	}
}

func b64(s string) string {
	const enc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var b strings.Builder
	for i := 0; i < len(s); i += 3 {
		var n uint32
		k := 0
		for j := 0; j < 3; j++ {
			n <<= 8
			if i+j < len(s) {
				n |= uint32(s[i+j])
				k++
			}
		}
		for j := 0; j < 4; j++ {
			if j <= k {
				b.WriteByte(enc[(n>>(18-6*j))&63])
			} else {
				b.WriteByte('=')
			}
		}
	}
	return b.String()
}

// TestSigmaFixtures loads trailwatch's own Sigma rules (testdata/sigma:
// the constructs SigmaHQ's CloudTrail rules use, written for these tests)
// and runs the tests each carries under x-trailwatch.
func TestSigmaFixtures(t *testing.T) {
	set, err := Load("testdata/sigma")
	if err != nil {
		t.Fatalf("load:\n%v", err)
	}
	if len(set.Rules()) < 12 {
		t.Fatalf("loaded %d Sigma rules, want the 12 fixtures", len(set.Rules()))
	}
	requirePassingTests(t, set)
	// Metadata carries over: tags in trailwatch's form, level, name as id,
	// and the rule index reads the event names of a Sigma detection.
	r := set.Rule("0b6f3a52-7c1e-4d2a-9f8e-5a4b3c2d1e01")
	if r == nil {
		t.Fatal("the trail-tampering fixture is not loaded under its Sigma id")
	}
	if got := strings.Join(r.Tags, ","); got != "attack:defense-evasion,attack:T1562.008,sigma" {
		t.Errorf("tags = %s", got)
	}
	if r.Severity != "high" || !strings.Contains(r.Description, "False positives: Planned trail maintenance.") {
		t.Errorf("severity %q, description %q", r.Severity, r.Description)
	}
	if got := r.Index().EventNames; strings.Join(got, ",") != "DeleteTrail,StopLogging,UpdateTrail" {
		t.Errorf("index event names = %v", got)
	}
	if set.Rule("root-user-activity") == nil {
		t.Error("a Sigma rule with a name is not loaded under it (root_user_activity → root-user-activity)")
	}
	if !set.Rule("root-user-activity").Index().HeaderOnly {
		t.Error("a Sigma rule that reads only header fields is not decided from the header")
	}
}

// sigmaHQDir returns the SigmaHQ CloudTrail rule folder named by
// TRAILWATCH_SIGMA_DIR (a SigmaHQ/sigma checkout, or the folder itself),
// or skips the test.
func sigmaHQDir(t *testing.T) string {
	dir := os.Getenv("TRAILWATCH_SIGMA_DIR")
	if dir == "" {
		t.Skip("TRAILWATCH_SIGMA_DIR is not set: point it at a SigmaHQ/sigma checkout to check its CloudTrail rules (e.g. TRAILWATCH_SIGMA_DIR=/work/ext/SigmaHQ+sigma)")
	}
	if sub := filepath.Join(dir, "rules", "cloud", "aws", "cloudtrail"); isDir(sub) {
		return sub
	}
	return dir
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// sigmaHQRecords reads sigma/testdata/sigmahq-records.yaml: records written for
// trailwatch, by SigmaHQ rule id, filled with neutral defaults.
func sigmaHQRecords(t *testing.T) map[string][][]byte {
	data, err := os.ReadFile("sigma/testdata/sigmahq-records.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string][]map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	out := map[string][][]byte{}
	n := 0
	for id, recs := range raw {
		for _, r := range recs {
			n++
			defaults := map[string]any{
				"eventVersion": "1.09", "eventID": fmt.Sprintf("5a9e0000-0000-4000-8000-%012d", n),
				"eventTime": "2025-01-10T12:00:00Z", "awsRegion": "eu-west-1", "sourceIPAddress": "198.51.100.60",
				"userAgent": "aws-cli/2.22.0", "eventType": "AwsApiCall", "recipientAccountId": "210987654321",
				"userIdentity": map[string]any{"type": "IAMUser", "principalId": "AIDAEXAMPLE00060", "arn": "arn:aws:iam::210987654321:user/ops",
					"accountId": "210987654321", "userName": "ops"},
			}
			for k, v := range defaults {
				if _, ok := r[k]; !ok {
					r[k] = v
				}
			}
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			out[id] = append(out[id], b)
		}
	}
	return out
}

// TestSigmaHQRules loads every SigmaHQ CloudTrail rule unchanged, each on
// its own, and checks that it fires on the records written for it. The
// issue's target is at least 50 of SigmaHQ's 57.
//
//	TRAILWATCH_SIGMA_DIR=/work/ext/SigmaHQ+sigma go test ./rules -run TestSigmaHQRules -v
func TestSigmaHQRules(t *testing.T) {
	dir := sigmaHQDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Sigma rules in %s: %v", dir, err)
	}
	sort.Strings(files)
	records := sigmaHQRecords(t)
	loaded, fired := 0, 0
	var notLoaded, notFired []string
	seen := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var hdr struct {
			ID string `yaml:"id"`
		}
		yaml.Unmarshal(data, &hdr)
		seen[hdr.ID] = true
		recs := records[hdr.ID]
		if len(recs) == 0 {
			t.Errorf("%s (id %s) has no records in rules/sigma/testdata/sigmahq-records.yaml: write one", filepath.Base(f), hdr.ID)
		}
		set, err := LoadFiles([]File{{Name: filepath.Base(f), Data: data}})
		if err != nil {
			notLoaded = append(notLoaded, err.Error())
			continue
		}
		loaded++
		ok := false
		for _, rec := range recs {
			ev, err := cloudtrail.DecodeEvent(rec)
			if err != nil {
				t.Fatalf("%s: record does not decode: %v", hdr.ID, err)
			}
			ok = ok || len(set.Match(ev, nil, func(me MatchError) { t.Errorf("%s: %v", f, me.Err) })) > 0
		}
		if ok {
			fired++
		} else {
			notFired = append(notFired, fmt.Sprintf("%s: when: %s", filepath.Base(f), set.Rules()[0].When))
		}
	}
	for id := range records {
		if !seen[id] {
			t.Errorf("rules/sigma/testdata/sigmahq-records.yaml has records for %s, which is not a rule in %s", id, dir)
		}
	}
	t.Logf("SigmaHQ CloudTrail rules in %s: %d, loaded unchanged: %d, fire on their records: %d", dir, len(files), loaded, fired)
	for _, e := range notLoaded {
		t.Logf("not loaded: %s", e)
	}
	for _, e := range notFired {
		t.Logf("loaded but silent: %s", e)
	}
	if fired < 50 {
		t.Errorf("%d SigmaHQ CloudTrail rules load and fire, want at least 50", fired)
	}
}
