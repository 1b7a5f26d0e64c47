// Command trailwatch-lambda is trailwatch as an AWS Lambda function behind a
// CloudWatch Logs subscription filter: CloudWatch Logs pushes each batch of
// CloudTrail records to it, and it evaluates them against the rules and
// notifies, recording every delivery in a DynamoDB table so that a retried
// batch never pages twice. See docs/scale-out.md and
// examples/deploy/lambda.
//
// It is configured through the environment:
//
//	TRAILWATCH_CONFIG          configuration file shipped in the deployment
//	                           package (required); rules relative to it
//	TRAILWATCH_DELIVERY_TABLE  DynamoDB table of delivery records (unset:
//	                           no records, a retried batch re-sends)
//	TRAILWATCH_LEASE           how long a delivery claim holds (default 60s)
//	TRAILWATCH_DELIVERY_TTL    how long delivery records are kept (default 168h)
//	TRAILWATCH_SEND_TIMEOUT    bound on one notification (default 20s)
//	TRAILWATCH_LOG_LEVEL       debug, info, warn or error (default info)
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
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
