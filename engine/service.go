// Package engine is trailwatch's live pipeline, `run`'s Service: a source
// (engine/source) hands batches of records to the decision function
// (engine/decide), whose deliveries are written to the durable outbox
// (engine/outbox) before the source may advance; the dead man's switch
// (QuietWatch) watches the sources' origins, and the HTTP endpoints serve
// metrics, liveness and readiness. Each source lives in a sub-package
// (engine/cloudwatch, engine/kinesis, engine/files); no sub-package imports
// engine.
package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/trailwatch/trailwatch/engine/decide"
	"github.com/trailwatch/trailwatch/engine/outbox"
	"github.com/trailwatch/trailwatch/engine/source"
	"github.com/trailwatch/trailwatch/notifiers"
)

// Service is the live pipeline: batches from a Source go through the
// decision function (engine/decide), their items are written to the
// durable outbox in one transaction, and only then is the source's
// position allowed to advance (and the lifecycle's changes kept). The
// outbox delivers to the notifiers independently, so a slow notifier never
// holds the source back.
type Service struct {
	Source  source.Source
	Decider *decide.Decider
	Outbox  *outbox.Outbox
	// Notifiers are the outbox's notifiers by name.
	Notifiers map[string]notifiers.Notifier
	Logger    *slog.Logger
	Metrics   *decide.Metrics // nil: no metrics; give the Decider the same
	// Now is the clock for lag metrics, warnings and the dead man's
	// switch; nil means time.Now.
	Now func() time.Time
	// After is the timer of the dead man's switch; nil means time.After.
	After func(time.Duration) <-chan time.Time
	// Quiet, if set, is the dead man's switch: Run raises its quiet alerts,
	// and each batch its origin's resumed alert, routed through the outbox
	// like any alert.
	Quiet *QuietWatch

	// quietMu orders the dead man's switch's check against batches, so a
	// group is never marked quiet just after records resumed.
	quietMu  sync.Mutex
	newestMu sync.Mutex
	newest   time.Time // newest record timestamp seen

	// skipMu guards the report of skipped records: skipFrom starts the
	// current minute, skipShown were logged each with its place in it,
	// skipHidden were only counted.
	skipMu                sync.Mutex
	skipFrom              time.Time
	skipShown, skipHidden int
}

// SkipReportsPerMinute is how many skipped records (not CloudTrail
// records) run logs each with its place per minute; past it, the rest of
// the minute's are counted (trailwatch_records_skipped_total) and their
// number logged with the next report.
const SkipReportsPerMinute = 10

// Run runs the pipeline and the outbox's delivery until ctx ends or the
// source fails. It returns nil on a clean shutdown.
func (s *Service) Run(ctx context.Context) error {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.After == nil {
		s.After = time.After
	}
	deliverCtx, stopDelivery := context.WithCancel(context.WithoutCancel(ctx))
	deliverDone := make(chan error, 1)
	go func() { deliverDone <- s.Outbox.Run(deliverCtx, s.Notifiers) }()

	quietCtx, stopQuiet := context.WithCancel(ctx)
	quietDone := make(chan struct{})
	go func() {
		defer close(quietDone)
		if s.Quiet != nil {
			s.watchQuiet(quietCtx)
		}
	}()

	err := s.Source.Run(ctx, s.HandleBatch)
	stopQuiet()
	<-quietDone
	// The source has stopped and persisted its position; stop delivery too
	// (pending alerts stay in the outbox for the next start).
	stopDelivery()
	derr := <-deliverDone
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if derr != nil && derr != context.Canceled {
		return fmt.Errorf("delivery: %w", derr)
	}
	return nil
}

