package rules

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// replayDefault runs events, in order, through the enabled rules of set and
// the alert lifecycle as the default configuration has it (thresholds;
// dedup only for rules with a dedup: block), with fresh state. It returns
// the alerts raised per rule and, per event, whether it raised an alert or
// was counted into a threshold alert that fired.
func replayDefault(t *testing.T, set *Set, evs []*cloudtrail.Event) (alerts map[string]int, alerted []bool) {
	t.Helper()
	var store mapStore
	alerts = map[string]int{}
	alerted = make([]bool, len(evs))
	pending := map[string][]int{} // threshold group key -> events counted so far
	for i, ev := range evs {
		for _, r := range set.Match(ev, nil, func(me MatchError) {
			t.Errorf("rule %s failed at run time on %s: %v", me.Rule.ID, ev.EventID, me.Err)
		}) {
			out, err := r.Observe(ev, &store, 0)
			if err != nil {
				t.Errorf("rule %s: %v", r.ID, err)
				continue
			}
			if out.ThresholdKey != "" {
				pending[out.ThresholdKey] = append(pending[out.ThresholdKey], i)
				if out.Fired {
					for _, j := range pending[out.ThresholdKey] {
						alerted[j] = true
					}
					delete(pending, out.ThresholdKey)
				}
			}
			if out.Notify {
				alerts[r.ID]++
				alerted[i] = true
			}
		}
	}
	return alerts, alerted
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func perThousand(alerts, records int) float64 {
	if records == 0 {
		return 0
	}
	return 1000 * float64(alerts) / float64(records)
}

func topRules(m map[string]int) string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return m[ids[i]] > m[ids[j]] || (m[ids[i]] == m[ids[j]] && ids[i] < ids[j]) })
	var parts []string
	for _, id := range ids {
		parts = append(parts, fmt.Sprintf("%s=%d", id, m[id]))
	}
	return strings.Join(parts, " ")
}

// TestNoiseBudget measures what the default configuration (every built-in
// pack as shipped) raises on the corpus, as docs/noise.md reports:
//
//   - every Stratus Red Team technique the coverage report says the packs
//     catch must still raise an alert (or complete a threshold) once the
//     lifecycle has run, replaying each corpus file as recorded;
//
//   - the corpus without its detonation records is reported too. It is not
//     a benign trail: it is attack labs being built and torn down by
//     Terraform (every record a change), plus a file of hand-picked sample
//     events; the guard of 20 per 1,000 only keeps it from growing unseen.
//     The benign-heavy figure is TestNoiseBenignDay's.
//
//     go test ./rules -run TestNoiseBudget -v
func TestNoiseBudget(t *testing.T) {
	set, err := Load("builtin")
	if err != nil {
		t.Fatal(err)
	}
	files, records := attributeCorpus(t)
	_, caught := coverageResults(t, set)
	var bgEvents []*cloudtrail.Event
	for _, file := range files {
		recs := records[file]
		evs := make([]*cloudtrail.Event, len(recs))
		for i, r := range recs {
			evs[i] = r.ev
		}
		alerts, alerted := replayDefault(t, set, evs)
		t.Logf("%s: %d records, %d alerts (%.1f per 1,000): %s", file, len(evs), total(alerts), perThousand(total(alerts), len(evs)), topRules(alerts))
		raised := map[string]bool{}
		for i, r := range recs {
			if r.technique != "" && alerted[i] {
				raised[r.technique] = true
			}
			if r.technique == "" {
				bgEvents = append(bgEvents, r.ev)
			}
		}
		for tech, res := range caught[file] {
			if len(res.rules) > 0 && !raised[tech] {
				t.Errorf("%s: technique %s is caught by %v but raises no alert once thresholds and dedup have run", file, tech, sortedKeys(res.rules))
			}
		}
	}
	// The background keeps each file's order, one file after another, as
	// separate trails would be read.
	alerts, _ := replayDefault(t, set, bgEvents)
	rate := perThousand(total(alerts), len(bgEvents))
	t.Logf("background (corpus without detonations): %d records, %d alerts (%.1f per 1,000): %s", len(bgEvents), total(alerts), rate, topRules(alerts))
	if rate > 20 {
		t.Errorf("the default configuration raises %.1f alerts per 1,000 background records of the corpus, was under 20", rate)
	}
}

