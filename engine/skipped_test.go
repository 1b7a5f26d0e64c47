package engine

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/decide"
	"github.com/trailwatch/trailwatch/engine/outbox"
	"github.com/trailwatch/trailwatch/engine/source"
	"github.com/trailwatch/trailwatch/rules"
)

// outboxAndNoRules opens an outbox in a temporary directory (closed at
// the end of the test) and loads an empty rule set, for a Service under
// test.
func outboxAndNoRules(t *testing.T) (*outbox.Outbox, *rules.Set) {
	t.Helper()
	ob, err := outbox.Open(filepath.Join(t.TempDir(), outbox.FileName), outbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	set, err := rules.LoadFiles([]rules.File{{Name: "r.yaml", Data: []byte("rules: []\n")}})
	if err != nil {
		t.Fatal(err)
	}
	return ob, set
}

// TestSkippedRecordsAreReportedWithTheirPlace: a record that is not a
// CloudTrail record is logged with where it was read — log group, stream
// and log event id (CloudWatch Logs, and Kinesis's subscription payloads),
// object and line or position (S3 notifications) — and why, at most
// SkipReportsPerMinute a minute; the rest of the minute's are counted and
// their number comes with the next minute's first report.
func TestSkippedRecordsAreReportedWithTheirPlace(t *testing.T) {
	c := newQuietClock()
	ob, set := outboxAndNoRules(t)
	var logs bytes.Buffer
	svc := &Service{
		Decider: decide.New(decide.NewEvaluator(set, decide.EvaluatorOptions{}), nil, decide.Options{}),
		Outbox:  ob,
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
		Now:     c.Now,
	}
	handle := func(recs ...source.Record) {
		t.Helper()
		if err := svc.HandleBatch(context.Background(), source.Batch{Origin: "trail", Records: recs}); err != nil {
			t.Fatal(err)
		}
	}
	good := source.Record{Data: []byte(`{"eventVersion":"1.08","eventTime":"2024-05-01T08:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","eventID":"e1","awsRegion":"us-east-1"}`)}
	handle(
		source.Record{Data: []byte("hello from PutLogEvents"), Place: source.Place{LogGroup: "trail", LogStream: "s-1", EventID: "38001234567890"}},
		good,
		source.Record{Data: []byte(`{"not":"cloudtrail"}`), Place: source.Place{Object: "s3://bucket/AWSLogs/x.json.gz", Index: 7}},
		source.Record{Data: []byte("{"), Place: source.Place{Object: "s3://bucket/AWSLogs/y.jsonl", Line: 3}},
	)
	out := logs.String()
	for _, want := range []string{
		"log_group=trail log_stream=s-1 log_event_id=38001234567890",
		"object=s3://bucket/AWSLogs/x.json.gz record=7",
		"object=s3://bucket/AWSLogs/y.jsonl line=3",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the log does not name the place %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "skipped a log event"); n != 3 {
		t.Errorf("%d reports, want 3 (one per skipped record):\n%s", n, out)
	}

	// A flood: only the rest of this minute's allowance is shown.
	logs.Reset()
	var flood []source.Record
	for i := range 50 {
		flood = append(flood, source.Record{Data: []byte("junk"), Place: source.Place{LogGroup: "trail", LogStream: "s-1", EventID: fmt.Sprint(i)}})
	}
	handle(flood...)
	if n := strings.Count(logs.String(), "skipped a log event"); n != SkipReportsPerMinute-3 {
		t.Errorf("%d reports in the first minute, want %d:\n%s", n, SkipReportsPerMinute-3, logs.String())
	}
	logs.Reset()
	c.Advance(time.Minute)
	handle(source.Record{Data: []byte("junk"), Place: source.Place{LogGroup: "trail", LogStream: "s-2", EventID: "next"}})
	out = logs.String()
	if !strings.Contains(out, "count="+fmt.Sprint(50-(SkipReportsPerMinute-3))) || !strings.Contains(out, "log_stream=s-2 log_event_id=next") {
		t.Errorf("the next minute's report does not give the hidden count (%d) and the new place:\n%s", 50-(SkipReportsPerMinute-3), out)
	}
}
