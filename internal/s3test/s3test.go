// Package s3test is the test rig for trailwatch's S3 readers: moto (the
// real AWS SDK against a local emulator) with buckets, SQS queues with a
// dead-letter queue, SNS topics and bucket notifications, plus the
// messages S3, SNS and EventBridge deliver to a queue, built exactly as
// AWS builds them where moto does not.
//
// What moto 5.2.1 emulates, and what it does not (the tests rely on the
// first list only):
//   - S3 → SQS and S3 → SNS (→ SQS) notifications on PutObject, with the
//     configured prefix and suffix filters, and the s3:TestEvent message
//     when a configuration is put. Its records lack userIdentity,
//     requestParameters, responseElements and the object's sequencer,
//     and its eventTime is local time without a zone; S3Event builds the
//     record as S3 sends it.
//   - SQS visibility timeouts, ChangeMessageVisibility and RedrivePolicy
//     (a message received maxReceiveCount times moves to the dead-letter
//     queue instead of being received again).
//   - EventBridge → SQS: moto's event has a numeric "time"; EventBridge
//     sends an RFC 3339 string. EventBridgeEvent builds the event as
//     EventBridge sends it, and the tests send it themselves.
//   - Queue and bucket policies are stored, not enforced: the IAM of the
//     deployment example is checked by examples/deploy's tests.
package s3test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/trailwatch/trailwatch/internal/s3bundle"
	"github.com/trailwatch/trailwatch/internal/testservers"
)

// Region is the region of everything the rig creates.
const Region = "us-east-1"

// Account is moto's default account id.
const Account = "123456789012"

// Rig is a moto server with clients for S3, SQS and SNS.
type Rig struct {
	t testing.TB
	// Moto is the server; AWS_ENDPOINT_URL points at it for the test.
	Moto *testservers.Moto
	S3   *s3.Client
	SQS  *sqs.Client
	SNS  *sns.Client
}

// Start starts moto and returns the rig, with AWS_ENDPOINT_URL set to it
// for the rest of the test (so trailwatch's own clients find it).
func Start(t testing.TB) *Rig {
	t.Helper()
	moto := testservers.StartMoto(t)
	t.Setenv("AWS_ENDPOINT_URL", moto.Endpoint)
	ctx := context.Background()
	s3c, err := s3bundle.NewClient(ctx, s3bundle.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(Region))
	if err != nil {
		t.Fatal(err)
	}
	return &Rig{t: t, Moto: moto, S3: s3c, SQS: sqs.NewFromConfig(cfg), SNS: sns.NewFromConfig(cfg)}
}

// Bucket creates a bucket.
func (r *Rig) Bucket(name string) {
	r.t.Helper()
	if _, err := r.S3.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		r.t.Fatalf("create bucket %s: %v", name, err)
	}
}

// Put writes an object.
func (r *Rig) Put(bucket, key string, body []byte) {
	r.t.Helper()
	if _, err := r.S3.PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body),
	}); err != nil {
		r.t.Fatalf("put s3://%s/%s: %v", bucket, key, err)
	}
}

// UploadTree puts every file under dir into bucket under prefix, keeping
// relative paths, as `aws s3 sync dir s3://bucket/prefix` would.
func (r *Rig) UploadTree(bucket, prefix, dir string) {
	r.t.Helper()
	UploadTree(r.t, r.S3, bucket, prefix, dir)
}

// UploadTree puts every file under dir into bucket under prefix through
// c, keeping relative paths, as `aws s3 sync dir s3://bucket/prefix`
// would.
func UploadTree(t testing.TB, c *s3.Client, bucket, prefix, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = c.PutObject(context.Background(), &s3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(prefix + filepath.ToSlash(rel)), Body: f,
		})
		return err
	})
	if err != nil {
		t.Fatalf("upload %s to s3://%s/%s: %v", dir, bucket, prefix, err)
	}
}

// CountingClient counts the ListObjectsV2 calls made through it.
type CountingClient struct {
	s3bundle.Client
	Lists atomic.Int64
}

