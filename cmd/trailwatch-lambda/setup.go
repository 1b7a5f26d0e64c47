package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/subscription"
	"github.com/trailwatch/trailwatch/internal/app"
	"github.com/trailwatch/trailwatch/internal/config"
	"github.com/trailwatch/trailwatch/internal/version"
	"github.com/trailwatch/trailwatch/rules"
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

// newHandler builds the handler from the environment: it reads the
// settings and loads the configuration and rules; internal/app builds the
// rest (notifiers, decision function, lifecycle, delivery ledger).
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
	table, _ := env("TRAILWATCH_DELIVERY_TABLE")
	h, err := app.NewLambda(ctx, cfg, set, app.LambdaOptions{
		DeliveryTable: table, Lease: lease, TTL: ttl, SendTimeout: sendTimeout, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	logger.Info("trailwatch-lambda ready", "version", version.String(), "rules", set.Len(),
		"notifiers", len(h.Notifiers), "delivery_table", table)
	return h, nil
}
