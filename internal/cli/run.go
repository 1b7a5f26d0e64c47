package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/trailwatch/trailwatch/internal/app"
)

type reloadKey struct{}

// WithReload returns a context that lets `trailwatch run` reload its
// configuration and rules: run calls subscribe once, when it starts, and
// reloads each time a value arrives on the channel it returns.
// cmd/trailwatch subscribes to SIGHUP there, so that only run catches it
// (a hangup still ends the other commands); tests return a channel they
// feed.
func WithReload(ctx context.Context, subscribe func() <-chan struct{}) context.Context {
	return context.WithValue(ctx, reloadKey{}, subscribe)
}

func reloadChan(ctx context.Context) <-chan struct{} {
	if subscribe, ok := ctx.Value(reloadKey{}).(func() <-chan struct{}); ok && subscribe != nil {
		return subscribe()
	}
	return nil // never
}

func newRunCmd(stdio Stdio) *cobra.Command {
	var cfgPath, logFormat, logLevel string
	var rulePaths []string
	var watch, acceptEmpty bool
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Read CloudTrail from the configured source and deliver alerts (the service)",
		Long: `run is the long-running service. It reads the log groups of the configuration with
FilterLogEvents, re-reading a lookback window so late deliveries are caught and
deduplicating by eventID; evaluates every record against the rules; writes each alert
to a durable outbox in state_dir for every notifier its route names; and only then
advances its position. After a crash or restart it resumes where it was: nothing
missed, and each alert delivered at least once (the README's "Reliability" says what
each notifier guarantees). SIGTERM or SIGINT persists in-flight work and exits 0.

If outbox.db is missing or empty while state_dir holds read positions, run refuses to
start: the alerts still pending in the lost outbox would be dropped without a word.
--accept-empty-outbox starts anyway, with a new outbox (after trailwatch outbox
--salvage, say, or when the loss is known and accepted). A damaged outbox.db is
reported with what to do; run never starts on one.

With listen: (e.g. 127.0.0.1:9090) it serves Prometheus metrics on /metrics, liveness
on /healthz and readiness on /readyz (every log group read successfully within a few
poll intervals, state_dir writable, notifiers configured). With quiet_after: it
raises the built-in alert trailwatch-log-group-quiet when a log group delivers no
records for that long, and trailwatch-log-group-resumed when records come back.

With source.kinesis instead of source.cloudwatch, run reads a Kinesis data stream that
a subscription filter feeds, sharing its shards with every instance that uses the same
lease table (DynamoDB): adding an instance adds capacity, and the shards of one that
stops are taken over. With shared_state: every notification is recorded in a DynamoDB
delivery ledger, so an alert that two instances hold (a batch read again after a
takeover) is sent once; dedup windows, threshold groups and silences live in the same
table, so repeats seen by different instances are folded together and a silence added
once holds on every instance. See docs/scale-out.md.

With source.s3sqs, run reads CloudTrail's log files from its S3 bucket as the bucket's
notifications announce them on an SQS queue, which any number of instances share; a
notification is deleted only once its log file's alerts are in the outbox, and one
whose log file cannot be read goes to the queue's dead-letter queue with the reason.
See the README's "CloudTrail in S3" and examples/deploy/s3sqs.

With source.files, run reads CloudTrail's log files as they arrive in local
directories (aws s3 sync of the trail's bucket, a shipper's spool directory), each
file once, keeping in state_dir how far each was read; a file that grows is read on
from the next record. See docs/sources.md.

SIGHUP reloads the configuration and the rules: the new set is validated completely
and swapped in between two batches; on any problem the running set stays and every
problem is logged with file:line:col. Rules, lists and routes are reloaded; changes
to notifiers, the source, state_dir, listen, quiet_after, the lifecycle and reload
take effect on restart (and are logged as such). SIGHUP also reopens file notifiers'
files, for log rotation.

With reload: {watch: true} in the configuration, or --watch, run also reloads by
itself when the configuration file or anything under its rule paths changes: a file
written in place or replaced by rename (as editors save), created, deleted, or added
in a new subdirectory. It waits until the files have been quiet for reload.debounce
(default 1s), so an editor's several writes or a git pull make one reload, then
reloads exactly as SIGHUP does, with the same checks; the log says which path
changed. Built-in packs are compiled in and need no watching.

AWS access uses the SDK's standard chain (environment, shared config and profiles,
SSO, web identity, instance and container roles); AWS_ENDPOINT_URL and
AWS_ENDPOINT_URL_CLOUDWATCH_LOGS (and _KINESIS, _DYNAMODB, _SQS, _S3) are honoured.`,
		Example: `  trailwatch run --config /etc/trailwatch/config.yaml
  AWS_PROFILE=security trailwatch run --config examples/config.yaml --log-format json
  kill -HUP $(pidof trailwatch)   # reload rules and routes
  trailwatch run --config config.yaml --watch   # reload when a rule file is saved`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath == "" {
				cfgPath = defaultConfig()
			}
			if cfgPath == "" {
				return usageError{errors.New("run needs --config FILE (or $TRAILWATCH_CONFIG)")}
			}
			logger, err := newLogger(stdio, logFormat, logLevel)
			if err != nil {
				return usageError{err}
			}
			cfg, set, err := loadConfigAndRules(stdio, cfgPath, rulePaths)
			if err != nil {
				return err
			}
			logUnrouted(logger, cfg, set)
			return app.Run(cmd.Context(), cfg, set, app.RunOptions{
				ConfigPath: cfgPath, RulePaths: rulePaths, Watch: watch,
				Reload: reloadChan(cmd.Context()), Logger: logger, AcceptEmptyOutbox: acceptEmpty,
			})
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration file (YAML)")
	rulesFlag(cmd, &rulePaths)
	cmd.Flags().BoolVar(&watch, "watch", false, "reload when the configuration or a rule file changes (as reload.watch: true)")
	cmd.Flags().BoolVar(&acceptEmpty, "accept-empty-outbox", false, "start with a new, empty outbox even though state_dir holds read positions (the old outbox's pending alerts are lost)")
	addLogFlags(cmd, &logFormat, &logLevel)
	return cmd
}

func addLogFlags(cmd *cobra.Command, format, level *string) {
	cmd.Flags().StringVar(format, "log-format", "text", "log format: text or json")
	cmd.Flags().StringVar(level, "log-level", "info", "log level: debug, info, warn or error")
}

func newLogger(stdio Stdio, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(stdio.Err, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(stdio.Err, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", format)
}
