package s3sqs

import (
	"strings"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/source"
)

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		want    []string // parts of the error; none: valid
		region  string
		queueID string
	}{
		{"queue URL, defaults", Config{Queue: "https://sqs.eu-west-1.amazonaws.com/111122223333/trail-events"}, nil, "eu-west-1", "trail-events"},
		{"legacy queue URL", Config{Queue: "https://eu-west-2.queue.amazonaws.com/111122223333/q"}, nil, "eu-west-2", "q"},
		{"queue ARN, region given", Config{Queue: "arn:aws:sqs:us-east-1:111122223333:q", Region: "us-west-2"}, nil, "us-west-2", "q"},
		{"an emulator's URL", Config{Queue: "http://127.0.0.1:4566/000000000000/q"}, nil, "", "q"},
		{"no queue", Config{}, []string{"queue: a queue URL or ARN is required"}, "", ""},
		{"not a queue", Config{Queue: "trail-events"}, []string{`queue: "trail-events" is neither an SQS queue URL`}, "", ""},
		{"another ARN", Config{Queue: "arn:aws:sns:us-east-1:111122223333:t"}, []string{"is not an SQS queue ARN"}, "", ""},
		{"every bad number at once", Config{
			Queue: "arn:aws:sqs:us-east-1:1:q", VisibilityTimeout: 1500 * time.Millisecond, WaitTime: 21 * time.Second, Workers: 101, BatchRecords: -1,
		}, []string{"visibility_timeout: must be whole seconds from 3s to 12h, got 1.5s", "wait_time: must be whole seconds from 0s to 20s, got 21s",
			"workers: must be between 1 and 100, got 101", "batch_records: must be between 1 and 100000, got -1"}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg
			err := source.Prepare(&c)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if c.Region != tt.region || c.VisibilityTimeout != DefaultVisibilityTimeout || c.WaitTime != DefaultWaitTime ||
					c.Workers != DefaultWorkers || c.BatchRecords != DefaultBatchRecords {
					t.Errorf("after defaults: %+v", c)
				}
				if ref, _ := parseQueue(c.Queue); ref.name() != tt.queueID {
					t.Errorf("queue name %q, want %q", ref.name(), tt.queueID)
				}
				return
			}
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Prepare = %v, want it to say %q", err, w)
				}
			}
		})
	}
}
