package kinesis_test

import (
	"log/slog"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	kds "github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/trailwatch/trailwatch/engine/source"
	"github.com/trailwatch/trailwatch/internal/kinesistest"
)

// The rig lives in internal/kinesistest (the pipeline's tests in engine
// use it too); these are its names in this package's tests.

type fakeClock = kinesistest.Clock

func newClock() *fakeClock { return kinesistest.NewClock() }

// env is a moto server with clients for it.
type env struct {
	kin *kds.Client
	ddb *dynamodb.Client
	rig *kinesistest.Env
}

func newEnv(t *testing.T) *env {
	t.Helper()
	rig := kinesistest.NewEnv(t)
	return &env{kin: rig.Kinesis, ddb: rig.DynamoDB, rig: rig}
}

func (e *env) stream(t *testing.T, shards int32) (stream, table string) {
	t.Helper()
	return e.rig.Stream(t, shards)
}

func (e *env) put(t *testing.T, stream string, records [][]byte, per int) {
	t.Helper()
	e.rig.Put(t, stream, records, per)
}

var seq = &kinesistest.Seq

func payloads(t *testing.T, records [][]byte, per int) [][]byte {
	t.Helper()
	return kinesistest.Payloads(t, records, per)
}

func corpus(t *testing.T, n int) [][]byte {
	t.Helper()
	return kinesistest.Corpus(t, n)
}

func eventID(rec []byte) string { return kinesistest.EventID(rec) }

// collector gathers the eventIDs of handled records.
type collector struct{ c kinesistest.Collector }

func (c *collector) add(recs []source.Record) { c.c.Add(recs) }
func (c *collector) has(ids [][]byte) bool    { return c.c.Has(ids) }
func (c *collector) count(rec []byte) int     { return c.c.Count(rec) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	kinesistest.WaitFor(t, what, cond)
}

// testLogger logs warnings to stderr under -v, and nothing otherwise.
func testLogger(_ *testing.T, worker string) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("process", worker)
	}
	return slog.New(slog.DiscardHandler)
}
