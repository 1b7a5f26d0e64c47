package engine

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/engine/outbox"
	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
)

// Source delivers batches of raw records. Run calls handle for each batch
// and advances its durable position past a batch only when handle returned
// nil for it; it returns nil when ctx ends, after persisting.
type Source interface {
	Run(ctx context.Context, handle func(ctx context.Context, batch [][]byte) error) error
}

// Router picks the notifiers an alert goes to; rule is the rule that
// raised it.
type Router func(a *notifiers.Alert, rule *rules.Rule) []string

// Service is the live pipeline: records from a Source are evaluated, each
// alert is written to the durable outbox for every notifier its route
// names, and only then is the source's position allowed to advance. The
// outbox delivers to the notifiers independently, so a slow notifier never
// holds the source back.
type Service struct {
	Source    Source
	Evaluator *Evaluator
	Outbox    *outbox.Outbox
	Notifiers map[string]notifiers.Notifier
	Route     Router
	Logger    *slog.Logger
	Metrics   *Metrics // nil: no metrics
	// Lifecycle, if set, applies silences, thresholds, dedup windows and
	// storm control to the alerts before they reach the outbox; its state
	// is committed only after the outbox holds the batch's alerts. Nil
	// sends every match as its own alert.
	Lifecycle *lifecycle.Lifecycle
	// Now is the clock for lag metrics and warnings; nil means time.Now.
	Now func() time.Time

	warnMu       sync.Mutex
	lastWarn     time.Time
	skippedSince int
}

// Run runs the pipeline and the outbox's delivery until ctx ends or the
// source fails. It returns nil on a clean shutdown.
func (s *Service) Run(ctx context.Context) error {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	deliverCtx, stopDelivery := context.WithCancel(context.WithoutCancel(ctx))
	deliverDone := make(chan error, 1)
	go func() { deliverDone <- s.Outbox.Run(deliverCtx, s.Notifiers) }()

	err := s.Source.Run(ctx, s.HandleBatch)
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

// HandleBatch evaluates a batch and writes its alerts to the outbox in one
// transaction. An error means nothing of the batch may be considered done.
func (s *Service) HandleBatch(ctx context.Context, batch [][]byte) error {
	var items []outbox.Item
	var alerts []notifiers.Alert
	set := s.Evaluator.Rules()
	var lb *lifecycle.Batch
	if s.Lifecycle != nil {
		lb = s.Lifecycle.Begin()
		// Undone unless committed below, after the outbox write.
		defer lb.Rollback()
	}
	for _, raw := range batch {
		var err error
		alerts, err = s.Evaluator.Evaluate(raw, alerts[:0])
		if err != nil {
			s.skipped(err)
			if s.Metrics != nil {
				s.Metrics.RecordsSkipped.Inc()
			}
			continue
		}
		if s.Metrics != nil {
			s.Metrics.RecordsRead.Inc()
		}
		for i := range alerts {
			rule := set.Rule(alerts[i].RuleID)
			outs := []lifecycle.Output{{Key: alerts[i].DedupKey, Alert: alerts[i]}}
			if lb != nil {
				outs = lb.Process(alerts[i], rule)
			}
			for _, o := range outs {
				items = s.route(items, lb, o, rule)
			}
		}
	}
	if lb != nil {
		for _, d := range lb.Digests() {
			items = append(items, outbox.Item{Key: d.Key, Notifier: d.Notifier, Alert: d.Alert})
		}
	}
	if len(items) > 0 {
		if _, err := s.Outbox.Enqueue(ctx, items...); err != nil {
			return fmt.Errorf("write alerts to the outbox: %w", err)
		}
	}
	if lb != nil {
		if err := lb.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// route appends an outbox item for each notifier o goes to (storm control
// may fold it into a digest instead).
func (s *Service) route(items []outbox.Item, lb *lifecycle.Batch, o lifecycle.Output, rule *rules.Rule) []outbox.Item {
	a := o.Alert
	if s.Metrics != nil {
		s.Metrics.observeAlert(&a, s.Now())
	}
	targets := s.Route(&a, rule)
	if len(targets) == 0 {
		s.Logger.Warn("alert matches no route and its rule names no notifier; it is not delivered",
			"rule", a.RuleID, "event_id", a.EventID)
		return items
	}
	for _, t := range targets {
		if lb != nil && !lb.Admit(t, o) {
			continue
		}
		items = append(items, outbox.Item{Key: o.Key, Notifier: t, Alert: a})
	}
	return items
}

// skipped logs records that are not CloudTrail records, at most once a
// minute with the count since the last warning.
func (s *Service) skipped(err error) {
	s.warnMu.Lock()
	defer s.warnMu.Unlock()
	s.skippedSince++
	now := s.Now()
	if now.Sub(s.lastWarn) < time.Minute {
		return
	}
	s.Logger.Warn("skipped log events that are not CloudTrail records", "count", s.skippedSince, "last_error", err.Error())
	s.lastWarn = now
	s.skippedSince = 0
}