// TestNoiseServiceRefusals is the lab trail in miniature: AWS log
// delivery and other AWS services refused while writing to buckets whose
// policies lag behind (thousands a day in a real account), and
// principal-less service calls. The default configuration raises nothing
// for them, and a principal's own refused reads are grouped by that
// principal, never into one blank group.
func TestNoiseServiceRefusals(t *testing.T) {
	set, err := Load("builtin")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC)
	var evs []*cloudtrail.Event
	services := []string{"delivery.logs.amazonaws.com", "config.amazonaws.com", "cloudtrail.amazonaws.com", "elasticloadbalancing.amazonaws.com"}
	for i := range 10000 {
		svc := services[i%len(services)]
		rec := fmt.Sprintf(`{"eventVersion":"1.09","eventID":"svc-%d","eventTime":%q,"eventSource":"s3.amazonaws.com","eventName":%q,
		  "awsRegion":"eu-west-1","sourceIPAddress":%q,"userAgent":%q,"errorCode":"AccessDenied","errorMessage":"Access Denied",
		  "userIdentity":{"type":"AWSService","invokedBy":%q},"requestParameters":{"bucketName":"central-logs"},"eventType":"AwsApiCall","readOnly":%v}`,
			i, base.Add(time.Duration(i)*8*time.Second).Format(time.RFC3339), []string{"PutObject", "GetBucketAcl"}[i%2], svc, svc, svc, i%2 == 1)
		ev, err := cloudtrail.DecodeEvent([]byte(rec))
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	alerts, _ := replayDefault(t, set, evs)
	if n := total(alerts); n != 0 {
		t.Errorf("10,000 refusals of AWS services raised %d alerts: %s", n, topRules(alerts))
	}
	// Two principals' refused reads, interleaved: two groups, each named.
	evs = nil
	for i := range 20 {
		who := []string{"arn:aws:iam::555566667777:user/a", "arn:aws:iam::555566667777:user/b"}[i%2]
		rec := fmt.Sprintf(`{"eventVersion":"1.09","eventID":"p-%d","eventTime":%q,"eventSource":"iam.amazonaws.com","eventName":"ListRoles",
		  "sourceIPAddress":"203.0.113.7","userAgent":"aws-cli/2","errorCode":"AccessDenied","userIdentity":{"type":"IAMUser","arn":%q}}`,
			i, base.Add(time.Duration(i)*time.Second).Format(time.RFC3339), who)
		ev, _ := cloudtrail.DecodeEvent([]byte(rec))
		evs = append(evs, ev)
	}
	alerts, _ = replayDefault(t, set, evs)
	if alerts["aws-access-denied-burst"] != 2 {
		t.Errorf("two principals' bursts raised %d aws-access-denied-burst alerts, want 2 (one per principal)", alerts["aws-access-denied-burst"])
	}
}

