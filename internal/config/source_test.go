package config

import (
	"strings"
	"testing"
	"time"
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
`, "source: give one of cloudwatch and kinesis, not both"},
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
				if k := cfg.Source.Kinesis; k != nil && k.LeaseDuration != 30*time.Second {
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
