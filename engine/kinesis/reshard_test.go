package kinesis_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	kds "github.com/aws/aws-sdk-go-v2/service/kinesis"
	kdstypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/trailwatch/trailwatch/engine/kinesis"
	"github.com/trailwatch/trailwatch/engine/source"
)

// splitStream is a hand-written Kinesis fake of a stream whose one shard
// was split: the parent is closed and holds the records written before
// the split, the two children those written after. (moto's SplitShard
// moves the parent's records and keeps routing new ones to the closed
// parent, which never ends: it cannot show resharding.)
type splitStream struct {
	mu     sync.Mutex
	shards []kdstypes.Shard
	data   map[string][][]byte
	closed map[string]bool
}

func newSplitStream(t *testing.T, before, after [][]byte) *splitStream {
	f := &splitStream{data: map[string][][]byte{}, closed: map[string]bool{"parent": true}}
	f.shards = []kdstypes.Shard{
		{ShardId: aws.String("parent")},
		{ShardId: aws.String("child-1"), ParentShardId: aws.String("parent")},
		{ShardId: aws.String("child-2"), ParentShardId: aws.String("parent")},
	}
	f.data["parent"] = payloads(t, before, 3)
	for i, p := range payloads(t, after, 3) {
		id := fmt.Sprintf("child-%d", i%2+1)
		f.data[id] = append(f.data[id], p)
	}
	return f
}

func (f *splitStream) ListShards(context.Context, *kds.ListShardsInput, ...func(*kds.Options)) (*kds.ListShardsOutput, error) {
	return &kds.ListShardsOutput{Shards: f.shards}, nil
}

func (f *splitStream) DescribeStreamSummary(context.Context, *kds.DescribeStreamSummaryInput, ...func(*kds.Options)) (*kds.DescribeStreamSummaryOutput, error) {
	return &kds.DescribeStreamSummaryOutput{}, nil
}

func (f *splitStream) GetShardIterator(_ context.Context, in *kds.GetShardIteratorInput, _ ...func(*kds.Options)) (*kds.GetShardIteratorOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := aws.ToString(in.ShardId)
	pos := 0
	switch in.ShardIteratorType {
	case kdstypes.ShardIteratorTypeTrimHorizon:
	case kdstypes.ShardIteratorTypeLatest, kdstypes.ShardIteratorTypeAtTimestamp:
		// Every record here arrived before the lease existed.
		pos = len(f.data[id])
	case kdstypes.ShardIteratorTypeAfterSequenceNumber:
		n, err := strconv.Atoi(aws.ToString(in.StartingSequenceNumber))
		if err != nil {
			return nil, err
		}
		pos = n + 1
	default:
		return nil, fmt.Errorf("iterator type %s not faked", in.ShardIteratorType)
	}
	return &kds.GetShardIteratorOutput{ShardIterator: aws.String(fmt.Sprintf("%s|%d", id, pos))}, nil
}

func (f *splitStream) GetRecords(_ context.Context, in *kds.GetRecordsInput, _ ...func(*kds.Options)) (*kds.GetRecordsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, p, _ := strings.Cut(aws.ToString(in.ShardIterator), "|")
	pos, _ := strconv.Atoi(p)
	data := f.data[id]
	end := min(pos+int(aws.ToInt32(in.Limit)), len(data))
	out := &kds.GetRecordsOutput{MillisBehindLatest: aws.Int64(0)}
	for i := pos; i < end; i++ {
		out.Records = append(out.Records, kdstypes.Record{Data: data[i], SequenceNumber: aws.String(strconv.Itoa(i))})
	}
	if !(f.closed[id] && end == len(data)) {
		out.NextShardIterator = aws.String(fmt.Sprintf("%s|%d", id, end))
	}
	return out, nil
}

// TestSourceAfterSplit checks that the children of a split shard are read
// only after the parent was read to its end, from their first record
// whatever `start` says, and that the parent is then marked finished.
func TestSourceAfterSplit(t *testing.T) {
	e := newEnv(t)
	recs := corpus(t, 30)
	before, after := recs[:15], recs[15:]
	tests := []struct {
		start string
		want  [][]byte
	}{
		{"trim_horizon", recs},
		{"latest", after}, // the parent is read from its end, the children from their start
	}
	for _, tc := range tests {
		t.Run("start "+tc.start, func(t *testing.T) {
			_, table := e.stream(t, 1)
			checkSplit(t, e, table, tc.start, before, after, tc.want)
		})
	}
}

func checkSplit(t *testing.T, e *env, table, start string, before, after, want [][]byte) {
	ctx := context.Background()
	fake := newSplitStream(t, before, after)
	var mu sync.Mutex
	var order []string // eventIDs in the order handled
	var got collector
	cfg := kinesis.Config{Stream: "split", LeaseTable: table, Start: start, PollInterval: 20 * time.Millisecond, MaxRecords: 2, WorkerID: "worker-a"}
	src, err := kinesis.New(fake, e.ddb, cfg, fastOptions(newClock()))
	if err != nil {
		t.Fatal(err)
	}
	stop := runSource(t, src, func(_ context.Context, b source.Batch) error {
		mu.Lock()
		for _, r := range b.Records {
			order = append(order, eventID(r.Data))
		}
		mu.Unlock()
		got.add(b.Records)
		return nil
	})
	waitFor(t, "the records of the parent and the children", func() bool { return got.has(want) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(order) != len(want) {
		t.Errorf("handled %d records, want %d", len(order), len(want))
	}
	pos := map[string]int{}
	for i, id := range order {
		pos[id] = i
	}
	lastParent := -1
	for _, r := range before {
		if p, ok := pos[eventID(r)]; ok {
			lastParent = max(lastParent, p)
		}
	}
	for _, r := range after {
		if p := pos[eventID(r)]; p < lastParent {
			t.Errorf("record %s of a child shard handled at %d, before the parent's last record at %d", eventID(r), p, lastParent)
		}
	}
	for _, r := range want {
		if n := got.count(r); n != 1 {
			t.Errorf("record %s handled %d times, want 1", eventID(r), n)
		}
	}

	leases, err := kinesis.NewLeases(e.ddb, table, "observer", time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := leases.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if l.ShardID == "parent" {
			if !l.Finished() {
				t.Errorf("parent checkpoint = %q, want %s", l.Checkpoint, kinesis.CheckpointShardEnd)
			}
			continue
		}
		if len(l.Parents) != 1 || l.Parents[0] != "parent" || strings.HasPrefix(l.Checkpoint, "AT_") || l.Checkpoint == kinesis.CheckpointTrimHorizon {
			t.Errorf("child lease = %+v, want the parent recorded and a sequence number checkpoint", l)
		}
	}
	if len(ls) != 3 {
		t.Errorf("got %d leases, want 3", len(ls))
	}
}
