package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/trailwatch/trailwatch/engine/decide"
	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/engine/subscription"
	"github.com/trailwatch/trailwatch/internal/config"
	"github.com/trailwatch/trailwatch/internal/version"
	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// newLogger returns a JSON logger (CloudWatch Logs parses it) at level.
func newLogger(level string) (*slog.Logger, error) {
	var lv slog.Level
	if level != "" {
		if err := lv.UnmarshalText([]byte(level)); err != nil {
			return nil, fmt.Errorf("TRAILWATCH_LOG_LEVEL: %w", err)
		}
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lv})), nil
}

// duration reads a duration from the environment, def when unset.
func duration(env func(string) (string, bool), name string, def time.Duration) (time.Duration, error) {
	v, ok := env(name)
	if !ok || v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s must be a positive duration such as 60s", name)
	}
	return d, nil
}

// newHandler builds the handler from the environment: the configuration
// and rules, the notifiers, an in-memory lifecycle, and the delivery
// ledger.
func newHandler(ctx context.Context, env func(string) (string, bool), logger *slog.Logger) (*subscription.Handler, error) {
	cfgPath, _ := env("TRAILWATCH_CONFIG")
	if cfgPath == "" {
		return nil, errors.New("TRAILWATCH_CONFIG is not set: point it at the configuration file in the deployment package or in S3 (s3://bucket/prefix/config.yaml)")
	}
	cfgPath, err := localConfig(ctx, env, cfgPath, logger)
	if err != nil {
		return nil, err
	}
	sendTimeout, err := duration(env, "TRAILWATCH_SEND_TIMEOUT", subscription.DefaultSendTimeout)
	if err != nil {
		return nil, err
	}
	lease, err := duration(env, "TRAILWATCH_LEASE", dynamostate.DefaultLease)
	if err != nil {
		return nil, err
	}
	ttl, err := duration(env, "TRAILWATCH_DELIVERY_TTL", dynamostate.DefaultTTL)
	if err != nil {
		return nil, err
	}
	if lease < dynamostate.MinLease(sendTimeout) {
		return nil, fmt.Errorf("TRAILWATCH_LEASE (%s) must exceed TRAILWATCH_SEND_TIMEOUT (%s) by at least %s", lease, sendTimeout, dynamostate.LeaseMargin)
	}

	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, err
	}
	set, err := rules.LoadWith(cfg.RulesOptions(), cfg.RulePaths()...)
	if err != nil {
		return nil, fmt.Errorf("load rules: %w", err)
	}
	if err := cfg.CheckRuleNotifiers(set); err != nil {
		return nil, err
	}
	targets, err := cfg.BuildNotifiers(ctx, config.Deps{Logger: logger})
	if err != nil {
		return nil, err
	}
	storm := map[string]lifecycle.StormConfig{}
	for _, n := range cfg.Notifiers {
		if n.RateLimit != nil {
			storm[n.Name] = *n.RateLimit
		}
	}
	// With the delivery table, dedup windows, thresholds and silences are
	// shared in it by every execution environment. Without it the
	// lifecycle lives in this environment's memory, and a state_dir
	// shipped in the package supplies silences, read only.
	lcOpts := lifecycle.Options{StateDir: cfg.StateDir, ReadOnlySilences: true, Storm: storm, Logger: logger}
	table, _ := env("TRAILWATCH_DELIVERY_TABLE")
	var ledger *dynamostate.Store
	if table != "" {
		client, err := dynamostate.NewClient(ctx, "", logger)
		if err != nil {
			return nil, err
		}
		var shared *dynamostate.LifecycleStore
		ledger, shared, err = dynamostate.Open(client, table, dynamostate.Options{Lease: lease, TTL: ttl, Logger: logger})
		if err != nil {
			return nil, err
		}
		lcOpts.Shared, lcOpts.SharedSilences = shared, shared
	}
	lc, err := lifecycle.Open(cfg.Lifecycle, lcOpts)
	if err != nil {
		return nil, err
	}
	ev := decide.NewEvaluator(set, decide.EvaluatorOptions{
		// The delivery ledger stops repeats; an eventID window would drop
		// the records of a retried batch this environment already saw.
		DedupWindow: -1,
		OnRuleError: func(me rules.MatchError, e *cloudtrail.Event) {
			logger.Warn("rule failed on an event", "rule", me.Rule.ID, "event_id", e.EventID, "error", me.Err.Error())
		},
	})
	h := &subscription.Handler{
		Decider: decide.New(ev, func(a *notifiers.Alert, r *rules.Rule) []string {
			var own []string
			if r != nil {
				own = r.Notify
			}
			return cfg.Targets(a, own)
		}, decide.Options{Lifecycle: lc, Logger: logger}),
		Notifiers:   targets,
		Logger:      logger,
		SendTimeout: sendTimeout,
	}
	if ledger == nil {
		logger.Warn("TRAILWATCH_DELIVERY_TABLE is not set: deliveries are not recorded, so a retried batch re-sends its alerts, " +
			"and dedup windows and thresholds are per execution environment")
	} else {
		h.Ledger = ledger
	}
	logger.Info("trailwatch-lambda ready", "version", version.String(), "rules", set.Len(),
		"notifiers", len(targets), "delivery_table", table)
	return h, nil
}
