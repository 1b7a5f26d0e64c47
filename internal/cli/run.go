package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/time/rate"

	"github.com/trailwatch/trailwatch/engine"
	"github.com/trailwatch/trailwatch/engine/cloudwatch"
	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/engine/outbox"
	"github.com/trailwatch/trailwatch/internal/config"
	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
)

// loadConfig loads a configuration file and prints its problems.
func loadConfig(stdio Stdio, path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err == nil {
		return cfg, nil
	}
	var list config.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintln(stdio.Err, e.Error())
		}
		return nil, exitCode(1, fmt.Sprintf("%d problem(s) in %s", len(list), path))
	}
	return nil, exitCode(1, err.Error())
}

// loadConfigAndRules loads the configuration (if path is set) and the
// rules (--rules wins over the config's `rules`), and checks that every
// notifier a rule names exists.
func loadConfigAndRules(stdio Stdio, cfgPath string, rulePaths []string) (*config.Config, *rules.Set, error) {
	var cfg *config.Config
	if cfgPath != "" {
		var err error
		if cfg, err = loadConfig(stdio, cfgPath); err != nil {
			return nil, nil, err
		}
		if len(rulePaths) == 0 {
			rulePaths = cfg.RulePaths()
		}
	}
	var opts rules.Options
	if cfg != nil {
		opts.Lists = cfg.Lists
	}
	set, err := loadRulesWith(stdio.Err, opts, rulePaths)
	if err != nil {
		return nil, nil, err
	}
	if cfg != nil {
		if err := cfg.CheckRuleNotifiers(set); err != nil {
			fmt.Fprintln(stdio.Err, err.Error())
			return nil, nil, exitCode(1, "rules name notifiers the configuration does not define")
		}
	}
	return cfg, set, nil
}

// cloudwatchSource adapts the CloudWatch Logs source to engine.Source.
type cloudwatchSource struct{ src *cloudwatch.Source }

func (c cloudwatchSource) Run(ctx context.Context, handle func(context.Context, [][]byte) error) error {
	return c.src.Run(ctx, func(ctx context.Context, batch []cloudwatch.Record) error {
		raw := make([][]byte, len(batch))
		for i := range batch {
			raw[i] = batch[i].Message
		}
		return handle(ctx, raw)
	})
}

func newRunCmd(stdio Stdio) *cobra.Command {
	var cfgPath, logFormat, logLevel string
	var rulePaths []string
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Tail CloudTrail's CloudWatch Logs log group and deliver alerts (the service)",
		Long: `run is the long-running service. It reads the log groups of the configuration with
FilterLogEvents, re-reading a lookback window so late deliveries are caught and
deduplicating by eventID; evaluates every record against the rules; writes each alert
to a durable outbox in state_dir for every notifier its route names; and only then
advances its position. After a crash or restart it resumes where it was: nothing
missed, nothing alerted twice. SIGTERM or SIGINT persists in-flight work and exits 0.

AWS access uses the SDK's standard chain (environment, shared config and profiles,
SSO, web identity, instance and container roles); AWS_ENDPOINT_URL and
AWS_ENDPOINT_URL_CLOUDWATCH_LOGS are honoured.`,
		Example: `  trailwatch run --config /etc/trailwatch/config.yaml
  AWS_PROFILE=security trailwatch run --config examples/config.yaml --log-format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath == "" {
				return usageError{errors.New("run needs --config FILE")}
			}
			logger, err := newLogger(stdio, logFormat, logLevel)
			if err != nil {
				return usageError{err}
			}
			cfg, set, err := loadConfigAndRules(stdio, cfgPath, rulePaths)
			if err != nil {
				return err
			}
			return runService(cmd.Context(), cfg, set, logger, prometheus.NewRegistry())
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration file (YAML)")
	rulesFlag(cmd, &rulePaths)
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

// runService wires and runs the live pipeline until ctx ends.
func runService(ctx context.Context, cfg *config.Config, set *rules.Set, logger *slog.Logger, reg *prometheus.Registry) error {
	if cfg.Source.CloudWatch == nil {
		return exitCode(1, cfg.File+": source.cloudwatch is required for run")
	}
	if cfg.StateDir == "" {
		return exitCode(1, cfg.File+": state_dir is required for run")
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	ob, err := outbox.Open(filepath.Join(cfg.StateDir, outbox.FileName), outbox.Options{Logger: logger, Registerer: reg})
	if err != nil {
		return err
	}
	defer ob.Close()

	targets, err := cfg.BuildNotifiers(ctx, config.Deps{Logger: logger})
	if err != nil {
		return err
	}

	client, err := cloudwatch.NewClient(ctx, *cfg.Source.CloudWatch)
	if err != nil {
		return err
	}
	src, err := cloudwatch.New(client, *cfg.Source.CloudWatch, cloudwatch.Options{
		Logger:     logger,
		Limiter:    rate.NewLimiter(5, 5),
		Registerer: reg,
		StateDir:   filepath.Join(cfg.StateDir, "cloudwatch"),
	})
	if err != nil {
		return err
	}
	if err := src.Check(ctx); err != nil {
		return exitCode(1, err.Error())
	}

	storm := map[string]lifecycle.StormConfig{}
	for _, n := range cfg.Notifiers {
		if n.RateLimit != nil {
			storm[n.Name] = *n.RateLimit
		}
	}
	lc, err := lifecycle.Open(cfg.Lifecycle, lifecycle.Options{StateDir: cfg.StateDir, Storm: storm, Logger: logger, Registerer: reg})
	if err != nil {
		return err
	}

	ev := engine.NewEvaluator(set, engine.EvaluatorOptions{
		// The source deduplicates by eventID with durable state, and the
		// outbox is idempotent per alert; an in-memory window here would
		// wrongly drop a batch the source re-delivers after a failed handoff.
		DedupWindow: -1,
		OnRuleError: func(me rules.MatchError, e *rules.Event) {
			logger.Warn("rule failed on an event", "rule", me.Rule.ID, "event_id", e.EventID, "error", me.Err.Error())
		},
	})
	svc := &engine.Service{
		Source:    cloudwatchSource{src},
		Evaluator: ev,
		Outbox:    ob,
		Notifiers: targets,
		Route: func(a *notifiers.Alert, r *rules.Rule) []string {
			var own []string
			if r != nil {
				own = r.Notify
			}
			return cfg.Targets(a, own)
		},
		Lifecycle: lc,
		Logger:    logger,
		Metrics:   engine.NewMetrics(reg, ev),
	}
	logger.Info("trailwatch running", "log_groups", cfg.Source.CloudWatch.LogGroups, "rules", set.Len(), "notifiers", len(targets), "state_dir", cfg.StateDir)
	if err := svc.Run(ctx); err != nil {
		return err
	}
	logger.Info("trailwatch stopped")
	return nil
}