// ListObjectsV2 counts the call and makes it.
func (c *CountingClient) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	c.Lists.Add(1)
	return c.Client.ListObjectsV2(ctx, in, optFns...)
}

// Queue is an SQS queue.
type Queue struct {
	Name, URL, ARN string
}

// QueueOptions adjusts CreateQueue.
type QueueOptions struct {
	// DeadLetter, if set, is the queue's dead-letter queue, after
	// MaxReceiveCount receives (default 3).
	DeadLetter      *Queue
	MaxReceiveCount int
	// VisibilityTimeout is the queue's default (0: SQS's, 30s).
	VisibilityTimeout time.Duration
}

// CreateQueue creates a queue that S3 and SNS may send to.
func (r *Rig) CreateQueue(name string, opts QueueOptions) *Queue {
	r.t.Helper()
	ctx := context.Background()
	attrs := map[string]string{}
	if opts.DeadLetter != nil {
		n := opts.MaxReceiveCount
		if n == 0 {
			n = 3
		}
		policy, _ := json.Marshal(map[string]string{"deadLetterTargetArn": opts.DeadLetter.ARN, "maxReceiveCount": strconv.Itoa(n)})
		attrs[string(sqstypes.QueueAttributeNameRedrivePolicy)] = string(policy)
	}
	if opts.VisibilityTimeout > 0 {
		attrs[string(sqstypes.QueueAttributeNameVisibilityTimeout)] = strconv.Itoa(int(opts.VisibilityTimeout / time.Second))
	}
	out, err := r.SQS.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		r.t.Fatalf("create queue %s: %v", name, err)
	}
	q := &Queue{Name: name, URL: aws.ToString(out.QueueUrl)}
	got, err := r.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: out.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		r.t.Fatalf("queue %s: %v", name, err)
	}
	q.ARN = got.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
	// As a real deployment does (moto stores the policy, never enforces it).
	policy, _ := json.Marshal(map[string]any{
		"Version": "2012-10-17",
		"Statement": []any{map[string]any{
			"Effect": "Allow", "Principal": map[string]any{"Service": []string{"s3.amazonaws.com", "sns.amazonaws.com"}},
			"Action": "sqs:SendMessage", "Resource": q.ARN,
		}},
	})
	if _, err := r.SQS.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{
		QueueUrl: out.QueueUrl, Attributes: map[string]string{string(sqstypes.QueueAttributeNamePolicy): string(policy)},
	}); err != nil {
		r.t.Fatalf("queue %s policy: %v", name, err)
	}
	return q
}

// NotifyQueue sends the bucket's s3:ObjectCreated:* notifications for keys
// under prefix to q (S3 sends q an s3:TestEvent message at once).
func (r *Rig) NotifyQueue(bucket, prefix string, q *Queue) {
	r.t.Helper()
	r.notify(bucket, &s3types.NotificationConfiguration{QueueConfigurations: []s3types.QueueConfiguration{{
		Id: aws.String("trailwatch"), QueueArn: aws.String(q.ARN),
		Events: []s3types.Event{s3types.EventS3ObjectCreated},
		Filter: keyFilter(prefix),
	}}})
}

// NotifyTopic sends the bucket's s3:ObjectCreated:* notifications for keys
// under prefix to an SNS topic it creates, subscribes q to the topic
// (raw: with raw message delivery) and returns the topic's ARN.
func (r *Rig) NotifyTopic(bucket, prefix string, q *Queue, raw bool) string {
	r.t.Helper()
	ctx := context.Background()
	out, err := r.SNS.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(bucket + "-events")})
	if err != nil {
		r.t.Fatalf("create topic: %v", err)
	}
	topic := aws.ToString(out.TopicArn)
	attrs := map[string]string{}
	if raw {
		attrs["RawMessageDelivery"] = "true"
	}
	if _, err := r.SNS.Subscribe(ctx, &sns.SubscribeInput{
		TopicArn: aws.String(topic), Protocol: aws.String("sqs"), Endpoint: aws.String(q.ARN), Attributes: attrs,
	}); err != nil {
		r.t.Fatalf("subscribe %s to %s: %v", q.Name, topic, err)
	}
	r.notify(bucket, &s3types.NotificationConfiguration{TopicConfigurations: []s3types.TopicConfiguration{{
		Id: aws.String("trailwatch"), TopicArn: aws.String(topic),
		Events: []s3types.Event{s3types.EventS3ObjectCreated},
		Filter: keyFilter(prefix),
	}}})
	return topic
}

