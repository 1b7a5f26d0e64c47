package s3sqs

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Default values that SetDefaults fills in.
const (
	DefaultVisibilityTimeout = 5 * time.Minute
	DefaultWaitTime          = 20 * time.Second
	DefaultWorkers           = 4
	DefaultBatchRecords      = 1000
)

// Config is the `source.s3sqs` block of the config file.
type Config struct {
	// Queue is the SQS queue the bucket's notifications go to (S3 → SQS,
	// S3 → SNS → SQS or EventBridge → SQS), by URL
	// (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME) or ARN
	// (arn:aws:sqs:REGION:ACCOUNT:NAME). It must have a redrive policy:
	// objects that cannot be read go to its dead-letter queue.
	Queue string `yaml:"queue"`
	// Region is the AWS region of the queue; empty means the queue URL's
	// or ARN's, then the SDK's default chain. Buckets are read in their
	// own regions whatever this says.
	Region string `yaml:"region"`
	// VisibilityTimeout is how long a message stays hidden from the other
	// instances once received; while its object is read it is extended
	// by as much every third of it, so a crashed instance's message comes
	// back within one timeout.
	VisibilityTimeout time.Duration `yaml:"visibility_timeout"`
	// WaitTime is how long one ReceiveMessage call waits for a message
	// (SQS long polling, 0 to 20s).
	WaitTime time.Duration `yaml:"wait_time"`
	// Workers is how many objects are read at once.
	Workers int `yaml:"workers"`
	// BatchRecords is how many records of an object go to the pipeline in
	// one batch (one outbox transaction); a larger object is handed over
	// in several, and its message deleted after the last.
	BatchRecords int `yaml:"batch_records"`
}

// SetDefaults fills in the zero fields with their defaults.
func (c *Config) SetDefaults() {
	if c.VisibilityTimeout == 0 {
		c.VisibilityTimeout = DefaultVisibilityTimeout
	}
	if c.WaitTime == 0 {
		c.WaitTime = DefaultWaitTime
	}
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.BatchRecords == 0 {
		c.BatchRecords = DefaultBatchRecords
	}
	if c.Region == "" {
		c.Region = queueRegion(c.Queue)
	}
}

// Validate reports every problem with the configuration at once. Call
// SetDefaults first.
func (c *Config) Validate() error {
	var errs []error
	if _, err := parseQueue(c.Queue); err != nil {
		errs = append(errs, fmt.Errorf("queue: %w", err))
	}
	// SQS accepts whole seconds from 0 to 12 hours.
	if c.VisibilityTimeout < 3*time.Second || c.VisibilityTimeout > 12*time.Hour || c.VisibilityTimeout%time.Second != 0 {
		errs = append(errs, fmt.Errorf("visibility_timeout: must be whole seconds from 3s to 12h, got %s", c.VisibilityTimeout))
	}
	if c.WaitTime < 0 || c.WaitTime > 20*time.Second || c.WaitTime%time.Second != 0 {
		errs = append(errs, fmt.Errorf("wait_time: must be whole seconds from 0s to 20s, got %s", c.WaitTime))
	}
	if c.Workers < 1 || c.Workers > 100 {
		errs = append(errs, fmt.Errorf("workers: must be between 1 and 100, got %d", c.Workers))
	}
	if c.BatchRecords < 1 || c.BatchRecords > 100000 {
		errs = append(errs, fmt.Errorf("batch_records: must be between 1 and 100000, got %d", c.BatchRecords))
	}
	return errors.Join(errs...)
}

// queueRef is a queue as the configuration names it.
type queueRef struct {
	URL           string // set when named by URL
	Name, Account string // set when named by ARN
	Region        string // from the URL's host or the ARN, when it says
}

// parseQueue reads a queue URL or ARN.
func parseQueue(s string) (queueRef, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return queueRef{}, errors.New("a queue URL or ARN is required")
	}
	if strings.HasPrefix(s, "arn:") {
		parts := strings.Split(s, ":")
		if len(parts) != 6 || parts[2] != "sqs" || parts[3] == "" || parts[4] == "" || parts[5] == "" {
			return queueRef{}, fmt.Errorf("%q is not an SQS queue ARN (arn:aws:sqs:REGION:ACCOUNT:NAME)", s)
		}
		return queueRef{Name: parts[5], Account: parts[4], Region: parts[3]}, nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.Count(strings.Trim(u.Path, "/"), "/") != 1 {
		return queueRef{}, fmt.Errorf("%q is neither an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME) nor an ARN", s)
	}
	q := queueRef{URL: s}
	// sqs.REGION.amazonaws.com, or the legacy REGION.queue.amazonaws.com.
	host := strings.Split(u.Hostname(), ".")
	switch {
	case len(host) >= 3 && host[0] == "sqs":
		q.Region = host[1]
	case len(host) >= 3 && host[1] == "queue":
		q.Region = host[0]
	}
	return q, nil
}

// queueRegion is the region a queue URL or ARN names, or "".
func queueRegion(s string) string {
	q, err := parseQueue(s)
	if err != nil {
		return ""
	}
	return q.Region
}

// queueName returns the queue's name for logs and metrics.
func (q queueRef) name() string {
	if q.Name != "" {
		return q.Name
	}
	return q.URL[strings.LastIndexByte(q.URL, '/')+1:]
}