// HandleBatch decides a batch and writes its items to the outbox in one
// transaction; it is the Handler the Service gives its Source. It also
// feeds the dead man's switch (an origin's resumed alert goes to the
// outbox with the batch's items) and sets the lag of the newest record
// processed. An error means nothing of the batch may be considered done.
func (s *Service) HandleBatch(ctx context.Context, b source.Batch) error {
	var resumed []notifiers.Alert
	if s.Quiet != nil && len(b.Records) > 0 {
		s.quietMu.Lock()
		defer s.quietMu.Unlock()
		if a, ok := s.Quiet.Resumed(b.Origin); ok {
			resumed = append(resumed, a)
		}
	}
	x := s.Decider.Begin(ctx)
	// Undone unless committed below, after the outbox write.
	defer x.Rollback()
	x.Records(b.Records, s.skipped)
	x.Builtin(resumed...)
	res, err := x.Finish(false)
	if err != nil {
		// The shared alert state could not be read or written: the batch
		// is read again later, and decided the same way.
		return err
	}
	if err := s.enqueue(ctx, res.Items); err != nil {
		return fmt.Errorf("write alerts to the outbox: %w", err)
	}
	if err := x.Commit(); err != nil {
		return err
	}
	if s.Quiet != nil && len(b.Records) > 0 {
		if len(resumed) > 0 {
			s.logger().Info("log group delivers records again", "log_group", b.Origin)
		}
		s.Quiet.Seen(b.Origin)
	}
	s.newestMu.Lock()
	defer s.newestMu.Unlock()
	if b.Newest.After(s.newest) {
		s.newest = b.Newest
	}
	if s.Metrics != nil && !s.newest.IsZero() {
		s.Metrics.EventLag.Set(s.now().Sub(s.newest).Seconds())
	}
	return nil
}

// enqueue writes items to the outbox in one transaction.
func (s *Service) enqueue(ctx context.Context, items []decide.Item) error {
	if len(items) == 0 {
		return nil
	}
	out := make([]outbox.Item, len(items))
	for i, it := range items {
		out[i] = outbox.Item{Key: it.Key, Notifier: it.Notifier, Alert: it.Alert}
	}
	_, err := s.Outbox.Enqueue(ctx, out...)
	return err
}

func (s *Service) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

func (s *Service) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// skipped logs a record that is not a CloudTrail record with its place
// (log group, stream and log event id; object and line or position) and
// why, at most SkipReportsPerMinute a minute: anyone who can write to the
// origin can write such records, and the log must not become the flood.
// The ones not shown are counted, and their number comes with the first
// report of the next minute.
func (s *Service) skipped(r source.Record, err error) {
	s.skipMu.Lock()
	defer s.skipMu.Unlock()
	now := s.now()
	if s.skipFrom.IsZero() || now.Sub(s.skipFrom) >= time.Minute {
		if s.skipHidden > 0 {
			s.logger().Warn("more log events that are not CloudTrail records were skipped, not shown one by one",
				"count", s.skipHidden, "since", s.skipFrom.UTC().Format(time.RFC3339))
		}
		s.skipFrom, s.skipShown, s.skipHidden = now, 0, 0
	}
	if s.skipShown >= SkipReportsPerMinute {
		s.skipHidden++
		return
	}
	s.skipShown++
	s.logger().Warn("skipped a log event that is not a CloudTrail record",
		append(r.Place.LogAttrs(), "err", err.Error())...)
}

// watchQuiet runs the dead man's switch until ctx ends: whenever a log
// group reaches quiet_after without records, its quiet alert goes to the
// outbox.
func (s *Service) watchQuiet(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.After(s.Quiet.NextCheck()):
		}
		if err := s.CheckQuiet(ctx); err != nil {
			// The groups stay unmarked: the next check tries again.
			s.logger().Error("raise log group quiet alert", "err", err)
		}
	}
}

// CheckQuiet raises the quiet alerts that are due now (see QuietWatch.Due)
// through the outbox. Run calls it on its own timer; it is exported for
// tests and for callers that drive the clock.
func (s *Service) CheckQuiet(ctx context.Context) error {
	if s.Quiet == nil {
		return nil
	}
	s.quietMu.Lock()
	defer s.quietMu.Unlock()
	due := s.Quiet.Due()
	if len(due) == 0 {
		return nil
	}
	var groups []string
	for _, a := range due {
		var d quietDetails
		_ = json.Unmarshal(a.Event, &d)
		groups = append(groups, d.LogGroup)
		s.logger().Warn("log group delivers no records", "log_group", d.LogGroup, "since", d.LastRecord, "quiet_after", s.Quiet.After())
	}
	if err := s.enqueue(ctx, s.Decider.Route(due...)); err != nil {
		return fmt.Errorf("write quiet alerts to the outbox: %w", err)
	}
	s.Quiet.MarkQuiet(groups...)
	return nil
}
