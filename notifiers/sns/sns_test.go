package sns

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/trailwatch/trailwatch/internal/testservers"
	"github.com/trailwatch/trailwatch/notifiers"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const sampleEvent = `{"eventVersion":"1.09","userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333","accessKeyId":"AKIAEXAMPLE","userName":"alice"},"eventTime":"2024-05-02T09:14:07Z","eventSource":"cloudtrail.amazonaws.com","eventName":"StopLogging","awsRegion":"eu-west-1","sourceIPAddress":"198.51.100.23","userAgent":"aws-cli/2.15.0","requestParameters":{"name":"arn:aws:cloudtrail:eu-west-1:111122223333:trail/main"},"responseElements":null,"requestID":"5e1f7c1e-0000-4000-8000-000000000001","eventID":"9a1d2c3b-4e5f-4a6b-8c7d-0e1f2a3b4c5d","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}`

func sampleAlert() notifiers.Alert {
	return notifiers.Alert{
		RuleID:      "aws-cloudtrail-stop-logging",
		Title:       "CloudTrail logging stopped",
		Severity:    "critical",
		Summary:     "alice stopped trail main",
		Tags:        []string{"defense-evasion"},
		Runbook:     "https://runbooks.example.com/aws/cloudtrail-stopped",
		DedupKey:    "aws-cloudtrail-stop-logging/111122223333/main",
		EventID:     "9a1d2c3b-4e5f-4a6b-8c7d-0e1f2a3b4c5d",
		EventTime:   time.Date(2024, 5, 2, 9, 14, 7, 0, time.UTC),
		EventName:   "StopLogging",
		EventSource: "cloudtrail.amazonaws.com",
		Principal:   "arn:aws:iam::111122223333:user/alice",
		UserName:    "alice",
		AccessKeyID: "AKIAEXAMPLE",
		SourceIP:    "198.51.100.23",
		UserAgent:   "aws-cli/2.15.0",
		AWSRegion:   "eu-west-1",
		AccountID:   "111122223333",
		Count:       1,
		Event:       json.RawMessage(sampleEvent),
	}
}

// bigAlert carries a record of about size bytes, most of it in
// requestParameters, as a large IAM policy document would.
func bigAlert(size int) notifiers.Alert {
	a := sampleAlert()
	var ev map[string]any
	if err := json.Unmarshal([]byte(sampleEvent), &ev); err != nil {
		panic(err)
	}
	ev["requestParameters"] = map[string]any{"policyDocument": strings.Repeat(`{"Effect":"Allow"}<>&é`, size/24)}
	ev["responseElements"] = map[string]any{"note": strings.Repeat("x", 2000)}
	a.Event, _ = json.Marshal(ev)
	return a
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatalf("update %s: %v", path, err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test -update and review the diff)\ngot:\n%s", path, got)
	}
}

