package cloudwatch

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"golang.org/x/time/rate"
)

// simEvent is a log event in the simulated log group.
type simEvent struct {
	stream, id, msg string
	ts, ingest      int64 // ms
}

// simAPI is a hand-written CloudWatch Logs with a virtual clock: events
// become visible at their ingestion time; every other page is empty while
// a token remains; events within a page come in random order.
type simAPI struct {
	mu         sync.Mutex
	now        time.Time
	events     []simEvent
	rng        *rand.Rand
	calls      int
	identifier string // the LogGroupIdentifier of the last call
	name       string
}

func (a *simAPI) Now() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.now
}

// After advances the virtual clock at once: the simulation runs as fast as
// the source can poll.
func (a *simAPI) After(d time.Duration) <-chan time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.now = a.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- a.now
	return ch
}

func (a *simAPI) DescribeLogGroups(_ context.Context, in *cloudwatchlogs.DescribeLogGroupsInput, _ ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.DescribeLogGroupsOutput, error) {
	return &cloudwatchlogs.DescribeLogGroupsOutput{LogGroups: []types.LogGroup{{LogGroupName: aws.String(a.name), CreationTime: aws.Int64(a.Now().UnixMilli())}}}, nil
}

func (a *simAPI) FilterLogEvents(_ context.Context, in *cloudwatchlogs.FilterLogEventsInput, _ ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.FilterLogEventsOutput, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	a.identifier = aws.ToString(in.LogGroupIdentifier)
	nowMS := a.now.UnixMilli()
	var match []simEvent
	for _, e := range a.events {
		if e.ingest > nowMS || e.ts < aws.ToInt64(in.StartTime) || (in.EndTime != nil && e.ts > *in.EndTime) {
			continue
		}
		match = append(match, e)
	}
	tok := aws.ToString(in.NextToken)
	if tok == "" {
		// An empty first page with a token, as FilterLogEvents may send.
		return &cloudwatchlogs.FilterLogEventsOutput{NextToken: aws.String("0")}, nil
	}
	off, err := strconv.Atoi(tok)
	if err != nil {
		return nil, fmt.Errorf("bad token %q", tok)
	}
	end := min(off+int(aws.ToInt32(in.Limit)), len(match))
	page := append([]simEvent(nil), match[min(off, len(match)):end]...)
	a.rng.Shuffle(len(page), func(i, j int) { page[i], page[j] = page[j], page[i] })
	out := &cloudwatchlogs.FilterLogEventsOutput{}
	for _, e := range page {
		out.Events = append(out.Events, types.FilteredLogEvent{
			EventId: aws.String(e.id), LogStreamName: aws.String(e.stream), Message: aws.String(e.msg),
			Timestamp: aws.Int64(e.ts), IngestionTime: aws.Int64(e.ingest),
		})
	}
	if end < len(match) {
		out.NextToken = aws.String(strconv.Itoa(end))
	}
	return out, nil
}

// TestSimulatedDelays runs the source for ninety virtual minutes against
// records ingested up to 20 minutes late, and checks the guarantee: every
// record ingested within the lookback is handed on exactly once; the dedup
// window stays bounded.
func TestSimulatedDelays(t *testing.T) {
	const arn = "arn:aws:logs:us-east-1:123456789012:log-group:trail"
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	api := &simAPI{now: t0, rng: rand.New(rand.NewPCG(1, 2)), name: "trail"}
	rng := rand.New(rand.NewPCG(3, 4))
	lookback := 15 * time.Minute
	within := map[string]bool{}
	n := 0
	for ts := t0.Add(time.Second); ts.Before(t0.Add(time.Hour)); ts = ts.Add(time.Duration(rng.IntN(4000)) * time.Millisecond) {
		// Mostly about 5 minutes late, some right at the lookback, some
		// beyond it.
		var delay time.Duration
		switch x := rng.IntN(100); {
		case x < 80:
			delay = time.Duration(rng.IntN(int(6 * time.Minute)))
		case x < 90:
			delay = lookback - time.Duration(rng.IntN(int(5*time.Second)))
		default:
			delay = time.Duration(rng.IntN(int(20 * time.Minute)))
		}
		id := fmt.Sprintf("ev-%06d", n)
		n++
		api.events = append(api.events, simEvent{
			stream: fmt.Sprintf("s%d", rng.IntN(3)), id: fmt.Sprintf("cw-%06d", n),
			msg: fmt.Sprintf(`{"eventID":%q}`, id), ts: ts.UnixMilli(), ingest: ts.Add(delay).UnixMilli(),
		})
		if delay <= lookback {
			within[id] = true
		}
	}
	// The same CloudTrail record delivered twice, to another stream.
	dup := api.events[100]
	dup.stream, dup.id = "s9", "cw-dup"
	api.events = append(api.events, dup)

	cfg := Config{LogGroups: []string{arn}, PollInterval: 5 * time.Second, Lookback: lookback, Start: "now"}
	// Virtual time: no real pacing.
	opts := Options{StateDir: t.TempDir(), Now: api.Now, After: api.After, PageLimit: 50, Limiter: rate.NewLimiter(rate.Inf, 1)}
	s := newSource(t, api, cfg, opts)
	col := newCollector()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	maxWindow := 0
	handle := func(ctx context.Context, batch []Record) error {
		for i := 1; i < len(batch); i++ {
			if batch[i].Timestamp.Before(batch[i-1].Timestamp) {
				t.Errorf("batch not in timestamp order at %d", i)
			}
		}
		maxWindow = max(maxWindow, len(s.groups[0].st.Seen))
		if api.Now().After(t0.Add(90 * time.Minute)) {
			cancel()
		}
		return col.handle(ctx, batch)
	}
	done := make(chan error, 1)
	go func() { done <- s.Read(ctx, handle) }()
	eventually(t, 50*time.Second, "ninety virtual minutes", func() bool { return api.Now().After(t0.Add(91 * time.Minute)) })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	missing := 0
	for id := range within {
		if col.count(id) == 0 {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d records ingested within the lookback were never handed on", missing, len(within))
	}
	if rep := col.repeated(); len(rep) > 0 {
		t.Errorf("%d records handed on more than once, e.g. %s", len(rep), rep[0])
	}
	if api.identifier != arn {
		t.Errorf("LogGroupIdentifier = %q, want the ARN %q", api.identifier, arn)
	}
	// About one record per 2 s: a window of lookback + sweep interval + tail
	// holds well under 1,000.
	if maxWindow > 1000 {
		t.Errorf("dedup window grew to %d entries", maxWindow)
	}
	t.Logf("%d records (%d within the lookback), %d handed on, %d FilterLogEvents calls, max window %d",
		len(api.events), len(within), col.distinct(), api.calls, maxWindow)
}
