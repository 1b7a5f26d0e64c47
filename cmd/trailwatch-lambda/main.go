// Command trailwatch-lambda is trailwatch as an AWS Lambda function behind a
// CloudWatch Logs subscription filter: CloudWatch Logs pushes each batch of
// CloudTrail records to it, and it evaluates them against the rules and
// notifies, recording every delivery in a DynamoDB table so that a retried
// batch never pages twice. See docs/scale-out.md and
// examples/deploy/lambda.
//
// It is configured through the environment:
//
//	TRAILWATCH_CONFIG          configuration file (required): a path in the
//	                           deployment package, or an S3 URI
//	                           (s3://bucket/prefix/config.yaml) copied at
//	                           cold start, with every object under
//	                           s3://bucket/prefix/, into a private directory
//	                           under /tmp; rules are relative to it either way
//	TRAILWATCH_S3_PATH_STYLE   true or false: path-style S3 requests (unset:
//	                           only when AWS_ENDPOINT_URL or
//	                           AWS_ENDPOINT_URL_S3 overrides the endpoint)
//	TRAILWATCH_DELIVERY_TABLE  DynamoDB table of delivery records, shared
//	                           dedup windows, thresholds and silences
//	                           (unset: no records, a retried batch
//	                           re-sends, and the lifecycle is per
//	                           execution environment)
//	TRAILWATCH_LEASE           how long a delivery claim holds (default 60s)
//	TRAILWATCH_DELIVERY_TTL    how long delivery records are kept (default 168h)
//	TRAILWATCH_SEND_TIMEOUT    bound on one notification (default 20s)
//	TRAILWATCH_LOG_LEVEL       debug, info, warn or error (default info)
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/trailwatch/trailwatch/internal/s3bundle"
)

func main() {
	ctx := context.Background()
	logger, err := newLogger(os.Getenv("TRAILWATCH_LOG_LEVEL"))
	if err != nil {
		slog.Error("trailwatch-lambda: bad configuration", "error", err.Error())
		os.Exit(1)
	}
	h, err := newHandler(ctx, os.LookupEnv, logger)
	if err != nil {
		logger.Error("trailwatch-lambda: cannot start", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}

// localConfig returns the local path of the configuration that
// TRAILWATCH_CONFIG names: a path as it is, or, for an s3:// URI, the copy
// that s3bundle.Fetch makes of the object and everything under its prefix
// in a fresh private directory under os.TempDir() (Lambda's /tmp). The
// copy is made once per execution environment, at cold start, and kept
// for its lifetime.
func localConfig(ctx context.Context, env func(string) (string, bool), loc string, logger *slog.Logger) (string, error) {
	if !s3bundle.IsURI(loc) {
		return loc, nil
	}
	if _, err := s3bundle.ParseURI(loc); err != nil {
		return "", fmt.Errorf("TRAILWATCH_CONFIG %w", err)
	}
	opts := s3bundle.ClientOptions{Logger: logger}
	if v, _ := env("TRAILWATCH_S3_PATH_STYLE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return "", fmt.Errorf("TRAILWATCH_S3_PATH_STYLE must be true or false, not %q", v)
		}
		opts.PathStyle = &b
	}
	client, err := s3bundle.NewClient(ctx, opts)
	if err != nil {
		return "", fmt.Errorf("TRAILWATCH_CONFIG %s: %w", loc, err)
	}
	dir, err := os.MkdirTemp("", "trailwatch-config-")
	if err != nil {
		return "", fmt.Errorf("TRAILWATCH_CONFIG %s: %w", loc, err)
	}
	path, err := s3bundle.Fetch(ctx, client, loc, dir, s3bundle.Options{Logger: logger})
	if err != nil {
		// A half-copied tree must not outlive the failed start.
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("TRAILWATCH_CONFIG %w", err)
	}
	return path, nil
}
