package kinesis_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/kinesis"
	"github.com/trailwatch/trailwatch/engine/source"
)

// runSource runs src in the background; stop cancels it and returns Run's
// error.
func runSource(t *testing.T, src *kinesis.Source, handle source.Handler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, handle) }()
	stopped := false
	var err error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			err = <-done
		}
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func fastOptions(clock *fakeClock) kinesis.Options {
	return kinesis.Options{Now: clock.Now, RefreshInterval: 30 * time.Millisecond, Logger: testLogger(nil, "")}
}

func TestSourceEndToEnd(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	recs := corpus(t, 60)
	first, second := recs[:40], recs[40:]
	stream, table := e.stream(t, 2)
	cfg := kinesis.Config{Stream: stream, LeaseTable: table, Start: "trim_horizon", PollInterval: 20 * time.Millisecond, WorkerID: "worker-a"}
	clock := newClock()

	e.put(t, stream, first, 7)

	var got collector
	src, err := kinesis.New(e.kin, e.ddb, cfg, fastOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	stop := runSource(t, src, func(_ context.Context, b source.Batch) error {
		if b.Origin != "aws-cloudtrail-logs" || b.Newest.IsZero() {
			t.Errorf("batch = %+v, want origin and newest set", b)
		}
		for _, r := range b.Records {
			if p := r.Place; p.LogGroup != "aws-cloudtrail-logs" || p.LogStream == "" || p.EventID == "" {
				t.Errorf("record place = %+v, want the log group, stream and log event id", p)
			}
		}
		got.add(b.Records)
		return nil
	})
	waitFor(t, "every record of the first run", func() bool { return got.has(first) })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	leases, err := kinesis.NewLeases(e.ddb, table, "reader", time.Minute, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := leases.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 {
		t.Fatalf("lease table has %d leases, want 2 (one per shard)", len(ls))
	}
	for _, l := range ls {
		if l.Owner != "" {
			t.Errorf("shard %s: owner %q after a clean stop, want released", l.ShardID, l.Owner)
		}
		if l.Checkpoint == kinesis.CheckpointTrimHorizon {
			t.Errorf("shard %s: checkpoint still %s after its records were handled", l.ShardID, l.Checkpoint)
		}
	}

	// A restart (another worker id even) resumes after the checkpoints.
	e.put(t, stream, second, 5)
	var again collector
	cfg.WorkerID = "worker-b"
	src2, err := kinesis.New(e.kin, e.ddb, cfg, fastOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	stop2 := runSource(t, src2, func(_ context.Context, b source.Batch) error {
		again.add(b.Records)
		return nil
	})
	waitFor(t, "the records written after the restart", func() bool { return again.has(second) })
	if err := stop2(); err != nil {
		t.Fatalf("Run after restart: %v", err)
	}
	for _, r := range first {
		if n := again.count(r); n != 0 {
			t.Errorf("record %s read again after the restart (%d times)", eventID(r), n)
		}
	}
	for _, r := range recs {
		if n := got.count(r) + again.count(r); n != 1 {
			t.Errorf("record %s handled %d times, want 1", eventID(r), n)
		}
	}
}

func TestSourceHandlerErrorKeepsCheckpoint(t *testing.T) {
	e := newEnv(t)
	recs := corpus(t, 10)
	stream, table := e.stream(t, 1)
	cfg := kinesis.Config{Stream: stream, LeaseTable: table, Start: "trim_horizon", PollInterval: 20 * time.Millisecond, WorkerID: "worker-a"}
	clock := newClock()
	e.put(t, stream, recs, 10)

	src, err := kinesis.New(e.kin, e.ddb, cfg, fastOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("outbox full")
	err = src.Run(context.Background(), func(context.Context, source.Batch) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Run error = %v, want the handler's", err)
	}
	// The batch was not checkpointed: the next run reads it again.
	var got collector
	stop := runSource(t, mustNew(t, e, cfg, clock), func(_ context.Context, b source.Batch) error {
		got.add(b.Records)
		return nil
	})
	waitFor(t, "the failed batch read again", func() bool { return got.has(recs) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func mustNew(t *testing.T, e *env, cfg kinesis.Config, clock *fakeClock) *kinesis.Source {
	t.Helper()
	src, err := kinesis.New(e.kin, e.ddb, cfg, fastOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// TestSourceStartLatest starts a reader at "latest" that stops before any
// record arrives: the next reader must still read the records that
// arrived in between (a plain LATEST iterator would skip them).
func TestSourceStartLatest(t *testing.T) {
	e := newEnv(t)
	recs := corpus(t, 10)
	stream, table := e.stream(t, 1)
	cfg := kinesis.Config{Stream: stream, LeaseTable: table, Start: "latest", PollInterval: 20 * time.Millisecond}
	opts := kinesis.Options{RefreshInterval: 30 * time.Millisecond, Logger: testLogger(t, "")} // the real clock: Kinesis stamps arrivals with it

	first, err := kinesis.New(e.kin, e.ddb, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	var none collector
	stop := runSource(t, first, func(_ context.Context, b source.Batch) error { none.add(b.Records); return nil })
	leases, err := kinesis.NewLeases(e.ddb, table, "observer", time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first reader to create and take the lease", func() bool {
		ls, err := leases.List(context.Background())
		return err == nil && len(ls) == 1 && ls[0].Owner != ""
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	e.put(t, stream, recs, 5)
	second, err := kinesis.New(e.kin, e.ddb, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	var got collector
	stop = runSource(t, second, func(_ context.Context, b source.Batch) error { got.add(b.Records); return nil })
	waitFor(t, "the records written while no reader ran", func() bool { return got.has(recs) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