// benignDay generates a day of CloudTrail for a production account that
// nobody is attacking, written for this test (no real record is copied):
// mostly applications reading and writing their data, monitoring and
// Terraform plans describing everything, AWS services working for the
// account — among them log delivery refused by a bucket policy that lags
// behind (the 10,011 alerts) — people in the console through
// single sign-on, a misconfigured application refused every minute from
// inside the VPC, a few mistyped passwords, operators opening sessions,
// and four CI deployments that change Lambda code, IAM policies, security
// groups, routes, bucket and queue policies. The mix follows the shape of
// real trails: reads and service traffic are most of the volume, changes a
// small part.
func benignDay(t *testing.T) []*cloudtrail.Event {
	t.Helper()
	const acct = "555566667777"
	start := time.Date(2024, 9, 2, 0, 0, 0, 0, time.UTC)
	var out []*cloudtrail.Event
	n := 0
	add := func(at time.Duration, id, src, name, ip, ua, extra string) {
		n++
		rec := fmt.Sprintf(`{"eventVersion":"1.09","eventID":"benign-%06d","eventTime":%q,"eventSource":%q,"eventName":%q,`+
			`"awsRegion":"eu-west-1","sourceIPAddress":%q,"userAgent":%q,"userIdentity":%s,"eventType":"AwsApiCall","recipientAccountId":%q%s}`,
			n, start.Add(at).Format(time.RFC3339), src, name, ip, ua, id, acct, extra)
		ev, err := cloudtrail.DecodeEvent([]byte(rec))
		if err != nil {
			t.Fatalf("%v: %s", err, rec)
		}
		out = append(out, ev)
	}
	role := func(name, session string) string {
		return fmt.Sprintf(`{"type":"AssumedRole","principalId":"AROAEXAMPLE%s:%s","arn":"arn:aws:sts::%s:assumed-role/%s/%s","accountId":%q,`+
			`"sessionContext":{"sessionIssuer":{"type":"Role","arn":"arn:aws:iam::%s:role/%s","accountId":%q,"userName":%q},"attributes":{"mfaAuthenticated":"false"}}}`,
			strings.ToUpper(name[:3]), session, acct, name, session, acct, acct, name, acct, name)
	}
	service := func(svc string) string { return fmt.Sprintf(`{"type":"AWSService","invokedBy":%q}`, svc) }
	minute := func(i, per int) time.Duration { return time.Duration(i) * 24 * time.Hour / time.Duration(per) }

	apps := []string{"orders-api", "billing-worker", "search-indexer", "web-frontend"}
	for i := range 6000 { // KMS for application data
		app := apps[i%len(apps)]
		add(minute(i, 6000), role(app, "task-"+app), "kms.amazonaws.com", []string{"Decrypt", "GenerateDataKey"}[i%2],
			fmt.Sprintf("10.20.%d.%d", i%8, 10+i%200), "aws-sdk-java/2.25.1", `,"readOnly":true,"requestParameters":{"encryptionAlgorithm":"SYMMETRIC_DEFAULT"}`)
	}
	for i := range 3000 { // S3 data events
		app := apps[i%len(apps)]
		add(minute(i, 3000)+time.Second, role(app, "task-"+app), "s3.amazonaws.com", []string{"GetObject", "PutObject", "HeadObject"}[i%3],
			fmt.Sprintf("10.20.%d.%d", i%8, 10+i%200), "aws-sdk-java/2.25.1", fmt.Sprintf(`,"requestParameters":{"bucketName":"%s-data","key":"items/%d.json"}`, app, i))
	}
	for i := range 1500 { // roles assumed for services and pods
		add(minute(i, 1500)+2*time.Second, service([]string{"lambda.amazonaws.com", "ecs-tasks.amazonaws.com", "ec2.amazonaws.com"}[i%3]),
			"sts.amazonaws.com", "AssumeRole", []string{"lambda.amazonaws.com", "ecs-tasks.amazonaws.com", "ec2.amazonaws.com"}[i%3],
			[]string{"lambda.amazonaws.com", "ecs-tasks.amazonaws.com", "ec2.amazonaws.com"}[i%3],
			fmt.Sprintf(`,"requestParameters":{"roleArn":"arn:aws:iam::%s:role/%s","roleSessionName":"s%d"}`, acct, apps[i%len(apps)], i))
	}
	describes := []string{"ec2:DescribeInstances", "ec2:DescribeVolumes", "rds:DescribeDBInstances", "monitoring:GetMetricData",
		"elasticloadbalancing:DescribeLoadBalancers", "lambda:ListFunctions20150331", "s3:ListBuckets", "iam:ListRoles"}
	for i := range 2500 { // monitoring integration
		d := describes[i%len(describes)]
		svc, name, _ := strings.Cut(d, ":")
		add(minute(i, 2500)+3*time.Second, role("monitoring-integration", "datadog"), svc+".amazonaws.com", name, "3.233.140.17", "Datadog/1.0 aws-sdk-go/1.44", `,"readOnly":true`)
	}
	for i := range 1500 { // terraform plans from CI
		d := describes[i%len(describes)]
		svc, name, _ := strings.Cut(d, ":")
		add(time.Duration(i/375)*6*time.Hour+time.Duration(i%375)*time.Second, role("github-actions-deploy", "run-"+fmt.Sprint(i/375)),
			svc+".amazonaws.com", name, "20.55.14.3", "APN/1.0 HashiCorp/1.0 Terraform/1.9.5 terraform-provider-aws/5.70.0", `,"readOnly":true`)
	}
	for i := range 2000 { // AWS services at work
		switch i % 4 {
		case 0:
			add(minute(i, 2000)+4*time.Second, service("config.amazonaws.com"), "ec2.amazonaws.com", "DescribeSecurityGroups", "config.amazonaws.com", "config.amazonaws.com", `,"readOnly":true`)
		case 1:
			add(minute(i, 2000)+4*time.Second, service("cloudtrail.amazonaws.com"), "s3.amazonaws.com", "GetBucketAcl", "cloudtrail.amazonaws.com", "cloudtrail.amazonaws.com", `,"requestParameters":{"bucketName":"org-trail"}`)
		case 2:
			add(minute(i, 2000)+4*time.Second, role("AWSServiceRoleForAutoScaling", "AutoScaling"), "ec2.amazonaws.com", "DescribeInstanceStatus", "autoscaling.amazonaws.com", "autoscaling.amazonaws.com", `,"readOnly":true`)
		default:
			add(minute(i, 2000)+4*time.Second, `{"accountId":"`+acct+`","invokedBy":"health.amazonaws.com"}`, "health.amazonaws.com", "AWSHealthEvent", "health.amazonaws.com", "health.amazonaws.com", `,"eventType":"AwsServiceEvent"`)
		}
	}
	for i := range 2400 { // log delivery refused by a lagging bucket policy
		add(minute(i, 2400)+5*time.Second, service("delivery.logs.amazonaws.com"), "s3.amazonaws.com", []string{"PutObject", "GetBucketAcl"}[i%2],
			"delivery.logs.amazonaws.com", "delivery.logs.amazonaws.com", `,"errorCode":"AccessDenied","errorMessage":"Access Denied","requestParameters":{"bucketName":"vpc-flow-logs-archive"}`)
	}
	for i := range 300 { // an application refused every few minutes, from inside the VPC
		add(minute(i, 300)+6*time.Second, role("billing-worker", "task-billing-worker"), "s3.amazonaws.com", "GetObject", "10.20.3.41", "aws-sdk-java/2.25.1",
			`,"errorCode":"AccessDenied","errorMessage":"Access Denied","requestParameters":{"bucketName":"finance-reports","key":"2024/09/summary.csv"}`)
	}
	people := []string{"ana", "ben", "chen", "dara"}
	for i := range 200 { // people in the console through Identity Center
		who := people[i%len(people)]
		at := 8*time.Hour + minute(i, 200)/3
		switch {
		case i < 4:
			add(at, role("AWSReservedSSO_Developer_0a1b2c3d", who), "signin.amazonaws.com", "GetSigninToken", "198.51.100.40", "Jersey/${project.version}", `,"eventType":"AwsConsoleSignIn"`)
			add(at+time.Second, role("AWSReservedSSO_Developer_0a1b2c3d", who), "signin.amazonaws.com", "ConsoleLogin", "198.51.100.40", "Mozilla/5.0",
				`,"eventType":"AwsConsoleSignIn","responseElements":{"ConsoleLogin":"Success"},"additionalEventData":{"LoginTo":"https://console.aws.amazon.com/"}`)
		default:
			add(at, role("AWSReservedSSO_Developer_0a1b2c3d", who), "ec2.amazonaws.com", "DescribeInstances", "198.51.100.40", "console.ec2.amazonaws.com", `,"readOnly":true`)
		}
	}
	for i := range 3 { // a mistyped password now and then
		add(9*time.Hour+time.Duration(i)*3*time.Hour, `{"type":"IAMUser","accountId":"`+acct+`","principalId":"AIDAEXAMPLEBREAK","userName":"breakglass"}`,
			"signin.amazonaws.com", "ConsoleLogin", "198.51.100.41", "Mozilla/5.0",
			`,"eventType":"AwsConsoleSignIn","errorMessage":"Failed authentication","responseElements":{"ConsoleLogin":"Failure"},"additionalEventData":{"MFAUsed":"Yes"}`)
	}
	for i := range 3 { // operators open sessions on instances
		add(10*time.Hour+time.Duration(i)*2*time.Hour, role("AWSReservedSSO_Operator_4e5f6a7b", people[i]), "ssm.amazonaws.com", "StartSession", "198.51.100.40", "aws-cli/2.17.3",
			fmt.Sprintf(`,"requestParameters":{"target":"i-0a1b2c3d4e5f6071%d"}`, i))
	}
	for d := range 4 { // CI deployments
		at := time.Duration(d)*6*time.Hour + 30*time.Minute
		ci := role("github-actions-deploy", fmt.Sprintf("deploy-%d", d))
		ip, ua := "20.55.14.3", "APN/1.0 HashiCorp/1.0 Terraform/1.9.5 terraform-provider-aws/5.70.0"
		for i, fn := range []string{"orders-api", "billing-worker", "search-indexer", "web-frontend", "thumbnailer"} {
			add(at+time.Duration(i)*time.Second, ci, "lambda.amazonaws.com", "UpdateFunctionCode20150331v2", ip, ua, fmt.Sprintf(`,"requestParameters":{"functionName":%q,"publish":true}`, fn))
		}
		add(at+10*time.Second, ci, "iam.amazonaws.com", "PutRolePolicy", ip, ua,
			`,"requestParameters":{"roleName":"orders-api","policyName":"data","policyDocument":"{\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"s3:GetObject\",\"Resource\":\"arn:aws:s3:::orders-api-data/*\"}]}"}`)
		add(at+11*time.Second, ci, "ec2.amazonaws.com", "AuthorizeSecurityGroupIngress", ip, ua,
			`,"requestParameters":{"groupId":"sg-0a1b2c3d","ipPermissions":{"items":[{"ipProtocol":"tcp","fromPort":443,"toPort":443,"ipRanges":{"items":[{"cidrIp":"10.20.0.0/16"}]}}]}}`)
		add(at+12*time.Second, ci, "ec2.amazonaws.com", "RevokeSecurityGroupIngress", ip, ua, `,"requestParameters":{"groupId":"sg-0a1b2c3d"}`)
		add(at+13*time.Second, ci, "ec2.amazonaws.com", "CreateRoute", ip, ua, `,"requestParameters":{"routeTableId":"rtb-0a1b2c3d","destinationCidrBlock":"10.30.0.0/16","transitGatewayId":"tgw-0a1b2c3d"}`)
		add(at+14*time.Second, ci, "s3.amazonaws.com", "PutBucketPolicy", ip, ua,
			`,"requestParameters":{"bucketName":"web-frontend-assets","bucketPolicy":{"Statement":[{"Effect":"Allow","Principal":{"Service":"cloudfront.amazonaws.com"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::web-frontend-assets/*"}]}}`)
		add(at+15*time.Second, ci, "sqs.amazonaws.com", "SetQueueAttributes", ip, ua,
			`,"requestParameters":{"queueUrl":"https://sqs.eu-west-1.amazonaws.com/555566667777/orders","attributes":{"Policy":"{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"Service\":\"sns.amazonaws.com\"},\"Action\":\"sqs:SendMessage\"}]}"}}`)
		for i := range 10 { // the new tasks read their secrets at start-up
			add(at+time.Minute+time.Duration(i)*time.Second, role(apps[i%len(apps)], "task-"+apps[i%len(apps)]), "secretsmanager.amazonaws.com", "GetSecretValue",
				"10.20.1.50", "aws-sdk-java/2.25.1", fmt.Sprintf(`,"requestParameters":{"secretId":"prod/%s"}`, apps[i%len(apps)]))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].EventTime.Before(out[j].EventTime) })
	return out
}

// TestNoiseBenignDay: on a benign-heavy trail (benignDay) the default
// configuration stays at or under 10 alerts per 1,000 records.
//
//	go test ./rules -run TestNoiseBenignDay -v
func TestNoiseBenignDay(t *testing.T) {
	set, err := Load("builtin")
	if err != nil {
		t.Fatal(err)
	}
	evs := benignDay(t)
	alerts, _ := replayDefault(t, set, evs)
	rate := perThousand(total(alerts), len(evs))
	t.Logf("benign day: %d records, %d alerts (%.1f per 1,000): %s", len(evs), total(alerts), rate, topRules(alerts))
	if rate > 10 {
		t.Errorf("the default configuration raises %.1f alerts per 1,000 records of a benign day, want at most 10", rate)
	}
}
