// Package app is trailwatch's composition root: the one place that builds,
// from a configuration and a rule set, the parts the commands wire
// together — the evaluator, the router, storm control, the alert lifecycle,
// the decision function (engine/decide), the outbox, the notifiers (behind
// the shared delivery ledger when shared_state is set) and the source
// (engine/source's registry) — and runs them:
//
//   - NewService and Run are `trailwatch run` (with reloads);
//     Check is run's start-up checks alone, for `trailwatch validate`;
//   - NewReplay is what `trailwatch replay` reads and decides with (Read),
//     and where `replay --notify` delivers;
//   - NewNotifier is what `trailwatch notify-test` sends through;
//   - NewLambda is the Lambda function's handler.
//
// Commands (internal/cli, cmd/trailwatch-lambda) parse flags and the
// environment, call these, and print.
package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/trailwatch/trailwatch/engine/decide"
	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/internal/config"
	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// Router routes an alert by cfg's routes and its rule's own notify list.
func Router(cfg *config.Config) decide.Router {
	return func(a *notifiers.Alert, r *rules.Rule) []string {
		var own []string
		if r != nil {
			own = r.Notify
		}
		return cfg.Targets(a, own)
	}
}

// StormControl is each notifier's rate_limit, for the lifecycle.
func StormControl(cfg *config.Config) map[string]lifecycle.StormConfig {
	storm := map[string]lifecycle.StormConfig{}
	for _, n := range cfg.Notifiers {
		if n.RateLimit != nil {
			storm[n.Name] = *n.RateLimit
		}
	}
	return storm
}

// LogRuleErrors is an evaluator's OnRuleError that logs each failure.
func LogRuleErrors(logger *slog.Logger) func(rules.MatchError, *cloudtrail.Event) {
	return func(me rules.MatchError, e *cloudtrail.Event) {
		logger.Warn("rule failed on an event", "rule", me.Rule.ID, "event_id", e.EventID, "error", me.Err.Error())
	}
}

// liveEvaluator is the evaluator of the live paths (run, the Lambda): no
// eventID window, since the source deduplicates with durable state (or
// the Lambda's ledger stops repeats) and the outbox is idempotent per
// alert; a window would wrongly drop a batch read again after a failed
// hand-off.
func liveEvaluator(set *rules.Set, logger *slog.Logger) *decide.Evaluator {
	return decide.NewEvaluator(set, decide.EvaluatorOptions{DedupWindow: -1, OnRuleError: LogRuleErrors(logger)})
}

// NewNotifier builds the notifier of cfg called name, as every command
// builds it (notify-test sends through it directly).
func NewNotifier(ctx context.Context, cfg *config.Config, name string, logger *slog.Logger) (notifiers.Notifier, error) {
	for i := range cfg.Notifiers {
		if cfg.Notifiers[i].Name == name {
			return cfg.Notifiers[i].Build(ctx, config.Deps{Logger: logger})
		}
	}
	return nil, fmt.Errorf("notifier %q is not defined in %s", name, cfg.File)
}

// TestAlert is the clearly marked alert `trailwatch notify-test` sends
// (title "TEST: ...", Test set), about no real event; its dedup key is
// new at every call.
func TestAlert(now time.Time) notifiers.Alert {
	raw, _ := json.Marshal(map[string]any{
		"eventVersion": "1.09", "eventID": "trailwatch-notify-test", "eventTime": now.UTC().Format(time.RFC3339),
		"eventSource": "trailwatch.test", "eventName": "NotifyTest", "awsRegion": "us-east-1",
		"sourceIPAddress": "192.0.2.1", "userAgent": "trailwatch notify-test",
		"userIdentity": map[string]any{"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/trailwatch-test", "userName": "trailwatch-test"},
	})
	return notifiers.Alert{
		RuleID:      "trailwatch-notify-test",
		Title:       "TEST: trailwatch notification check",
		Severity:    "info",
		Summary:     "This is a test alert from `trailwatch notify-test`: no action is needed.",
		Description: "Sent by an operator to check that this notifier delivers. It is not about any real event.",
		DedupKey:    fmt.Sprintf("notify-test-%d", now.UnixNano()),
		EventID:     "trailwatch-notify-test",
		EventTime:   now.UTC(),
		EventName:   "NotifyTest",
		EventSource: "trailwatch.test",
		Principal:   "arn:aws:iam::111122223333:user/trailwatch-test",
		UserName:    "trailwatch-test",
		SourceIP:    "192.0.2.1",
		UserAgent:   "trailwatch notify-test",
		AWSRegion:   "us-east-1",
		AccountID:   "111122223333",
		Count:       1,
		Test:        true,
		Event:       raw,
	}
}

// CloseNotifiers closes the notifiers that hold resources (files).
func CloseNotifiers(targets map[string]notifiers.Notifier, logger *slog.Logger) {
	for name, n := range targets {
		if c, ok := n.(io.Closer); ok {
			if err := c.Close(); err != nil {
				logger.Warn("close notifier", "notifier", name, "err", err)
			}
		}
	}
}

// sharedState opens a shared-state table: the delivery ledger and the
// store of dedup windows, thresholds and silences.
func sharedState(ctx context.Context, table, region string, opts dynamostate.Options) (*dynamostate.Store, *dynamostate.LifecycleStore, error) {
	client, err := dynamostate.NewClient(ctx, region, opts.Logger)
	if err != nil {
		return nil, nil, err
	}
	return dynamostate.Open(client, table, opts)
}
