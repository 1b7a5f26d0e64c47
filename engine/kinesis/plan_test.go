package kinesis

import (
	"slices"
	"testing"
	"time"
)

func TestPlan(t *testing.T) {
	now := time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC)
	live := now.Add(time.Minute)
	gone := now.Add(-time.Second)
	free := func(id string, parents ...string) Lease { return Lease{ShardID: id, Parents: parents, Checkpoint: "1"} }
	held := func(id, owner string, until time.Time) Lease {
		return Lease{ShardID: id, Owner: owner, ExpiresAt: until, Checkpoint: "1"}
	}
	done := func(id string) Lease { return Lease{ShardID: id, Checkpoint: CheckpointShardEnd} }

	tests := []struct {
		name      string
		leases    []Lease
		wantTake  []string
		wantSteal string
	}{
		{"alone, take every free lease", []Lease{free("s0"), free("s1"), free("s2")}, []string{"s0", "s1", "s2"}, ""},
		{"take no more than a fair share", []Lease{free("s0"), free("s1"), free("s2"), held("s3", "b", live)}, []string{"s0", "s1"}, ""},
		{"take expired leases", []Lease{held("s0", "b", gone), held("s1", "b", gone)}, []string{"s0", "s1"}, ""},
		{"holding a fair share, take nothing", []Lease{held("s0", "me", live), held("s1", "b", live)}, nil, ""},
		{"a child waits for its parent", []Lease{held("s0", "b", live), free("s1", "s0")}, nil, ""},
		{"a child of finished parents is taken", []Lease{done("s0"), done("s1"), free("s2", "s0", "s1")}, []string{"s2"}, ""},
		{"a parent missing from the table counts as finished", []Lease{free("s2", "s0")}, []string{"s2"}, ""},
		{"finished shards are not counted", []Lease{done("s0"), done("s1"), held("s2", "b", live), free("s3")}, []string{"s3"}, ""},
		{"steal one from a worker above its share", []Lease{held("s0", "b", live), held("s1", "b", live), held("s2", "b", live)}, nil, "s2"},
		{"do not steal from a worker at its share", []Lease{held("s0", "b", live), held("s1", "b", live), held("s2", "me", live)}, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			take, steal := plan(tc.leases, "me", now)
			var got []string
			for _, l := range take {
				got = append(got, l.ShardID)
			}
			if !slices.Equal(got, tc.wantTake) {
				t.Errorf("take = %v, want %v", got, tc.wantTake)
			}
			gotSteal := ""
			if steal != nil {
				gotSteal = steal.ShardID
			}
			if gotSteal != tc.wantSteal {
				t.Errorf("steal = %q, want %q", gotSteal, tc.wantSteal)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{Stream: "trail", LeaseTable: "leases"}, true},
		{"stream arn", Config{Stream: "arn:aws:kinesis:us-east-1:123456789012:stream/trail", LeaseTable: "leases"}, true},
		{"no stream", Config{LeaseTable: "leases"}, false},
		{"not a stream arn", Config{Stream: "arn:aws:sqs:us-east-1:123456789012:q", LeaseTable: "leases"}, false},
		{"no lease table", Config{Stream: "trail"}, false},
		{"bad start", Config{Stream: "trail", LeaseTable: "leases", Start: "beginning"}, false},
		{"short lease", Config{Stream: "trail", LeaseTable: "leases", LeaseDuration: time.Second}, false},
		{"too many records", Config{Stream: "trail", LeaseTable: "leases", MaxRecords: 20000}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.SetDefaults()
			err := tc.cfg.Validate()
			if (err == nil) != tc.ok {
				t.Errorf("Validate() = %v, want ok %v", err, tc.ok)
			}
		})
	}
}
