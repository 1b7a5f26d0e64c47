package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/trailwatch/trailwatch/engine/decide"
	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/engine/subscription"
	"github.com/trailwatch/trailwatch/internal/config"
	"github.com/trailwatch/trailwatch/rules"
)

// LambdaOptions are the Lambda function's settings (its environment).
type LambdaOptions struct {
	// DeliveryTable is the DynamoDB table of delivery records, shared
	// dedup windows, thresholds and silences; empty keeps no records (a
	// retried batch re-sends) and the lifecycle per execution environment.
	DeliveryTable string
	// Lease and TTL are the delivery records' (zero: the defaults).
	Lease, TTL time.Duration
	// SendTimeout bounds one notification (zero: the default).
	SendTimeout time.Duration
	// Logger receives the handler's logs; nil discards.
	Logger *slog.Logger
}

// NewLambda builds the Lambda function's handler for cfg and set: the
// notifiers, the decision function (routes, storm control, a lifecycle
// that is shared through the delivery table, or kept in this execution
// environment's memory with the silences of a state_dir shipped in the
// bundle, read only) and the delivery ledger.
func NewLambda(ctx context.Context, cfg *config.Config, set *rules.Set, opts LambdaOptions) (*subscription.Handler, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	targets, err := cfg.BuildNotifiers(ctx, config.Deps{Logger: logger})
	if err != nil {
		return nil, err
	}
	lcOpts := lifecycle.Options{StateDir: cfg.StateDir, ReadOnlySilences: true, Storm: StormControl(cfg), Logger: logger}
	var ledger *dynamostate.Store
	if opts.DeliveryTable != "" {
		var shared *dynamostate.LifecycleStore
		ledger, shared, err = sharedState(ctx, opts.DeliveryTable, "", dynamostate.Options{Lease: opts.Lease, TTL: opts.TTL, Logger: logger})
		if err != nil {
			return nil, err
		}
		lcOpts.Shared, lcOpts.SharedSilences = shared, shared
	}
	lc, err := lifecycle.Open(cfg.Lifecycle, lcOpts)
	if err != nil {
		return nil, err
	}
	h := &subscription.Handler{
		Decider:     decide.New(liveEvaluator(set, logger), Router(cfg), decide.Options{Lifecycle: lc, Logger: logger}),
		Notifiers:   targets,
		Logger:      logger,
		SendTimeout: opts.SendTimeout,
	}
	if ledger == nil {
		logger.Warn("TRAILWATCH_DELIVERY_TABLE is not set: deliveries are not recorded, so a retried batch re-sends its alerts, " +
			"and dedup windows and thresholds are per execution environment")
	} else {
		h.Ledger = ledger
	}
	return h, nil
}
