package s3sqs

import (
	"context"
	"time"

	"github.com/trailwatch/trailwatch/engine/source"
)

// The pipeline's view of the source: Source implements source.Source, and
// Open builds it for the source registry (type "s3sqs").
var _ source.Source = (*Source)(nil)

// AWSRegion is the queue's region: shared_state's table is in it unless
// shared_state names its own.
func (c *Config) AWSRegion() string { return c.Region }

// Open builds the source of a prepared `source.s3sqs` block for the
// registry: SQS and S3 clients from the SDK's default chain (see
// NewClients), and readiness from the receives, visibility extensions and
// batches handed over (the queue answers, or every worker is busy with a
// large log file).
func Open(ctx context.Context, cfg *Config, deps source.Deps) (source.Source, error) {
	q, s3c, err := NewClients(ctx, *cfg, deps.Logger)
	if err != nil {
		return nil, err
	}
	ref, _ := parseQueue(cfg.Queue)
	name := ref.name()
	// A receive returns within wait_time, message or not; a worker busy
	// with one log file extends its visibility every third of the
	// timeout.
	polls, err := deps.PollTracker([]string{name}, max(3*cfg.WaitTime, cfg.VisibilityTimeout/3+cfg.WaitTime, 45*time.Second))
	if err != nil {
		return nil, err
	}
	src, err := New(q, s3c, *cfg, Options{
		Logger:     deps.Logger,
		Registerer: deps.Registerer,
		Alive:      func() { polls.Polled(name) },
	})
	if err != nil {
		return nil, err
	}
	return source.WithReady(src, polls), nil
}