func TestConfigValidate(t *testing.T) {
	const arn = "arn:aws:sns:eu-west-1:111122223333:trailwatch-alerts"
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string
	}{
		{name: "topic only", cfg: Config{TopicARN: arn}},
		{name: "fifo topic with region", cfg: Config{Type: "sns", TopicARN: "arn:aws:sns:eu-west-1:111122223333:alerts.fifo", Region: "eu-west-1"}},
		{name: "gov cloud partition", cfg: Config{TopicARN: "arn:aws-us-gov:sns:us-gov-west-1:111122223333:alerts"}},
		{name: "wrong type", cfg: Config{Type: "email", TopicARN: arn}, wantErr: []string{"type:"}},
		{name: "no topic", cfg: Config{}, wantErr: []string{"topic_arn: required"}},
		{name: "not an sns arn", cfg: Config{TopicARN: "arn:aws:sqs:eu-west-1:111122223333:q"}, wantErr: []string{"not an SNS topic ARN"}},
		{name: "topic name with a space", cfg: Config{TopicARN: arn + " x"}, wantErr: []string{"not an SNS topic ARN"}},
		{name: "region differs from the arn", cfg: Config{TopicARN: arn, Region: "us-east-1"}, wantErr: []string{"differs from the topic's region"}},
		{name: "bad region", cfg: Config{TopicARN: arn, Region: "EU WEST"}, wantErr: []string{"region:"}},
		{name: "every problem at once", cfg: Config{Type: "x", Region: "EU WEST"}, wantErr: []string{"type:", "topic_arn: required", "region:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestSubject(t *testing.T) {
	tests := []struct {
		name  string
		alert notifiers.Alert
		want  string
	}{
		{"plain", notifiers.Alert{Severity: "high", Title: "Root login"}, "[trailwatch] HIGH: Root login"},
		{"test", notifiers.Alert{Severity: "low", Title: "x", Test: true}, "[trailwatch] TEST LOW: x"},
		{"no title", notifiers.Alert{RuleID: "r1"}, "[trailwatch] ALERT: r1"},
		{"newlines and tabs", notifiers.Alert{Severity: "high", Title: "a\r\nb\tc"}, "[trailwatch] HIGH: a b c"},
		{"non-ascii", notifiers.Alert{Severity: "high", Title: "café\u202e\x00"}, "[trailwatch] HIGH: caf?"},
		{"long", notifiers.Alert{Severity: "high", Title: strings.Repeat("a", 200)},
			"[trailwatch] HIGH: " + strings.Repeat("a", MaxSubjectLen-3-len("[trailwatch] HIGH: ")) + "..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Subject(&tt.alert)
			if got != tt.want {
				t.Errorf("Subject() = %q, want %q", got, tt.want)
			}
			if len(got) > MaxSubjectLen {
				t.Errorf("Subject() is %d characters, want < 100", len(got))
			}
			for _, r := range got {
				if r < 0x20 || r > 0x7e {
					t.Errorf("Subject() holds %q, want printable ASCII only", r)
				}
			}
		})
	}
}

func TestMessageGolden(t *testing.T) {
	msg, err := Message(sampleAlert(), MaxPublishBytes)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "alert.golden.json", append(msg, '\n'))

	trimmed, err := Message(bigAlert(300<<10), MaxPublishBytes-safetyMargin)
	if err != nil {
		t.Fatal(err)
	}
	var back notifiers.Alert
	if err := json.Unmarshal(trimmed, &back); err != nil {
		t.Fatal(err)
	}
	golden(t, "trimmed-event.golden.json", append(back.Event, '\n'))
}

func TestMessageTrimming(t *testing.T) {
	hugeSummary := sampleAlert()
	hugeSummary.Summary = strings.Repeat("s", 300<<10)
	hugeSummary.Event = bigAlert(300 << 10).Event
	scalar := sampleAlert()
	scalar.Event = json.RawMessage(`"` + strings.Repeat("x", 300<<10) + `"`)
	invalid := sampleAlert()
	invalid.Event = json.RawMessage(`{"eventName": "broken`)
	manyFields := sampleAlert()
	fields := map[string]string{}
	for i := range 400 {
		fields["field"+strconv.Itoa(i)] = strings.Repeat("v", 1000)
	}
	manyFields.Event, _ = json.Marshal(fields)

	tests := []struct {
		name      string
		alert     notifiers.Alert
		limit     int
		truncated bool
		keep      []string // top-level record fields that must survive
	}{
		{"small alert untouched", sampleAlert(), MaxPublishBytes, false, []string{"eventName", "requestParameters"}},
		{"300 KB record", bigAlert(300 << 10), MaxPublishBytes - safetyMargin, true, []string{"eventID", "eventName", "userIdentity", "responseElements"}},
		{"huge summary and record", hugeSummary, MaxPublishBytes - safetyMargin, true, nil},
		{"record that is a huge string", scalar, MaxPublishBytes - safetyMargin, true, nil},
		{"record that is not JSON", invalid, MaxPublishBytes, true, nil},
		{"many medium fields", manyFields, 64 << 10, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := Message(tt.alert, tt.limit)
			if err != nil {
				t.Fatalf("Message: %v", err)
			}
			if len(msg) > tt.limit {
				t.Errorf("message is %d bytes, want at most %d", len(msg), tt.limit)
			}
			var back notifiers.Alert
			if err := json.Unmarshal(msg, &back); err != nil {
				t.Fatalf("message is not a valid alert: %v", err)
			}
			if back.RuleID != tt.alert.RuleID || back.DedupKey != tt.alert.DedupKey || back.EventID != tt.alert.EventID {
				t.Errorf("identity fields changed: %+v", back)
			}
			var ev map[string]json.RawMessage
			_ = json.Unmarshal(back.Event, &ev)
			if got := string(ev["event_truncated"]) == "true"; got != tt.truncated {
				t.Errorf("event_truncated = %v, want %v (event %.200s)", got, tt.truncated, back.Event)
			}
			for _, k := range tt.keep {
				if _, ok := ev[k]; !ok {
					t.Errorf("record lost %q", k)
				}
			}
		})
	}
}

