package s3sqs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailwatch/trailwatch/engine/s3sqs"
	"github.com/trailwatch/trailwatch/engine/source"
	"github.com/trailwatch/trailwatch/internal/faultproxy"
	"github.com/trailwatch/trailwatch/internal/s3test"
)

// rig is a bucket whose notifications go to a queue with a dead-letter
// queue, and a source reading it.
type rig struct {
	*s3test.Rig
	t          *testing.T
	queue, dlq *s3test.Queue
	reg        *prometheus.Registry
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{Rig: s3test.Start(t), t: t, reg: prometheus.NewRegistry()}
	r.Bucket("trail")
	r.dlq = r.CreateQueue("trail-dlq", s3test.QueueOptions{})
	r.queue = r.CreateQueue("trail-events", s3test.QueueOptions{DeadLetter: r.dlq, MaxReceiveCount: 5})
	r.NotifyQueue("trail", "AWSLogs/", r.queue)
	return r
}

// source returns a source on the rig's queue with test-sized timings.
func (r *rig) source(cfg s3sqs.Config) *s3sqs.Source {
	r.t.Helper()
	return r.sourceWith(cfg, s3sqs.Options{})
}

// sourceWith is source with options (a registry, a logger and a short
// depth interval are filled in).
func (r *rig) sourceWith(cfg s3sqs.Config, opts s3sqs.Options) *s3sqs.Source {
	r.t.Helper()
	if cfg.Queue == "" {
		cfg.Queue = r.queue.URL
	}
	if cfg.VisibilityTimeout == 0 {
		cfg.VisibilityTimeout = 3 * time.Second
	}
	if cfg.WaitTime == 0 {
		cfg.WaitTime = time.Second
	}
	opts.Registerer, opts.DepthInterval = r.reg, 200*time.Millisecond
	opts.Logger = slog.New(slog.NewTextHandler(r.t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	src, err := s3sqs.New(r.SQS, r.S3, cfg, opts)
	if err != nil {
		r.t.Fatal(err)
	}
	return src
}

// key is a CloudTrail log file's key in the rig's bucket.
func key(region string, n int) string {
	return fmt.Sprintf("AWSLogs/111122223333/CloudTrail/%s/2024/05/01/111122223333_CloudTrail_%s_20240501T08%02dZ_f%d.json.gz", region, region, n%60, n)
}

// logFile is a gzipped log file of records ids.
func logFile(ids ...string) []byte {
	var recs []string
	for _, id := range ids {
		recs = append(recs, s3test.TrailRecord(id, "111122223333", "us-east-1", true, time.Now()))
	}
	return s3test.Gzip([]byte(`{"Records":[` + strings.Join(recs, ",") + `]}`))
}

// collector is a handle that records what it was given.
type collector struct {
	mu      sync.Mutex
	ids     []string
	batches []source.Batch
	// block, if set, is waited on before each batch is taken.
	block chan struct{}
	fail  error
}

func (c *collector) handle(ctx context.Context, b source.Batch) error {
	if c.block != nil {
		select {
		case <-c.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return c.fail
	}
	c.batches = append(c.batches, b)
	for _, r := range b.Records {
		var rec struct{ EventID string }
		json.Unmarshal(r.Data, &rec)
		c.ids = append(c.ids, rec.EventID)
	}
	return nil
}

func (c *collector) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := slices.Clone(c.ids)
	slices.Sort(out)
	return out
}

// running is a source's Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func run(t *testing.T, src *s3sqs.Source, c *collector) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- src.Run(ctx, c.handle) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
		return nil
	}
}

