package config

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/kinesis"
	"github.com/trailwatch/trailwatch/engine/source"
)

func TestKinesisSourceAndSharedState(t *testing.T) {
	const notifiersYAML = `
notifiers:
  - name: ops
    type: sns
    topic_arn: arn:aws:sns:eu-west-1:111122223333:trailwatch
`
	tests := []struct {
		name    string
		yaml    string
		wantErr string // empty: valid
	}{
		{"kinesis with shared state", `source:
  kinesis:
    stream: trailwatch-cloudtrail
    lease_table: trailwatch-leases
    start: trim_horizon
shared_state:
  dynamodb_table: trailwatch-deliveries
  lease: 90s
state_dir: /var/lib/trailwatch
`, ""},
		{"no source is allowed at load (the lambda bundle has none)", `state_dir: /tmp/x
`, ""},
		{"both sources", `source:
  cloudwatch:
    log_groups: [trail]
  kinesis:
    stream: trail
    lease_table: leases
`, "), not 2 (cloudwatch, kinesis)"},
		{"kinesis without lease table", `source:
  kinesis:
    stream: trail
`, "source.kinesis: lease_table: a DynamoDB table name is required"},
		{"kinesis unknown key", `source:
  kinesis:
    stream: trail
    lease_table: leases
    shards: 4
`, `unknown key "shards" in source.kinesis`},
		{"shared state without a table", `shared_state:
  region: eu-west-1
`, "shared_state: dynamodb_table is required"},
		{"shared state on the lease table", `source:
  kinesis:
    stream: trail
    lease_table: same
shared_state:
  dynamodb_table: same
`, "shared_state: dynamodb_table must not be the lease table of source.kinesis"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("c.yaml", []byte(tc.yaml+notifiersYAML), env(nil))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if k := SourceAs[kinesis.Config](cfg.Source); k != nil && k.LeaseDuration != 30*time.Second {
					t.Errorf("kinesis lease_duration = %s, want the 30s default", k.LeaseDuration)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// fakeSourceConfig is the block of a source type registered by the test,
// as a new source package would.
type fakeSourceConfig struct {
	Queue string `yaml:"queue"`
	Batch int    `yaml:"batch"`
}

func (c *fakeSourceConfig) prepare() error {
	if c.Batch == 0 {
		c.Batch = 10
	}
	if c.Queue == "" {
		return errors.New("queue: a queue is required")
	}
	return nil
}

// TestRegisteredSourceType checks that a source type needs nothing in the
// configuration loader but its one registration: its block is decoded
// strictly, checked, and reported with its place.
func TestRegisteredSourceType(t *testing.T) {
	source.Register("fake-queue", (*fakeSourceConfig).prepare,
		func(context.Context, *fakeSourceConfig, source.Deps) (source.Source, error) { return nil, nil })
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{"decoded and defaulted", "source:\n  fake-queue:\n    queue: q1\n", ""},
		{"unknown key", "source:\n  fake-queue:\n    queue: q1\n    shards: 2\n", `c.yaml:4:5: unknown key "shards" in source.fake-queue`},
		{"its own check", "source:\n  fake-queue:\n    batch: 5\n", "c.yaml:3:5: source.fake-queue: queue: a queue is required"},
		{"unknown type", "source:\n  fake-queu:\n    queue: q1\n", `c.yaml:2:3: source: unknown type "fake-queu" (one of cloudwatch, fake-queue, files, kinesis`},
		{"two types", "source:\n  fake-queue: {queue: q1}\n  kinesis: {stream: s, lease_table: l}\n", "not 2 (fake-queue, kinesis)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("c.yaml", []byte(tc.yaml+"state_dir: /tmp/x\n"), env(nil))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := SourceAs[fakeSourceConfig](cfg.Source)
			if cfg.Source.Type != "fake-queue" || got == nil || got.Queue != "q1" || got.Batch != 10 {
				t.Errorf("source = %+v (%+v), want fake-queue q1 with batch 10", cfg.Source, got)
			}
			if SourceAs[kinesis.Config](cfg.Source) != nil {
				t.Error("SourceAs of another type is not nil")
			}
		})
	}
}
