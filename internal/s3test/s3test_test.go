package s3test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// receiveAll receives from q until n messages arrived or a deadline.
func receiveAll(t *testing.T, r *Rig, q *Queue, n int) []sqstypes.Message {
	t.Helper()
	var got []sqstypes.Message
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		got = append(got, r.Receive(q, 30*time.Second)...)
	}
	return got
}

// TestMotoEmulates checks what the package comment says moto does, so
// that a moto upgrade that changes it is caught here rather than as a
// puzzling failure elsewhere.
func TestMotoEmulates(t *testing.T) {
	r := Start(t)
	r.Bucket("trail")
	q := r.CreateQueue("direct", QueueOptions{})
	r.NotifyQueue("trail", "AWSLogs/", q)

	t.Run("a test event when the notification is put", func(t *testing.T) {
		msgs := receiveAll(t, r, q, 1)
		if len(msgs) != 1 || !strings.Contains(aws.ToString(msgs[0].Body), `"s3:TestEvent"`) {
			t.Fatalf("messages = %v, want one s3:TestEvent", bodies(msgs))
		}
		r.Delete(q, msgs)
	})

	t.Run("S3 to SQS for keys under the prefix, key URL-encoded", func(t *testing.T) {
		r.Put("trail", "other/x.json.gz", []byte("x"))
		r.Put("trail", "AWSLogs/1/a b.json.gz", []byte("abc"))
		msgs := receiveAll(t, r, q, 1)
		if len(msgs) != 1 {
			t.Fatalf("messages = %v, want one", bodies(msgs))
		}
		var ev struct {
			Records []struct {
				EventName string
				S3        struct {
					Bucket struct{ Name string }
					Object struct {
						Key  string
						Size int64
					}
				}
			}
		}
		if err := json.Unmarshal([]byte(aws.ToString(msgs[0].Body)), &ev); err != nil {
			t.Fatal(err)
		}
		if len(ev.Records) != 1 || ev.Records[0].S3.Bucket.Name != "trail" || ev.Records[0].S3.Object.Key != "AWSLogs%2F1%2Fa+b.json.gz" || ev.Records[0].S3.Object.Size != 3 {
			t.Errorf("message = %s", aws.ToString(msgs[0].Body))
		}
		r.Delete(q, msgs)
	})

	t.Run("S3 to SNS to SQS, wrapped unless raw", func(t *testing.T) {
		r.Bucket("trail-sns")
		wrapped := r.CreateQueue("wrapped", QueueOptions{})
		topic := r.NotifyTopic("trail-sns", "", wrapped, false)
		r.Put("trail-sns", "AWSLogs/1/x.json.gz", []byte("x"))
		msgs := receiveAll(t, r, wrapped, 2)
		var sawEnvelope bool
		for _, m := range msgs {
			var env struct{ Type, TopicArn, Message string }
			if json.Unmarshal([]byte(aws.ToString(m.Body)), &env) == nil && env.Type == "Notification" && env.TopicArn == topic &&
				strings.Contains(env.Message, `"key": "AWSLogs%2F1%2Fx.json.gz"`) {
				sawEnvelope = true
			}
		}
		if !sawEnvelope {
			t.Errorf("messages = %v, want an SNS envelope holding the S3 event", bodies(msgs))
		}
	})

	t.Run("a visibility timeout extended holds the message", func(t *testing.T) {
		r.Send(q, "slow")
		msgs := r.Receive(q, time.Second)
		if len(msgs) != 1 {
			t.Fatalf("messages = %v", bodies(msgs))
		}
		if _, err := r.SQS.ChangeMessageVisibility(context.Background(), &sqs.ChangeMessageVisibilityInput{
			QueueUrl: aws.String(q.URL), ReceiptHandle: msgs[0].ReceiptHandle, VisibilityTimeout: 60,
		}); err != nil {
			t.Fatal(err)
		}
		// Received with a 1s timeout, extended to 60s: a long poll of
		// up to 2s finds nothing.
		out, err := r.SQS.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(q.URL), WaitTimeSeconds: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) != 0 {
			t.Errorf("received %v while its visibility was extended", bodies(out.Messages))
		}
		r.Delete(q, msgs)
	})

	t.Run("redrive after maxReceiveCount", func(t *testing.T) {
		dlq := r.CreateQueue("dlq", QueueOptions{})
		src := r.CreateQueue("src", QueueOptions{DeadLetter: dlq, MaxReceiveCount: 2})
		r.Send(src, "poison")
		for i := range 2 {
			msgs := receiveAll(t, r, src, 1)
			if len(msgs) != 1 {
				t.Fatalf("receive %d: %d messages", i+1, len(msgs))
			}
			// Visible again at once.
			if _, err := r.SQS.ChangeMessageVisibility(context.Background(), &sqs.ChangeMessageVisibilityInput{
				QueueUrl: aws.String(src.URL), ReceiptHandle: msgs[0].ReceiptHandle, VisibilityTimeout: 0,
			}); err != nil {
				t.Fatal(err)
			}
		}
		if msgs := r.Receive(src, time.Second); len(msgs) != 0 {
			t.Errorf("a third receive got %v, want nothing (moved)", bodies(msgs))
		}
		if msgs := receiveAll(t, r, dlq, 1); len(msgs) != 1 || aws.ToString(msgs[0].Body) != "poison" {
			t.Errorf("dead-letter queue holds %v, want the poison message", bodies(msgs))
		}
	})
}

func bodies(msgs []sqstypes.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, aws.ToString(m.Body))
	}
	return out
}