func keyFilter(prefix string) *s3types.NotificationConfigurationFilter {
	if prefix == "" {
		return nil
	}
	return &s3types.NotificationConfigurationFilter{Key: &s3types.S3KeyFilter{FilterRules: []s3types.FilterRule{
		{Name: s3types.FilterRuleNamePrefix, Value: aws.String(prefix)},
	}}}
}

func (r *Rig) notify(bucket string, cfg *s3types.NotificationConfiguration) {
	r.t.Helper()
	if _, err := r.S3.PutBucketNotificationConfiguration(context.Background(), &s3.PutBucketNotificationConfigurationInput{
		Bucket: aws.String(bucket), NotificationConfiguration: cfg,
	}); err != nil {
		r.t.Fatalf("bucket %s notifications: %v", bucket, err)
	}
}

// Send puts body on q, as a producer would.
func (r *Rig) Send(q *Queue, body string) {
	r.t.Helper()
	if _, err := r.SQS.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(q.URL), MessageBody: aws.String(body)}); err != nil {
		r.t.Fatalf("send to %s: %v", q.Name, err)
	}
}

// Receive takes up to 10 messages from q, hiding them for visibility (a
// second at least), waiting up to a second for one.
func (r *Rig) Receive(q *Queue, visibility time.Duration) []sqstypes.Message {
	r.t.Helper()
	out, err := r.SQS.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(q.URL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
		VisibilityTimeout:           int32(max(visibility, time.Second) / time.Second),
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
		MessageAttributeNames:       []string{"All"},
	})
	if err != nil {
		r.t.Fatalf("receive from %s: %v", q.Name, err)
	}
	return out.Messages
}

// Delete deletes received messages from q.
func (r *Rig) Delete(q *Queue, msgs []sqstypes.Message) {
	r.t.Helper()
	for _, m := range msgs {
		if _, err := r.SQS.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(q.URL), ReceiptHandle: m.ReceiptHandle}); err != nil {
			r.t.Fatalf("delete from %s: %v", q.Name, err)
		}
	}
}

// Depth returns the messages q holds, visible and in flight.
func (r *Rig) Depth(q *Queue) (visible, inFlight int) {
	r.t.Helper()
	out, err := r.SQS.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(q.URL), AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		r.t.Fatalf("queue %s attributes: %v", q.Name, err)
	}
	visible, _ = strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
	inFlight, _ = strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible, inFlight
}