// eventually polls cond until it holds or fails the test after a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func (r *rig) metric(name string, labels ...string) float64 {
	r.t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.Metric {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.Label {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

// TestSourceReadsNotifiedObjects writes log files, a digest, an Insights
// file and a corrupt log file to a bucket whose notifications go to the
// queue: every record of the log files is handled, the others are
// skipped by the filter, the corrupt file's notification is moved to the
// dead-letter queue with the reason, and the queue ends empty.
func TestSourceReadsNotifiedObjects(t *testing.T) {
	r := newRig(t)
	c := &collector{}
	src := r.source(s3sqs.Config{BatchRecords: 2})
	run(t, src, c)

	var want []string
	for i := range 4 {
		ids := []string{fmt.Sprintf("e%d-a", i), fmt.Sprintf("e%d-b", i), fmt.Sprintf("e%d-c", i)}
		want = append(want, ids...)
		r.Put("trail", key("us-east-1", i), logFile(ids...))
	}
	r.Put("trail", "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2024/05/01/111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20240501T080000Z.json.gz", logFile("digest"))
	r.Put("trail", "AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2024/05/01/111122223333_CloudTrail-Insight_us-east-1_20240501T0800Z_i.json.gz", logFile("insight"))
	// A truncated file (not even gzipped): its first record is read, the
	// rest is not.
	r.Put("trail", key("eu-west-1", 9), []byte(`{"Records":[`+s3test.TrailRecord("corrupt-1", "111122223333", "eu-west-1", true, time.Now())+`,{"eventID":`))
	want = append(want, "corrupt-1")
	slices.Sort(want)

	eventually(t, "every record and the dead-lettered file", func() bool {
		return len(c.got()) >= len(want) && r.metric("trailwatch_s3sqs_messages_total", "outcome", "dead_lettered") == 1
	})
	if got := c.got(); !slices.Equal(got, want) {
		t.Errorf("records handled:\n%v\nwant:\n%v", got, want)
	}
	dead := r.Receive(r.dlq, time.Minute)
	if len(dead) != 1 {
		t.Fatalf("dead-letter queue holds %d messages, want 1", len(dead))
	}
	why := aws.ToString(dead[0].MessageAttributes["trailwatch-error"].StringValue)
	if !strings.Contains(why, key("eu-west-1", 9)) || !strings.Contains(why, "malformed log file") {
		t.Errorf("trailwatch-error = %q, want the object and what is wrong with it", why)
	}
	if !strings.Contains(aws.ToString(dead[0].Body), "111122223333_CloudTrail_eu-west-1") {
		t.Errorf("the dead letter's body is not the original notification: %s", aws.ToString(dead[0].Body))
	}
	eventually(t, "the queue to be empty", func() bool {
		v, f := r.Depth(r.queue)
		return v == 0 && f == 0
	})
	for _, tt := range []struct {
		metric string
		labels []string
		want   float64
	}{
		{"trailwatch_s3sqs_messages_total", []string{"outcome", "done"}, 4},
		{"trailwatch_s3sqs_messages_total", []string{"outcome", "test"}, 1},
		{"trailwatch_s3sqs_messages_total", []string{"outcome", "ignored"}, 2},
		{"trailwatch_s3sqs_objects_total", []string{"outcome", "read"}, 4},
		{"trailwatch_s3sqs_objects_total", []string{"outcome", "unreadable"}, 1},
		{"trailwatch_s3sqs_objects_total", []string{"outcome", "skipped_digest"}, 1},
		{"trailwatch_s3sqs_objects_total", []string{"outcome", "skipped_insight"}, 1},
		{"trailwatch_s3sqs_records_total", nil, 13},
	} {
		if got := r.metric(tt.metric, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.metric, tt.labels, got, tt.want)
		}
	}
	// Batches of at most batch_records, each of one object, each record
	// with its place in it.
	for _, b := range c.batches {
		if len(b.Records) > 2 || !strings.HasPrefix(b.Origin, "s3://trail/AWSLogs/") {
			t.Errorf("batch of %d records from %s", len(b.Records), b.Origin)
		}
		for _, r := range b.Records {
			if r.Place.Object != b.Origin || r.Place.Index == 0 {
				t.Errorf("a record of %s placed at %s", b.Origin, r.Place)
			}
		}
	}
	if lag := r.metric("trailwatch_s3sqs_lag_seconds"); lag <= 0 || lag > 60 {
		t.Errorf("lag = %vs, want a few seconds", lag)
	}
	eventually(t, "the dead-letter queue depth metric", func() bool {
		return r.metric("trailwatch_s3sqs_queue_messages", "queue", "dead_letter", "state", "in_flight") == 1
	})
	if err := src.Check(context.Background()); err != nil {
		t.Error(err)
	}
}

// TestSourceNotificationPaths reads notifications that came through SNS
// (wrapped and raw) and EventBridge.
func TestSourceNotificationPaths(t *testing.T) {
	r := s3test.Start(t)
	r.Bucket("trail")
	dlq := r.CreateQueue("dlq", s3test.QueueOptions{})
	q := r.CreateQueue("events", s3test.QueueOptions{DeadLetter: dlq})
	r.NotifyTopic("trail", "AWSLogs/", q, false)
	c := &collector{}
	src, err := s3sqs.New(r.SQS, r.S3, s3sqs.Config{Queue: q.URL, VisibilityTimeout: 3 * time.Second, WaitTime: time.Second}, s3sqs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	run(t, src, c)
	r.Put("trail", key("us-east-1", 1), logFile("via-sns"))
	// What EventBridge sends (moto's own has a numeric time).
	r.Put("trail", key("us-east-1", 2), logFile("via-eventbridge"))
	r.Send(q, s3test.EventBridgeEvent("trail", key("us-east-1", 2), 100, "etag", time.Now()))
	// S3's own record shape, with the userIdentity and sequencer moto
	// leaves out, delivered raw.
	r.Put("trail", key("us-east-1", 3), logFile("via-raw"))
	r.Send(q, s3test.S3Event("trail", key("us-east-1", 3), 100, "etag", time.Now()))
	// Every object is also announced through SNS: each record comes at
	// least once.
	want := []string{"via-eventbridge", "via-raw", "via-sns"}
	eventually(t, "the three records", func() bool { return slices.Equal(slices.Compact(c.got()), want) })
}

// TestSourceHoldsAMessageWhileReading blocks the pipeline on an object for
// longer than the visibility timeout: the message stays hidden from
// another consumer all along, the source says it is alive although its
// one worker receives nothing meanwhile, and the message is deleted once
// the batch is taken.
func TestSourceHoldsAMessageWhileReading(t *testing.T) {
	r := newRig(t)
	c := &collector{block: make(chan struct{})}
	var alive atomic.Int64
	run(t, r.sourceWith(s3sqs.Config{Workers: 1}, s3sqs.Options{Alive: func() { alive.Add(1) }}), c)
	r.Delete(r.queue, r.Receive(r.queue, time.Minute)) // the test event, out of the way
	r.Put("trail", key("us-east-1", 1), logFile("slow"))
	eventually(t, "the first visibility extension", func() bool {
		return r.metric("trailwatch_s3sqs_visibility_extensions_total") >= 1
	})
	since := alive.Load()
	eventually(t, "two more visibility extensions (a third of the timeout each)", func() bool {
		return r.metric("trailwatch_s3sqs_visibility_extensions_total") >= 3
	})
	if n := alive.Load() - since; n < 2 {
		t.Errorf("the source said it was alive %d times during two extensions, its one worker busy, want at least 2", n)
	}
	if msgs := r.Receive(r.queue, time.Second); len(msgs) != 0 {
		t.Fatalf("another consumer received %d messages while the object was being read", len(msgs))
	}
	close(c.block)
	eventually(t, "the record", func() bool { return len(c.got()) == 1 })
	eventually(t, "the message to be deleted", func() bool {
		v, f := r.Depth(r.queue)
		return v+f == 0
	})
}

// TestSourceStops checks what stopping and a failing pipeline leave
// behind: a message whose object was not finished is visible again at
// once after a stop, and is not deleted when the pipeline fails.
func TestSourceStops(t *testing.T) {
	r := newRig(t)
	r.Delete(r.queue, r.Receive(r.queue, time.Minute)) // the test event
	r.Put("trail", key("us-east-1", 1), logFile("x"))

	c := &collector{block: make(chan struct{})}
	run1 := run(t, r.source(s3sqs.Config{VisibilityTimeout: time.Hour}), c)
	eventually(t, "the message to be in flight", func() bool {
		_, f := r.Depth(r.queue)
		return f == 1
	})
	if err := run1.stop(t); err != nil {
		t.Fatalf("Run after a stop: %v, want nil", err)
	}
	if v, _ := r.Depth(r.queue); v != 1 {
		t.Errorf("after the stop %d messages are visible, want the unfinished one", v)
	}

	boom := errors.New("outbox full")
	c = &collector{fail: boom}
	r.reg = prometheus.NewRegistry()
	run2 := run(t, r.source(s3sqs.Config{VisibilityTimeout: time.Hour}), c)
	select {
	case err := <-run2.done:
		run2.done <- err
		if !errors.Is(err, boom) {
			t.Errorf("Run = %v, want the pipeline's error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return the pipeline's error")
	}
	if _, f := r.Depth(r.queue); f != 1 {
		t.Errorf("after the failure %d messages are in flight, want the one not deleted", f)
	}
}

// TestSourceRetriesWhatS3 fails to serve: GetObject fails (after the
// SDK's own retries) until S3 recovers; the message is tried again a few
// seconds later rather than dead-lettered, and its records arrive.
func TestSourceRetriesWhatS3Fails(t *testing.T) {
	r := newRig(t)
	var mu sync.Mutex
	down := true
	proxy := faultproxy.Start(t, r.Moto.Endpoint, func(req *http.Request, _ []byte, _ int) faultproxy.Fault {
		mu.Lock()
		defer mu.Unlock()
		if down && req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/trail/AWSLogs/") {
			return faultproxy.Status(http.StatusServiceUnavailable)
		}
		return faultproxy.Forward
	})
	t.Setenv("AWS_ENDPOINT_URL", proxy.URL)
	_, s3c, err := s3sqs.NewClients(context.Background(), s3sqs.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	src, err := s3sqs.New(r.SQS, s3c, s3sqs.Config{Queue: r.queue.URL, VisibilityTimeout: time.Hour, WaitTime: time.Second}, s3sqs.Options{Registerer: r.reg})
	if err != nil {
		t.Fatal(err)
	}
	run(t, src, c)
	r.Put("trail", key("us-east-1", 1), logFile("late"))
	eventually(t, "a failed read", func() bool { return r.metric("trailwatch_s3sqs_messages_total", "outcome", "retried") >= 1 })
	mu.Lock()
	down = false
	mu.Unlock()
	eventually(t, "the record once S3 answers", func() bool { return len(c.got()) == 1 })
	if n := r.metric("trailwatch_s3sqs_messages_total", "outcome", "dead_lettered"); n != 0 {
		t.Errorf("%v messages dead-lettered, want none", n)
	}
}

func TestSourceCheck(t *testing.T) {
	r := s3test.Start(t)
	lone := r.CreateQueue("lone", s3test.QueueOptions{})
	dlq := r.CreateQueue("dlq", s3test.QueueOptions{})
	withDLQ := r.CreateQueue("with-dlq", s3test.QueueOptions{DeadLetter: dlq})
	for _, tt := range []struct {
		name, queue, want string
	}{
		{"no redrive policy", lone.URL, "has no redrive policy"},
		{"by URL", withDLQ.URL, ""},
		{"by ARN", withDLQ.ARN, ""},
		{"missing", "arn:aws:sqs:us-east-1:123456789012:nope", "check sqs queue"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src, err := s3sqs.New(r.SQS, r.S3, s3sqs.Config{Queue: tt.queue}, s3sqs.Options{})
			if err != nil {
				t.Fatal(err)
			}
			err = src.Check(context.Background())
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Check = %v, want %q", err, tt.want)
			}
		})
	}
}
