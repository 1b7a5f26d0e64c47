package kinesis

import (
	"context"
	"time"

	"github.com/trailwatch/trailwatch/engine/source"
)

// The pipeline's view of the source: Source implements source.Source, and
// Open builds it for the source registry (type "kinesis").
var _ source.Source = (*Source)(nil)

// AWSRegion is the stream's region: shared_state's table is in it unless
// shared_state names its own.
func (c *Config) AWSRegion() string { return c.Region }

// Open builds the source of a prepared `source.kinesis` block for the
// registry: Kinesis and DynamoDB clients from the SDK's default chain (see
// NewClients), and readiness from the lease refreshes (the stream and the
// lease table answer).
func Open(ctx context.Context, cfg *Config, deps source.Deps) (source.Source, error) {
	kin, ddb, err := NewClients(ctx, *cfg, deps.Logger)
	if err != nil {
		return nil, err
	}
	// Ready while lease refreshes (every third of the lease duration)
	// succeed.
	polls, err := deps.PollTracker([]string{cfg.Stream}, max(3*cfg.LeaseDuration, 45*time.Second))
	if err != nil {
		return nil, err
	}
	src, err := New(kin, ddb, *cfg, Options{
		Logger:     deps.Logger,
		Registerer: deps.Registerer,
		Refreshed:  func() { polls.Polled(cfg.Stream) },
	})
	if err != nil {
		return nil, err
	}
	return source.WithReady(src, polls), nil
}
