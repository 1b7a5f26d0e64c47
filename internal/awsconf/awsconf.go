// Package awsconf is the one place trailwatch loads the AWS SDK's
// configuration for its clients (CloudWatch Logs, Kinesis, DynamoDB, S3,
// SQS, SNS, SES): the SDK's default chain (environment, shared config and
// profiles, SSO, web identity, instance and container roles; the
// AWS_ENDPOINT_URL variables are honoured), an optional region, and the
// SDK's own log lines sent through the service's slog logger, so that
// they follow --log-format and --log-level like every other line instead
// of going to stderr as plain text.
package awsconf

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go/logging"
)

// Load returns the SDK configuration from the default chain, in region
// when it is not empty, logging through logger (nil: slog.Default()).
func Load(ctx context.Context, region string, logger *slog.Logger) (aws.Config, error) {
	lo := []func(*awsconfig.LoadOptions) error{awsconfig.WithLogger(Logger(logger))}
	if region != "" {
		lo = append(lo, awsconfig.WithRegion(region))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, lo...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load aws config: %w", err)
	}
	return cfg, nil
}

// Logger adapts l (nil: slog.Default()) to the SDK's logger: its warnings
// become slog warnings, its debug lines (only with a ClientLogMode) slog
// debug lines, each with component=aws-sdk.
func Logger(l *slog.Logger) logging.Logger {
	if l == nil {
		l = slog.Default()
	}
	return sdkLogger{l.With("component", "aws-sdk")}
}

type sdkLogger struct{ l *slog.Logger }

// Logf implements logging.Logger.
func (s sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	s.log(context.Background(), c, format, v...)
}

// WithContext implements logging.ContextLogger, so that the SDK hands its
// request's context over (a handler may read values from it).
func (s sdkLogger) WithContext(ctx context.Context) logging.Logger {
	return ctxLogger{s: s, ctx: ctx}
}

func (s sdkLogger) log(ctx context.Context, c logging.Classification, format string, v ...any) {
	level := slog.LevelInfo
	switch c {
	case logging.Warn:
		level = slog.LevelWarn
	case logging.Debug:
		level = slog.LevelDebug
	}
	if !s.l.Enabled(ctx, level) {
		return
	}
	s.l.Log(ctx, level, fmt.Sprintf(format, v...))
}

type ctxLogger struct {
	s   sdkLogger
	ctx context.Context
}

func (c ctxLogger) Logf(cl logging.Classification, format string, v ...any) {
	c.s.log(c.ctx, cl, format, v...)
}
