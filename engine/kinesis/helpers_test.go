package kinesis_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	kds "github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/trailwatch/trailwatch/engine/cwlogs"
	"github.com/trailwatch/trailwatch/engine/kinesis"
	"github.com/trailwatch/trailwatch/engine/source"
	"github.com/trailwatch/trailwatch/internal/testservers"
)

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// env is a moto server with clients for it.
type env struct {
	kin *kds.Client
	ddb *dynamodb.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	m := testservers.StartMoto(t)
	t.Setenv("AWS_ENDPOINT_URL", m.Endpoint)
	kin, ddb, err := kinesis.NewClients(context.Background(), kinesis.Config{Region: "us-east-1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &env{kin: kin, ddb: ddb}
}

var seq atomic.Int64

// stream creates a stream of n shards and a lease table, and returns
// their names.
func (e *env) stream(t *testing.T, shards int32) (stream, table string) {
	t.Helper()
	ctx := context.Background()
	i := seq.Add(1)
	stream, table = fmt.Sprintf("trail-%d", i), fmt.Sprintf("trailwatch-leases-%d", i)
	if _, err := e.kin.CreateStream(ctx, &kds.CreateStreamInput{StreamName: aws.String(stream), ShardCount: aws.Int32(shards)}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	w := kds.NewStreamExistsWaiter(e.kin)
	if err := w.Wait(ctx, &kds.DescribeStreamInput{StreamName: aws.String(stream)}, time.Minute); err != nil {
		t.Fatalf("wait for stream: %v", err)
	}
	if err := kinesis.CreateLeaseTable(ctx, e.ddb, table); err != nil {
		t.Fatal(err)
	}
	return stream, table
}

// put writes records as subscription payloads of per log events each,
// spread over the shards by partition key.
func (e *env) put(t *testing.T, stream string, records [][]byte, per int) {
	t.Helper()
	for i, raw := range payloads(t, records, per) {
		if _, err := e.kin.PutRecord(context.Background(), &kds.PutRecordInput{
			StreamName: aws.String(stream), Data: raw, PartitionKey: aws.String(fmt.Sprintf("key-%d", i)),
		}); err != nil {
			t.Fatalf("put record: %v", err)
		}
	}
}

// payloads packs records into gzip'd subscription payloads of per log
// events each, as a subscription filter writes them to Kinesis.
func payloads(t *testing.T, records [][]byte, per int) [][]byte {
	t.Helper()
	var out [][]byte
	for i := 0; i < len(records); i += per {
		chunk := records[i:min(i+per, len(records))]
		d := events.CloudwatchLogsData{
			MessageType: cwlogs.MessageTypeData, Owner: "123456789012",
			LogGroup: "aws-cloudtrail-logs", LogStream: "123456789012_CloudTrail_us-east-1",
			SubscriptionFilters: []string{"trailwatch"},
		}
		for j, r := range chunk {
			d.LogEvents = append(d.LogEvents, events.CloudwatchLogsLogEvent{
				ID: fmt.Sprint(i + j), Timestamp: time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC).UnixMilli() + int64(i+j), Message: string(r),
			})
		}
		enc, err := cwlogs.Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, raw)
	}
	return out
}

// corpus returns n CloudTrail records with distinct eventIDs from the
// shared corpus, skipping the test when it is absent.
func corpus(t *testing.T, n int) [][]byte {
	t.Helper()
	path := filepath.Join("..", "..", "..", "shared", "corpus", "invictus-ir_aws_dataset.jsonl")
	if p := os.Getenv("TRAILWATCH_CORPUS"); p != "" {
		path = filepath.Join(p, "invictus-ir_aws_dataset.jsonl")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Skipf("CloudTrail corpus not available (%v): set TRAILWATCH_CORPUS to /work/shared/corpus", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	seen := map[string]bool{}
	var out [][]byte
	for sc.Scan() && len(out) < n {
		id := eventID(sc.Bytes())
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, append([]byte(nil), sc.Bytes()...))
	}
	if len(out) < n {
		t.Fatalf("corpus has only %d records with distinct eventIDs, want %d", len(out), n)
	}
	return out
}

func eventID(rec []byte) string {
	var v struct {
		EventID string `json:"eventID"`
	}
	_ = json.Unmarshal(rec, &v)
	return v.EventID
}

// collector gathers the eventIDs of handled records.
type collector struct {
	mu   sync.Mutex
	seen map[string]int
}

func (c *collector) add(recs []source.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]int{}
	}
	for _, r := range recs {
		c.seen[eventID(r.Data)]++
	}
}

func (c *collector) has(ids [][]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range ids {
		if c.seen[eventID(r)] == 0 {
			return false
		}
	}
	return true
}

func (c *collector) count(rec []byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[eventID(rec)]
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}
