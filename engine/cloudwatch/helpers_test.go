package cloudwatch

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/trailwatch/trailwatch/internal/testservers"
)

// motoEnv is a moto server with a client pointed at it.
type motoEnv struct {
	moto   *testservers.Moto
	client *cloudwatchlogs.Client
}

func startMoto(t *testing.T) *motoEnv {
	t.Helper()
	m := testservers.StartMoto(t)
	return &motoEnv{moto: m, client: clientFor(t, m.Endpoint)}
}

// clientFor is a real SDK client for the endpoint (moto or a faultproxy).
func clientFor(t testing.TB, endpoint string) *cloudwatchlogs.Client {
	t.Helper()
	c, err := NewClient(context.Background(), Config{Region: "us-east-1"}, nil)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	return cloudwatchlogs.New(c.Options(), func(o *cloudwatchlogs.Options) { o.BaseEndpoint = aws.String(endpoint) })
}

func createGroup(t testing.TB, c *cloudwatchlogs.Client, group string, streams ...string) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.CreateLogGroup(ctx, &cloudwatchlogs.CreateLogGroupInput{LogGroupName: aws.String(group)}); err != nil {
		t.Fatalf("create log group %s: %v", group, err)
	}
	for _, s := range streams {
		if _, err := c.CreateLogStream(ctx, &cloudwatchlogs.CreateLogStreamInput{LogGroupName: aws.String(group), LogStreamName: aws.String(s)}); err != nil {
			t.Fatalf("create log stream %s: %v", s, err)
		}
	}
}

// event is a log event to write.
type event struct {
	ts  time.Time
	msg string
}

// ct is a small CloudTrail record with the given eventID.
func ct(id string, ts time.Time) event {
	return event{ts: ts, msg: fmt.Sprintf(`{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","userName":"alice"},"eventTime":%q,"eventSource":"iam.amazonaws.com","eventName":"CreateUser","awsRegion":"us-east-1","sourceIPAddress":"192.0.2.1","userAgent":"aws-cli","eventID":%q,"eventType":"AwsApiCall","recipientAccountId":"123456789012"}`,
		ts.UTC().Format(time.RFC3339), id)}
}

// put writes events to a stream in batches of up to 10,000, sorted by
// timestamp as PutLogEvents requires.
func put(t testing.TB, c *cloudwatchlogs.Client, group, stream string, evs ...event) {
	t.Helper()
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].ts.Before(evs[j].ts) })
	for len(evs) > 0 {
		n := min(len(evs), 10000)
		in := &cloudwatchlogs.PutLogEventsInput{LogGroupName: aws.String(group), LogStreamName: aws.String(stream)}
		for _, e := range evs[:n] {
			in.LogEvents = append(in.LogEvents, types.InputLogEvent{Timestamp: aws.Int64(e.ts.UnixMilli()), Message: aws.String(e.msg)})
		}
		out, err := c.PutLogEvents(context.Background(), in)
		if err != nil {
			t.Fatalf("put log events: %v", err)
		}
		if out.RejectedLogEventsInfo != nil {
			t.Fatalf("put log events: some rejected: %+v", *out.RejectedLogEventsInfo)
		}
		evs = evs[n:]
	}
}

// collector is a handler that remembers every record it accepted.
type collector struct {
	mu      sync.Mutex
	counts  map[string]int // dedup key -> times handed on
	order   []string
	batches int
	fail    func(batch []Record) error
}

func newCollector() *collector { return &collector{counts: map[string]int{}} }

func (c *collector) handle(_ context.Context, batch []Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		if err := c.fail(batch); err != nil {
			return err
		}
	}
	c.batches++
	for _, r := range batch {
		k := dedupKey(string(r.Message), r.CWEventID)
		c.counts[k]++
		c.order = append(c.order, k)
	}
	return nil
}

func (c *collector) has(keys ...string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		if c.counts[k] == 0 {
			return false
		}
	}
	return true
}

func (c *collector) count(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[k]
}

func (c *collector) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.counts)
}

// repeated lists the keys handed on more than once.
func (c *collector) repeated() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k, n := range c.counts {
		if n > 1 {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		<-tick.C
	}
}

// running is a Source running in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func start(t testing.TB, s *Source, handle func(context.Context, []Record) error) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Read(ctx, handle) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// stop cancels the Source and returns Run's result.
func (r *running) stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of cancellation")
		return nil
	}
}

// wait returns Run's result once it ends on its own.
func (r *running) wait(t testing.TB) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s")
		return nil
	}
}

// testOptions are fast options for tests against moto.
func testOptions(t testing.TB, stateDir string, reg prometheus.Registerer) Options {
	return Options{
		StateDir:      stateDir,
		Limiter:       rate.NewLimiter(rate.Inf, 1),
		Registerer:    reg,
		SweepInterval: 200 * time.Millisecond,
		MinBackoff:    time.Millisecond,
		MaxBackoff:    20 * time.Millisecond,
	}
}

func testConfig(start string, groups ...string) Config {
	return Config{LogGroups: groups, PollInterval: 20 * time.Millisecond, Lookback: 15 * time.Minute, Start: start}
}

func newSource(t testing.TB, api API, cfg Config, opts Options) *Source {
	t.Helper()
	s, err := New(api, cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func metric(t testing.TB, reg *prometheus.Registry, name, group string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "log_group" && l.GetValue() == group {
					if m.Counter != nil {
						return m.Counter.GetValue()
					}
					return m.Gauge.GetValue()
				}
			}
		}
	}
	return 0
}

var errCrash = errors.New("simulated crash")
