package kinesis_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/kinesis"
)

func TestLeases(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const dur = 30 * time.Second

	// open returns workers a and b on a fresh table with one shard lease.
	open := func(t *testing.T) (a, b *kinesis.Leases, clock *fakeClock) {
		t.Helper()
		table := fmt.Sprintf("leases-%d", seq.Add(1))
		if err := kinesis.CreateLeaseTable(ctx, e.ddb, table); err != nil {
			t.Fatal(err)
		}
		clock = newClock()
		var err error
		if a, err = kinesis.NewLeases(e.ddb, table, "worker-a", dur, clock.Now); err != nil {
			t.Fatal(err)
		}
		if b, err = kinesis.NewLeases(e.ddb, table, "worker-b", dur, clock.Now); err != nil {
			t.Fatal(err)
		}
		if err := a.Ensure(ctx, "shard-0", nil, kinesis.CheckpointTrimHorizon); err != nil {
			t.Fatal(err)
		}
		return a, b, clock
	}
	one := func(t *testing.T, m *kinesis.Leases) kinesis.Lease {
		t.Helper()
		ls, err := m.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ls) != 1 {
			t.Fatalf("got %d leases, want 1", len(ls))
		}
		return ls[0]
	}
	lost := func(t *testing.T, what string, err error) {
		t.Helper()
		if !errors.Is(err, kinesis.ErrLeaseLost) {
			t.Fatalf("%s: error = %v, want ErrLeaseLost", what, err)
		}
	}

	tests := []struct {
		name string
		run  func(t *testing.T, a, b *kinesis.Leases, clock *fakeClock)
	}{
		{"ensure keeps an existing lease and its checkpoint", func(t *testing.T, a, b *kinesis.Leases, _ *fakeClock) {
			l, err := a.Take(ctx, one(t, a))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.Checkpoint(ctx, l, "42"); err != nil {
				t.Fatal(err)
			}
			if err := b.Ensure(ctx, "shard-0", nil, kinesis.CheckpointLatest); err != nil {
				t.Fatal(err)
			}
			got := one(t, b)
			if got.Checkpoint != "42" || got.Owner != "worker-a" {
				t.Errorf("lease = %+v, want checkpoint 42 owned by worker-a", got)
			}
		}},
		{"of two workers taking a free lease one wins", func(t *testing.T, a, b *kinesis.Leases, _ *fakeClock) {
			free := one(t, a)
			if !free.Expired(time.Now()) {
				t.Fatalf("new lease %+v is not free", free)
			}
			if _, err := a.Take(ctx, free); err != nil {
				t.Fatal(err)
			}
			_, err := b.Take(ctx, free)
			lost(t, "second take", err)
		}},
		{"a held lease expires unless renewed", func(t *testing.T, a, b *kinesis.Leases, clock *fakeClock) {
			l, err := a.Take(ctx, one(t, a))
			if err != nil {
				t.Fatal(err)
			}
			clock.Advance(dur - time.Second)
			if one(t, b).Expired(clock.Now()) {
				t.Fatal("lease expired before its duration")
			}
			if l, err = a.Renew(ctx, l); err != nil {
				t.Fatal(err)
			}
			clock.Advance(dur - time.Second)
			if one(t, b).Expired(clock.Now()) {
				t.Fatal("renewed lease expired before its new end")
			}
			clock.Advance(2 * time.Second)
			seen := one(t, b)
			if !seen.Expired(clock.Now()) {
				t.Fatal("lease not expired after its duration without renewal")
			}
			if _, err := b.Take(ctx, seen); err != nil {
				t.Fatalf("take expired lease: %v", err)
			}
			_, err = a.Renew(ctx, l)
			lost(t, "renew by the old owner", err)
			_, err = a.Checkpoint(ctx, l, "7")
			lost(t, "checkpoint by the old owner", err)
			lost(t, "release by the old owner", a.Release(ctx, l))
			if got := one(t, b); got.Owner != "worker-b" || got.Checkpoint != kinesis.CheckpointTrimHorizon {
				t.Errorf("lease = %+v, want owner worker-b and the checkpoint untouched", got)
			}
		}},
		{"a checkpoint renews the lease and survives the owner", func(t *testing.T, a, b *kinesis.Leases, clock *fakeClock) {
			l, err := a.Take(ctx, one(t, a))
			if err != nil {
				t.Fatal(err)
			}
			clock.Advance(dur - time.Second)
			if l, err = a.Checkpoint(ctx, l, "100"); err != nil {
				t.Fatal(err)
			}
			clock.Advance(dur - time.Second)
			if one(t, b).Expired(clock.Now()) {
				t.Fatal("checkpoint did not extend the lease")
			}
			clock.Advance(2 * time.Second)
			nl, err := b.Take(ctx, one(t, b))
			if err != nil {
				t.Fatal(err)
			}
			if nl.Checkpoint != "100" {
				t.Errorf("new owner's checkpoint = %q, want 100", nl.Checkpoint)
			}
		}},
		{"a released lease is free at once", func(t *testing.T, a, b *kinesis.Leases, clock *fakeClock) {
			l, err := a.Take(ctx, one(t, a))
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Release(ctx, l); err != nil {
				t.Fatal(err)
			}
			seen := one(t, b)
			if !seen.Expired(clock.Now()) || seen.Owner != "" {
				t.Fatalf("released lease = %+v, want free", seen)
			}
			if _, err := b.Take(ctx, seen); err != nil {
				t.Fatal(err)
			}
		}},
		{"a write whose answer was lost is recognised as our own", func(t *testing.T, a, _ *kinesis.Leases, _ *fakeClock) {
			l, err := a.Take(ctx, one(t, a))
			if err != nil {
				t.Fatal(err)
			}
			// The renewal went through but we kept the old lease value.
			if _, err := a.Renew(ctx, l); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Checkpoint(ctx, l, "5"); err != nil {
				t.Fatalf("checkpoint with a stale counter of our own lease: %v", err)
			}
			if err := a.Release(ctx, l); err != nil {
				t.Fatalf("release with a stale counter of our own lease: %v", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b, clock := open(t)
			tc.run(t, a, b, clock)
		})
	}
}
