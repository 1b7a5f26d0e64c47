package kinesis

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Default values that SetDefaults fills in.
const (
	DefaultStart         = "latest"
	DefaultPollInterval  = time.Second
	DefaultLeaseDuration = 30 * time.Second
	DefaultMaxRecords    = 1000
)

// Config is the `source.kinesis` block of the config file.
type Config struct {
	// Stream is the Kinesis data stream a CloudWatch Logs subscription
	// filter writes to, by name or ARN.
	Stream string `yaml:"stream"`
	// Region is the AWS region of the stream and the lease table; empty
	// means the SDK's default chain.
	Region string `yaml:"region"`
	// LeaseTable is the DynamoDB table holding one lease and checkpoint
	// per shard, shared by every instance reading the stream (partition
	// key shard_id, a string). It must not be the shared_state table.
	LeaseTable string `yaml:"lease_table"`
	// Start is where a shard that has no checkpoint yet is first read:
	// "latest" (records that arrived from a minute before its lease was
	// created) or "trim_horizon" (the oldest record the stream still
	// holds). Shards created by resharding are always read from their
	// start.
	Start string `yaml:"start"`
	// PollInterval is how long a shard's reader waits after a read that
	// found nothing new (Kinesis allows 5 reads per second per shard,
	// shared by every consumer of the stream).
	PollInterval time.Duration `yaml:"poll_interval"`
	// LeaseDuration is how long a lease holds without renewal: how soon
	// the shards of an instance that died are taken over. Leases are
	// renewed every third of it.
	LeaseDuration time.Duration `yaml:"lease_duration"`
	// MaxRecords bounds the records of one read (GetRecords Limit,
	// 1 to 10000).
	MaxRecords int32 `yaml:"max_records"`
	// WorkerID names this instance in the lease table; empty means the
	// host name and a random suffix. Two running instances must never
	// share one.
	WorkerID string `yaml:"worker_id"`
}

// SetDefaults fills in the zero fields with their defaults.
func (c *Config) SetDefaults() {
	if c.Start == "" {
		c.Start = DefaultStart
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = DefaultLeaseDuration
	}
	if c.MaxRecords == 0 {
		c.MaxRecords = DefaultMaxRecords
	}
}

// Validate reports every problem with the configuration at once. Call
// SetDefaults first.
func (c *Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.Stream) == "" {
		errs = append(errs, errors.New("stream: a stream name or ARN is required"))
	} else if strings.HasPrefix(c.Stream, "arn:") && !strings.Contains(c.Stream, ":stream/") {
		errs = append(errs, errors.New("stream: an ARN must be a Kinesis stream ARN (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME)"))
	}
	if strings.TrimSpace(c.LeaseTable) == "" {
		errs = append(errs, errors.New("lease_table: a DynamoDB table name is required"))
	}
	switch strings.ToLower(c.Start) {
	case "latest", "trim_horizon":
	default:
		errs = append(errs, fmt.Errorf("start: must be latest or trim_horizon, got %q", c.Start))
	}
	if c.PollInterval <= 0 {
		errs = append(errs, fmt.Errorf("poll_interval: must be positive, got %s", c.PollInterval))
	}
	if c.LeaseDuration < 3*time.Second {
		errs = append(errs, fmt.Errorf("lease_duration: must be at least 3s, got %s", c.LeaseDuration))
	}
	if c.MaxRecords < 1 || c.MaxRecords > 10000 {
		errs = append(errs, fmt.Errorf("max_records: must be between 1 and 10000, got %d", c.MaxRecords))
	}
	return errors.Join(errs...)
}

// startCheckpoint is the checkpoint a new shard without parents gets,
// its lease being created at now.
func (c *Config) startCheckpoint(now time.Time) string {
	if strings.EqualFold(c.Start, "trim_horizon") {
		return CheckpointTrimHorizon
	}
	// Not LATEST: a reader that died before it handled a record would
	// leave the next one to start at the then latest record, skipping what
	// came in between. A time fixed when the lease is made does not move;
	// the margin covers clock skew between this host and Kinesis.
	return AtTimestamp(now.Add(-latestMargin))
}

// latestMargin is how far before the lease's creation `start: latest`
// begins reading.
const latestMargin = time.Minute
