package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
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

// Batch is a batch of raw records from one log group.
type Batch struct {
	// LogGroup is the log group the records were read from.
	LogGroup string
	// Records are the raw log event messages, in timestamp order.
	Records [][]byte
	// Newest is the newest record's timestamp (for CloudTrail, its
	// eventTime); zero when unknown.
	Newest time.Time
}

// GroupSource is a Source that says which log group each batch came from.
// Service.Run prefers it to Source.Run: the dead man's switch and the lag
// metric need the log group and the records' time.
type GroupSource interface {
	RunGroups(ctx context.Context, handle func(ctx context.Context, b Batch) error) error
}

// Router picks the notifiers an alert goes to; rule is the rule that
// raised it (nil for trailwatch's built-in alerts).
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
	// Now is the clock for lag metrics, warnings and the dead man's
	// switch; nil means time.Now.
	Now func() time.Time
	// After is the timer of the dead man's switch; nil means time.After.
	After func(time.Duration) <-chan time.Time
	// Quiet, if set, is the dead man's switch: Run raises its quiet alerts
	// and the batches of a GroupSource its resumed alerts, routed through
	// the outbox like any alert.
	Quiet *QuietWatch

	// batchMu makes a batch and a Swap exclusive: a batch sees one rule
	// set and one router from start to end.
	batchMu sync.Mutex
	router  atomic.Pointer[Router]
	// quietMu orders the dead man's switch's check against batches, so a
	// group is never marked quiet just after records resumed.
	quietMu sync.Mutex
	newest  time.Time // newest record timestamp seen, under batchMu

	warnMu       sync.Mutex
	lastWarn     time.Time
	skippedSince int
}

// Swap replaces the rule set and the router between two batches: the
// batch being handled finishes with the old ones, the next starts with the
// new ones. A nil argument keeps the current one. Alerts already in the
// outbox are not touched.
func (s *Service) Swap(set *rules.Set, route Router) {
	s.batchMu.Lock()
	defer s.batchMu.Unlock()
	if set != nil {
		s.Evaluator.SetRules(set)
	}
	if route != nil {
		s.router.Store(&route)
	}
}

func (s *Service) routeFunc() Router {
	if r := s.router.Load(); r != nil {
		return *r
	}
	return s.Route
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

	var err error
	if gs, ok := s.Source.(GroupSource); ok {
		err = gs.RunGroups(ctx, s.HandleGroupBatch)
	} else {
		err = s.Source.Run(ctx, s.HandleBatch)
	}
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

// HandleBatch evaluates a batch and writes its alerts to the outbox in one
// transaction. An error means nothing of the batch may be considered done.
func (s *Service) HandleBatch(ctx context.Context, batch [][]byte) error {
	s.batchMu.Lock()
	defer s.batchMu.Unlock()
	return s.handle(ctx, batch, nil)
}

// HandleGroupBatch is HandleBatch for a batch that says its log group: it
// also feeds the dead man's switch (a quiet group's resumed alert goes to
// the outbox in the same transaction as the batch's alerts) and sets the
// lag of the newest record processed.
func (s *Service) HandleGroupBatch(ctx context.Context, b Batch) error {
	s.batchMu.Lock()
	defer s.batchMu.Unlock()
	var extra []notifiers.Alert
	if s.Quiet != nil && len(b.Records) > 0 {
		s.quietMu.Lock()
		defer s.quietMu.Unlock()
		if a, ok := s.Quiet.Resumed(b.LogGroup); ok {
			extra = append(extra, a)
		}
	}
	if err := s.handle(ctx, b.Records, extra); err != nil {
		return err
	}
	if s.Quiet != nil && len(b.Records) > 0 {
		if len(extra) > 0 {
			s.Logger.Info("log group delivers records again", "log_group", b.LogGroup)
		}
		s.Quiet.Seen(b.LogGroup)
	}
	if b.Newest.After(s.newest) {
		s.newest = b.Newest
	}
	if s.Metrics != nil && !s.newest.IsZero() {
		s.Metrics.EventLag.Set(s.now().Sub(s.newest).Seconds())
	}
	return nil
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

// handle evaluates batch and writes its alerts, and the built-in alerts in
// extra, to the outbox in one transaction. The caller holds batchMu.
func (s *Service) handle(ctx context.Context, batch [][]byte, extra []notifiers.Alert) error {
	var items []outbox.Item
	var alerts []notifiers.Alert
	set := s.Evaluator.Rules()
	route := s.routeFunc()
	var lb *lifecycle.Batch
	if s.Lifecycle != nil {
		lb = s.Lifecycle.BeginContext(ctx)
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
				items = s.route(items, route, lb, o, rule)
			}
		}
	}
	for _, a := range extra {
		items = s.route(items, route, nil, lifecycle.Output{Key: a.DedupKey, Alert: a}, nil)
	}
	if lb != nil {
		if err := lb.Err(); err != nil {
			// The shared alert state could not be read or written: the
			// batch is read again later, and decided the same way.
			return err
		}
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
func (s *Service) route(items []outbox.Item, route Router, lb *lifecycle.Batch, o lifecycle.Output, rule *rules.Rule) []outbox.Item {
	a := o.Alert
	if s.Metrics != nil {
		if rule == nil && (a.RuleID == QuietRuleID || a.RuleID == ResumedRuleID) {
			// Built-in alerts are counted, but their time is not a
			// record's: it says nothing of the lag.
			s.Metrics.Alerts.WithLabelValues(a.RuleID, a.Severity).Inc()
		} else {
			s.Metrics.observeAlert(&a, s.now())
		}
	}
	targets := route(&a, rule)
	if len(targets) == 0 {
		s.logger().Warn("alert matches no route and its rule names no notifier; it is not delivered",
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
	now := s.now()
	if now.Sub(s.lastWarn) < time.Minute {
		return
	}
	s.logger().Warn("skipped log events that are not CloudTrail records", "count", s.skippedSince, "last_error", err.Error())
	s.lastWarn = now
	s.skippedSince = 0
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
	route := s.routeFunc()
	var items []outbox.Item
	var groups []string
	for _, a := range due {
		var d quietDetails
		_ = json.Unmarshal(a.Event, &d)
		groups = append(groups, d.LogGroup)
		s.logger().Warn("log group delivers no records", "log_group", d.LogGroup, "since", d.LastRecord, "quiet_after", s.Quiet.After())
		items = s.route(items, route, nil, lifecycle.Output{Key: a.DedupKey, Alert: a}, nil)
	}
	if len(items) > 0 {
		if _, err := s.Outbox.Enqueue(ctx, items...); err != nil {
			return fmt.Errorf("write quiet alerts to the outbox: %w", err)
		}
	}
	s.Quiet.MarkQuiet(groups...)
	return nil
}