// harness is a moto server with an SNS topic fanned out to an SQS queue.
type harness struct {
	sns      *sns.Client
	sqs      *sqs.Client
	topicARN string
	queueURL string
}

func newHarness(t *testing.T, ctx context.Context, endpoint, name string, fifo bool) *harness {
	t.Helper()
	ac, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{sns: sns.NewFromConfig(ac), sqs: sqs.NewFromConfig(ac)}
	topicAttrs, queueAttrs := map[string]string{}, map[string]string{}
	if fifo {
		name += ".fifo"
		topicAttrs["FifoTopic"] = "true"
		queueAttrs["FifoQueue"] = "true"
	}
	topic, err := h.sns.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(name), Attributes: topicAttrs})
	if err != nil {
		t.Fatalf("create topic: %v", err)
	}
	h.topicARN = aws.ToString(topic.TopicArn)
	q, err := h.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: queueAttrs})
	if err != nil {
		t.Fatalf("create queue: %v", err)
	}
	h.queueURL = aws.ToString(q.QueueUrl)
	qa, err := h.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		t.Fatalf("queue attributes: %v", err)
	}
	subAttrs := map[string]string{}
	if fifo {
		subAttrs["RawMessageDelivery"] = "true"
	}
	if _, err := h.sns.Subscribe(ctx, &sns.SubscribeInput{
		TopicArn: topic.TopicArn, Protocol: aws.String("sqs"),
		Endpoint: aws.String(qa.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]), Attributes: subAttrs,
	}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return h
}

// receive polls the queue until it yields a message or the deadline passes.
func (h *harness) receive(t *testing.T, ctx context.Context) sqstypes.Message {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		out, err := h.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(h.queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
		})
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		if len(out.Messages) > 0 {
			if len(out.Messages) > 1 {
				t.Errorf("queue holds %d messages, want 1", len(out.Messages))
			}
			return out.Messages[0]
		}
	}
	t.Fatal("no message reached the queue within 20s")
	return sqstypes.Message{}
}

// envelope is the JSON SNS wraps a message in for SQS without raw delivery.
type envelope struct {
	Subject           string
	Message           string
	MessageAttributes map[string]struct{ Type, Value string }
}

