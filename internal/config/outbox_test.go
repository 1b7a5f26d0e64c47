package config

import (
	"strings"
	"testing"
	"time"
)

// TestSharedStateLeaseCoversASend: a claim must outlast the send it
// covers, so a lease shorter than outbox.send_timeout plus the margin is
// refused, at the lease's line.
func TestSharedStateLeaseCoversASend(t *testing.T) {
	const base = `source:
  kinesis:
    stream: cloudtrail
    lease_table: leases
state_dir: /var/lib/trailwatch
shared_state:
  dynamodb_table: deliveries
`
	tests := []struct {
		name, extra string
		want        string // a problem, or "" for none
	}{
		{"defaults: 60s lease, 30s send", "", ""},
		{"a lease for the default send", "  lease: 40s\n", ""},
		{"too short for the default send", "  lease: 5s\n",
			"c.yaml:8:10: shared_state: lease 5s must exceed outbox.send_timeout (30s) by at least 10s"},
		{"just short of the margin", "  lease: 39s\n", "use lease: 40s or more"},
		{"a short send allows a short lease", "  lease: 11s\noutbox:\n  send_timeout: 1s\n", ""},
		{"a long send needs a longer lease than the default", "outbox:\n  send_timeout: 55s\n",
			"shared_state: lease 1m0s must exceed outbox.send_timeout (55s)"},
		{"a negative send timeout", "outbox:\n  send_timeout: -1s\n", "outbox: send_timeout must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("c.yaml", []byte(base+tt.extra), env(nil))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Parse: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Parse error = %v, want one containing %q", err, tt.want)
			}
			if err == nil && cfg.Outbox.SendTimeoutOrDefault() <= 0 {
				t.Errorf("send timeout = %s", cfg.Outbox.SendTimeoutOrDefault())
			}
		})
	}
	cfg, err := Parse("c.yaml", []byte(base+"outbox:\n  send_timeout: 2s\n"), env(nil))
	if err != nil || cfg.Outbox.SendTimeoutOrDefault() != 2*time.Second {
		t.Errorf("send_timeout: 2s = %v, %v", cfg.Outbox.SendTimeoutOrDefault(), err)
	}
}
