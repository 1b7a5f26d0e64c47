package cloudwatch

import (
	"context"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"golang.org/x/time/rate"

	"github.com/trailwatch/trailwatch/engine/source"
)

// The pipeline's view of the source: Source implements source.Source, and
// Open builds it for the source registry (type "cloudwatch").
var (
	_ source.Source  = (*Source)(nil)
	_ source.Origins = (*Source)(nil)
)

// Run is Read for the pipeline: each batch is one log group's page of new
// records, with each record's log group, stream and CloudWatch event id,
// and the newest timestamp.
func (s *Source) Run(ctx context.Context, handle source.Handler) error {
	return s.Read(ctx, func(ctx context.Context, batch []Record) error {
		b := source.Batch{Records: make([]source.Record, len(batch))}
		for i := range batch {
			r := &batch[i]
			b.Origin = r.LogGroup
			b.Records[i] = source.Record{Data: r.Message, Place: source.Place{
				LogGroup: r.LogGroup, LogStream: r.LogStream, EventID: r.CWEventID,
			}}
			if r.Timestamp.After(b.Newest) {
				b.Newest = r.Timestamp
			}
		}
		return handle(ctx, b)
	})
}

// Origins are the configured log groups (for the dead man's switch).
func (s *Source) Origins() []string { return append([]string(nil), s.cfg.LogGroups...) }

// Open builds the source of a prepared `source.cloudwatch` block for the
// registry: a client from the SDK's default chain (see NewClient), a
// limiter of 5 requests/s shared by its log groups, its state in
// deps.StateDir/cloudwatch, and readiness from each log group's last
// successful FilterLogEvents.
func Open(ctx context.Context, cfg *Config, deps source.Deps) (source.Source, error) {
	client, err := NewClient(ctx, *cfg, deps.Logger)
	if err != nil {
		return nil, err
	}
	// A read may wait out throttling backoff (up to 30s): allow for it
	// before calling the source not ready.
	polls, err := deps.PollTracker(cfg.LogGroups, max(3*cfg.PollInterval, 45*time.Second))
	if err != nil {
		return nil, err
	}
	src, err := New(pollObserver{API: client, polled: polls.Polled}, *cfg, Options{
		Logger:     deps.Logger,
		Limiter:    rate.NewLimiter(5, 5),
		Registerer: deps.Registerer,
		StateDir:   filepath.Join(deps.StateDir, "cloudwatch"),
	})
	if err != nil {
		return nil, err
	}
	return source.WithReady(src, polls), nil
}

// pollObserver reports each successful FilterLogEvents call (the start-up
// check's too), so that readiness can tell whether the source is reading.
type pollObserver struct {
	API
	polled func(group string)
}

func (p pollObserver) FilterLogEvents(ctx context.Context, in *cloudwatchlogs.FilterLogEventsInput, optFns ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.FilterLogEventsOutput, error) {
	out, err := p.API.FilterLogEvents(ctx, in, optFns...)
	if err == nil {
		g := aws.ToString(in.LogGroupName)
		if g == "" {
			g = aws.ToString(in.LogGroupIdentifier)
		}
		p.polled(g)
	}
	return out, err
}
