// Package kinesistest is the Kinesis rig of the tests that read a stream
// (engine/kinesis's own, and the pipeline's in engine): moto with Kinesis
// and DynamoDB clients, streams with lease tables, CloudWatch Logs
// subscription payloads written to a stream as a subscription filter
// writes them, corpus records with distinct eventIDs, and a settable clock.
package kinesistest

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
	"github.com/trailwatch/trailwatch/internal/corpus"
	"github.com/trailwatch/trailwatch/internal/testservers"
)

// Clock is a settable clock, safe for concurrent use.
type Clock struct{ ns atomic.Int64 }

// NewClock returns a Clock at 2024-05-01 08:00 UTC.
func NewClock() *Clock {
	c := &Clock{}
	c.ns.Store(time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC).UnixNano())
	return c
}

// Now is the clock's time.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// Env is a moto server with Kinesis and DynamoDB clients for it.
type Env struct {
	Kinesis  *kds.Client
	DynamoDB *dynamodb.Client
}

// NewEnv starts moto (stopped when t ends) and points AWS_ENDPOINT_URL
// and the clients at it.
func NewEnv(t testing.TB) *Env {
	t.Helper()
	m := testservers.StartMoto(t)
	t.Setenv("AWS_ENDPOINT_URL", m.Endpoint)
	kin, ddb, err := kinesis.NewClients(context.Background(), kinesis.Config{Region: "us-east-1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Kinesis: kin, DynamoDB: ddb}
}

// Seq numbers the streams and tables of a test binary, so that no two
// tests share one.
var Seq atomic.Int64

// Stream creates a stream of n shards and a lease table, and returns
// their names.
func (e *Env) Stream(t testing.TB, shards int32) (stream, table string) {
	t.Helper()
	ctx := context.Background()
	i := Seq.Add(1)
	stream, table = fmt.Sprintf("trail-%d", i), fmt.Sprintf("trailwatch-leases-%d", i)
	if _, err := e.Kinesis.CreateStream(ctx, &kds.CreateStreamInput{StreamName: aws.String(stream), ShardCount: aws.Int32(shards)}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	w := kds.NewStreamExistsWaiter(e.Kinesis)
	if err := w.Wait(ctx, &kds.DescribeStreamInput{StreamName: aws.String(stream)}, time.Minute); err != nil {
		t.Fatalf("wait for stream: %v", err)
	}
	if err := kinesis.CreateLeaseTable(ctx, e.DynamoDB, table); err != nil {
		t.Fatal(err)
	}
	return stream, table
}

// Put writes records as subscription payloads of per log events each,
// spread over the shards by partition key.
func (e *Env) Put(t testing.TB, stream string, records [][]byte, per int) {
	t.Helper()
	for i, raw := range Payloads(t, records, per) {
		if _, err := e.Kinesis.PutRecord(context.Background(), &kds.PutRecordInput{
			StreamName: aws.String(stream), Data: raw, PartitionKey: aws.String(fmt.Sprintf("key-%d", i)),
		}); err != nil {
			t.Fatalf("put record: %v", err)
		}
	}
}

// Payloads packs records into gzip'd subscription payloads of per log
// events each, as a subscription filter writes them to Kinesis.
func Payloads(t testing.TB, records [][]byte, per int) [][]byte {
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

// Corpus returns n CloudTrail records with distinct eventIDs from the
// shared corpus (invictus-ir_aws_dataset.jsonl), skipping the test when
// the corpus is absent.
func Corpus(t testing.TB, n int) [][]byte {
	t.Helper()
	f, err := os.Open(filepath.Join(corpus.Dir(), "invictus-ir_aws_dataset.jsonl"))
	if err != nil {
		t.Skipf("CloudTrail corpus not available (%v): it is ../shared/corpus beside the repository, or set TRAILWATCH_CORPUS", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	seen := map[string]bool{}
	var out [][]byte
	for sc.Scan() && len(out) < n {
		id := EventID(sc.Bytes())
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

// EventID is the eventID of a raw record ("" if it has none).
func EventID(rec []byte) string {
	var v struct {
		EventID string `json:"eventID"`
	}
	_ = json.Unmarshal(rec, &v)
	return v.EventID
}

// Collector gathers the eventIDs of handled records; safe for concurrent
// use.
type Collector struct {
	mu   sync.Mutex
	seen map[string]int
}

// Add counts the records' eventIDs.
func (c *Collector) Add(recs []source.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]int{}
	}
	for _, r := range recs {
		c.seen[EventID(r.Data)]++
	}
}

// Has reports whether every record of ids was added.
func (c *Collector) Has(ids [][]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range ids {
		if c.seen[EventID(r)] == 0 {
			return false
		}
	}
	return true
}

// Count is how many times rec's eventID was added.
func (c *Collector) Count(rec []byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[EventID(rec)]
}

// WaitFor polls cond until it holds, failing t after 30 s.
func WaitFor(t testing.TB, what string, cond func() bool) {
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