func TestPublishMoto(t *testing.T) {
	moto := testservers.StartMoto(t)
	t.Setenv("AWS_ENDPOINT_URL", moto.Endpoint)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()

	t.Run("standard topic to sqs", func(t *testing.T) {
		h := newHarness(t, ctx, moto.Endpoint, "alerts", false)
		n, err := New(ctx, Config{TopicARN: h.topicARN})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		a := sampleAlert()
		a.Title = "CloudTrail logging stopped\r\nby <script>"
		if err := n.Notify(ctx, a); err != nil {
			t.Fatalf("Notify: %v", err)
		}
		var env envelope
		if err := json.Unmarshal([]byte(aws.ToString(h.receive(t, ctx).Body)), &env); err != nil {
			t.Fatalf("decode the SNS envelope: %v", err)
		}
		if want := "[trailwatch] CRITICAL: CloudTrail logging stopped by <script>"; env.Subject != want {
			t.Errorf("subject = %q, want %q", env.Subject, want)
		}
		var got notifiers.Alert
		if err := json.Unmarshal([]byte(env.Message), &got); err != nil {
			t.Fatalf("decode the alert: %v", err)
		}
		if got.RuleID != a.RuleID || got.Title != a.Title || !got.EventTime.Equal(a.EventTime) {
			t.Errorf("alert = %+v, want %+v", got, a)
		}
		if !bytes.Equal(got.Event, a.Event) {
			t.Errorf("record changed in transit:\n%s", got.Event)
		}
		for name, want := range map[string]string{"severity": "critical", "rule_id": "aws-cloudtrail-stop-logging"} {
			if attr := env.MessageAttributes[name]; attr.Type != "String" || attr.Value != want {
				t.Errorf("attribute %s = %+v, want String %q", name, attr, want)
			}
		}
	})

	t.Run("fifo topic with a 300 KB record", func(t *testing.T) {
		h := newHarness(t, ctx, moto.Endpoint, "alerts", true)
		n, err := New(ctx, Config{TopicARN: h.topicARN})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		a := bigAlert(300 << 10)
		if len(a.Event) < 300<<10 {
			t.Fatalf("test record is only %d bytes", len(a.Event))
		}
		if err := n.Notify(ctx, a); err != nil {
			t.Fatalf("Notify: %v", err)
		}
		m := h.receive(t, ctx)
		body := aws.ToString(m.Body)
		if len(body) > MaxPublishBytes {
			t.Errorf("message is %d bytes, over the SNS limit", len(body))
		}
		var got notifiers.Alert
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("decode the alert: %v", err)
		}
		var ev map[string]any
		if err := json.Unmarshal(got.Event, &ev); err != nil || ev["event_truncated"] != true || ev["eventName"] != "StopLogging" {
			t.Errorf("record = %.300s (%v), want a trimmed record that keeps eventName", got.Event, err)
		}
		if g := m.Attributes[string(sqstypes.MessageSystemAttributeNameMessageGroupId)]; g != a.RuleID {
			t.Errorf("MessageGroupId = %q, want %q", g, a.RuleID)
		}
		if d := m.Attributes[string(sqstypes.MessageSystemAttributeNameMessageDeduplicationId)]; d != DeduplicationID(&a) {
			t.Errorf("MessageDeduplicationId = %q, want %q", d, DeduplicationID(&a))
		}
		if v := m.MessageAttributes["severity"]; aws.ToString(v.StringValue) != "critical" {
			t.Errorf("severity attribute = %v, want critical", aws.ToString(v.StringValue))
		}
	})

	t.Run("missing topic is permanent", func(t *testing.T) {
		n, err := New(ctx, Config{TopicARN: "arn:aws:sns:us-east-1:123456789012:no-such-topic"})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		err = n.Notify(ctx, sampleAlert())
		if err == nil || !notifiers.IsPermanent(err) {
			t.Fatalf("Notify error = %v, want a permanent NotFound", err)
		}
	})
}

func TestPublishUnreachableIsRetryable(t *testing.T) {
	testservers.SetFakeAWSEnv(t)
	t.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:"+strconv.Itoa(testservers.FreePort(t)))
	n, err := New(context.Background(), Config{TopicARN: "arn:aws:sns:us-east-1:123456789012:alerts"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	err = n.Notify(context.Background(), sampleAlert())
	if err == nil || notifiers.IsPermanent(err) {
		t.Fatalf("Notify error = %v, want a retryable error", err)
	}
}

func TestDeduplicationID(t *testing.T) {
	a := sampleAlert()
	b := a
	b.EventID = "other"
	if DeduplicationID(&a) != DeduplicationID(&a) {
		t.Error("a retried alert changes its deduplication id")
	}
	if DeduplicationID(&a) == DeduplicationID(&b) {
		t.Error("two events under one dedup key share a deduplication id")
	}
	if n := len(DeduplicationID(&a)); n > 128 {
		t.Errorf("deduplication id is %d characters, want at most 128", n)
	}
}