// S3Event is the message S3 sends a queue (or topic) for one object
// created, exactly as S3 writes it (the key URL-encoded, as S3 encodes
// it, spaces as "+").
func S3Event(bucket, key string, size int64, etag string, at time.Time) string {
	rec := map[string]any{
		"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": Region,
		"eventTime": at.UTC().Format("2006-01-02T15:04:05.000Z"), "eventName": "ObjectCreated:Put",
		"userIdentity":      map[string]string{"principalId": "AWS:AROAEXAMPLE:regionalDeliverySession"},
		"requestParameters": map[string]string{"sourceIPAddress": "198.51.100.7"},
		"responseElements":  map[string]string{"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
		"s3": map[string]any{
			"s3SchemaVersion": "1.0", "configurationId": "trailwatch",
			"bucket": map[string]any{"name": bucket, "ownerIdentity": map[string]string{"principalId": "A3NL1KOZZKExample"}, "arn": "arn:aws:s3:::" + bucket},
			"object": map[string]any{"key": url.QueryEscape(key), "size": size, "eTag": etag, "sequencer": fmt.Sprintf("%018X", at.UnixNano())},
		},
	}
	b, _ := json.Marshal(map[string]any{"Records": []any{rec}})
	return string(b)
}

// SNSEnvelope wraps message as SNS delivers it to an SQS queue without raw
// message delivery.
func SNSEnvelope(topicARN, message string, at time.Time) string {
	b, _ := json.Marshal(map[string]string{
		"Type": "Notification", "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324", "TopicArn": topicARN,
		"Subject": "Amazon S3 Notification", "Message": message, "Timestamp": at.UTC().Format("2006-01-02T15:04:05.000Z"),
		"SignatureVersion": "1", "Signature": "EXAMPLE", "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem",
		"UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=" + topicARN + ":0000",
	})
	return string(b)
}

// EventBridgeEvent is the "Object Created" event EventBridge sends an SQS
// target for one object, exactly as EventBridge writes it (the key not
// encoded).
func EventBridgeEvent(bucket, key string, size int64, etag string, at time.Time) string {
	detail, _ := json.Marshal(map[string]any{
		"version": "0", "bucket": map[string]string{"name": bucket},
		"object":     map[string]any{"key": key, "size": size, "etag": etag, "sequencer": fmt.Sprintf("%018X", at.UnixNano())},
		"request-id": "N4N7GDK58NMKJ12R", "requester": "cloudtrail.amazonaws.com", "source-ip-address": "198.51.100.7",
		"reason": "PutObject",
	})
	b, _ := json.Marshal(map[string]any{
		"version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": "Object Created", "source": "aws.s3",
		"account": Account, "time": at.UTC().Format(time.RFC3339), "region": Region,
		"resources": []string{"arn:aws:s3:::" + bucket}, "detail": json.RawMessage(detail),
	})
	return string(b)
}

// Gzip compresses data, as CloudTrail compresses its log files.
func Gzip(data []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// TrailOptions shapes the tree WriteTrail writes.
type TrailOptions struct {
	// Accounts and Regions get a CloudTrail/<region>/ tree each
	// (default: two accounts, us-east-1 and eu-west-1).
	Accounts, Regions []string
	// Start and End bound the delivery times; a file is delivered every
	// Every (default: 2024-05-01 to 2024-05-04, every 6 hours).
	Start, End time.Time
	Every      time.Duration
	// Records is how many records each file holds (default 4): every
	// fourth a console sign-in, the others API calls.
	Records int
}

// WriteTrail writes a trail's S3 tree under dir as CloudTrail writes it,
// gzipped log files named with their delivery times holding records
// from the minutes before, and beside them what a reader must leave alone:
// digest files, a CloudTrail Insights file, another service's log, a
// folder marker's sibling text file and a hidden file. It returns the
// log files written, in lexical order.
func WriteTrail(t testing.TB, dir string, opts TrailOptions) []string {
	t.Helper()
	if len(opts.Accounts) == 0 {
		opts.Accounts = []string{"111122223333", "444455556666"}
	}
	if len(opts.Regions) == 0 {
		opts.Regions = []string{"eu-west-1", "us-east-1"}
	}
	if opts.Start.IsZero() {
		opts.Start = time.Date(2024, 5, 1, 0, 5, 0, 0, time.UTC)
	}
	if opts.End.IsZero() {
		opts.End = time.Date(2024, 5, 4, 0, 0, 0, 0, time.UTC)
	}
	if opts.Every == 0 {
		opts.Every = 6 * time.Hour
	}
	if opts.Records == 0 {
		opts.Records = 4
	}
	write := func(rel string, data []byte) string {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var logs []string
	n := 0
	for _, acct := range opts.Accounts {
		for _, region := range opts.Regions {
			base := "AWSLogs/" + acct + "/CloudTrail/" + region + "/"
			for at := opts.Start; at.Before(opts.End); at = at.Add(opts.Every) {
				var recs []string
				for i := range opts.Records {
					n++
					recs = append(recs, TrailRecord(fmt.Sprintf("%s-%s-%d", acct, region, n), acct, region, i%4 == 0, at.Add(-time.Duration(opts.Records-i)*time.Minute)))
				}
				name := fmt.Sprintf("%s_CloudTrail_%s_%s_%08X.json.gz", acct, region, at.Format("20060102T1504Z"), n)
				logs = append(logs, write(base+at.Format("2006/01/02/")+name, Gzip([]byte(`{"Records":[`+joinComma(recs)+`]}`))))
			}
			day := opts.Start.Format("2006/01/02/")
			write("AWSLogs/"+acct+"/CloudTrail-Digest/"+region+"/"+day+acct+"_CloudTrail-Digest_"+region+"_trail_"+region+"_"+opts.Start.Format("20060102T150405Z")+".json.gz",
				Gzip([]byte(`{"awsAccountId":"`+acct+`","digestStartTime":"`+opts.Start.Format(time.RFC3339)+`","logFiles":[]}`)))
		}
		write("AWSLogs/"+acct+"/CloudTrail-Insight/us-east-1/"+opts.Start.Format("2006/01/02/")+acct+"_CloudTrail-Insight_us-east-1_"+opts.Start.Format("20060102T1504Z")+"_ins.json.gz",
			Gzip([]byte(`{"Records":[{"eventVersion":"1.07","eventTime":"`+opts.Start.Format(time.RFC3339)+`","awsRegion":"us-east-1","eventID":"insight-`+acct+`","eventType":"AwsCloudTrailInsight","recipientAccountId":"`+acct+`","sharedEventID":"s","insightDetails":{"state":"Start","eventSource":"ec2.amazonaws.com","eventName":"RunInstances","insightType":"ApiCallRateInsight"},"eventCategory":"Insight"}]}`)))
		write("AWSLogs/"+acct+"/elasticloadbalancing/us-east-1/"+opts.Start.Format("2006/01/02/")+"lb.log.gz", Gzip([]byte("http 2024-05-01T00:00:00Z app/lb 198.51.100.1:1 - -1 -1 -1 503 - 0 0 \"GET / HTTP/1.1\" - - - -\n")))
		write("AWSLogs/"+acct+"/CloudTrail/us-east-1/README.txt", []byte("not events"))
		write("AWSLogs/"+acct+"/CloudTrail/us-east-1/.partial.json", []byte("not yet"))
	}
	return logs
}

// TrailRecord is one CloudTrail record: a successful root console sign-in
// (login) or an API call by an IAM user.
func TrailRecord(id, account, region string, login bool, at time.Time) string {
	ts := at.UTC().Format(time.RFC3339)
	if login {
		return `{"eventVersion":"1.08","userIdentity":{"type":"Root","principalId":"` + account + `","arn":"arn:aws:iam::` + account + `:root","accountId":"` + account + `"},` +
			`"eventTime":"` + ts + `","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"` + region + `","sourceIPAddress":"203.0.113.10",` +
			`"userAgent":"Mozilla/5.0","requestParameters":null,"responseElements":{"ConsoleLogin":"Success"},"additionalEventData":{"MFAUsed":"No"},` +
			`"eventID":"` + id + `","eventType":"AwsConsoleSignIn","recipientAccountId":"` + account + `"}`
	}
	return `{"eventVersion":"1.09","userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::` + account + `:user/alice","accountId":"` + account + `","userName":"alice"},` +
		`"eventTime":"` + ts + `","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"` + region + `","sourceIPAddress":"192.0.2.9",` +
		`"userAgent":"aws-cli/2.15","requestParameters":{},"responseElements":null,"eventID":"` + id + `","readOnly":true,"eventType":"AwsApiCall","recipientAccountId":"` + account + `"}`
}

func joinComma(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(x)
	}
	return b.String()
}
