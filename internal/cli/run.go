package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/trailwatch/trailwatch/engine"
	"github.com/trailwatch/trailwatch/engine/decide"
	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/engine/outbox"
	"github.com/trailwatch/trailwatch/engine/source"
	"github.com/trailwatch/trailwatch/internal/config"
	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
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
	var watch bool
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Tail CloudTrail's CloudWatch Logs log group and deliver alerts (the service)",
		Long: `run is the long-running service. It reads the log groups of the configuration with
FilterLogEvents, re-reading a lookback window so late deliveries are caught and
deduplicating by eventID; evaluates every record against the rules; writes each alert
to a durable outbox in state_dir for every notifier its route names; and only then
advances its position. After a crash or restart it resumes where it was: nothing
missed, nothing alerted twice. SIGTERM or SIGINT persists in-flight work and exits 0.

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
			r := &runner{
				cfgPath: cfgPath, rulePaths: rulePaths, logger: logger,
				reg: prometheus.NewRegistry(), reload: reloadChan(cmd.Context()),
				watch: watch,
			}
			return r.run(cmd.Context(), cfg, set)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration file (YAML)")
	rulesFlag(cmd, &rulePaths)
	cmd.Flags().BoolVar(&watch, "watch", false, "reload when the configuration or a rule file changes (as reload.watch: true)")
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

// runner is one `trailwatch run`: the wiring of the live pipeline and what
// a reload needs to find again.
type runner struct {
	cfgPath   string
	rulePaths []string // --rules; empty means the config's rules
	logger    *slog.Logger
	reg       *prometheus.Registry
	reload    <-chan struct{}
	watch     bool // --watch

	// watchPaths are the rule paths of the newest configuration that
	// loaded: what the next reload will read.
	watchPaths []string

	svc     *engine.Service
	started *config.Config // the configuration the process started with
	targets map[string]notifiers.Notifier

	reloadFailures prometheus.Counter
	reloadSuccess  prometheus.Gauge
	reloads        *prometheus.CounterVec
}

// router routes by cfg's routes and the rule's own notify list.
func router(cfg *config.Config) decide.Router {
	return func(a *notifiers.Alert, r *rules.Rule) []string {
		var own []string
		if r != nil {
			own = r.Notify
		}
		return cfg.Targets(a, own)
	}
}

// stormControl is each notifier's rate_limit.
func stormControl(cfg *config.Config) map[string]lifecycle.StormConfig {
	storm := map[string]lifecycle.StormConfig{}
	for _, n := range cfg.Notifiers {
		if n.RateLimit != nil {
			storm[n.Name] = *n.RateLimit
		}
	}
	return storm
}

// run wires and runs the live pipeline until ctx ends.
func (r *runner) run(ctx context.Context, cfg *config.Config, set *rules.Set) error {
	logger, reg := r.logger, r.reg
	if cfg.Source.Type == "" {
		return exitCode(1, cfg.File+": run needs a source: one of source."+strings.Join(source.Types(), ", source."))
	}
	if cfg.StateDir == "" {
		return exitCode(1, cfg.File+": state_dir is required for run")
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r.reloadFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "trailwatch_reload_failures_total", Help: "Reloads (SIGHUP or a watched file change) refused because the new configuration or rules had problems.",
	})
	r.reloadSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "trailwatch_reload_success_timestamp_seconds", Help: "Unix time of the last successful load of the configuration and rules (start or reload).",
	})
	r.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trailwatch_reloads_total", Help: "Reloads attempted, by trigger: signal (SIGHUP) or watch (a watched file changed).",
	}, []string{"trigger"})
	for _, trigger := range []string{reloadBySignal, reloadByWatch} {
		r.reloads.WithLabelValues(trigger)
	}
	reg.MustRegister(r.reloadFailures, r.reloadSuccess, r.reloads)
	r.watchPaths = r.rulePaths
	if len(r.watchPaths) == 0 {
		r.watchPaths = cfg.RulePaths()
	}

	ob, err := outbox.Open(filepath.Join(cfg.StateDir, outbox.FileName), outbox.Options{Logger: logger, Registerer: reg,
		AttemptTimeout: cfg.Outbox.SendTimeout})
	if err != nil {
		return err
	}
	defer ob.Close()

	targets, err := cfg.BuildNotifiers(ctx, config.Deps{Logger: logger})
	if err != nil {
		return err
	}
	defer closeNotifiers(targets, logger)
	var shared *dynamostate.LifecycleStore
	if cfg.SharedState != nil {
		ss := *cfg.SharedState
		ss.Region = cfg.SharedStateRegion()
		if shared, err = withLedger(ctx, &ss, targets, logger, reg); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	r.targets = targets

	src, err := cfg.Source.Build(ctx, source.Deps{Logger: logger, Registerer: reg, StateDir: cfg.StateDir})
	if err != nil {
		return err
	}
	var groups []string // the origins, for the quiet watch and the log
	if o, ok := src.(source.Origins); ok {
		groups = o.Origins()
	} else if cfg.QuietAfter > 0 {
		return exitCode(1, cfg.File+": quiet_after needs a source whose log groups are known in advance (source.cloudwatch), not source."+cfg.Source.Type)
	}
	if err := src.Check(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return exitCode(1, err.Error())
	}

	lcOpts := lifecycle.Options{StateDir: cfg.StateDir, Storm: stormControl(cfg), Logger: logger, Registerer: reg}
	if shared != nil {
		lcOpts.Shared, lcOpts.SharedSilences = shared, shared
	}
	lc, err := lifecycle.Open(cfg.Lifecycle, lcOpts)
	if err != nil {
		return err
	}

	ev := decide.NewEvaluator(set, decide.EvaluatorOptions{
		// The source deduplicates by eventID with durable state, and the
		// outbox is idempotent per alert; an in-memory window here would
		// wrongly drop a batch the source re-delivers after a failed handoff.
		DedupWindow: -1,
		OnRuleError: func(me rules.MatchError, e *cloudtrail.Event) {
			logger.Warn("rule failed on an event", "rule", me.Rule.ID, "event_id", e.EventID, "error", me.Err.Error())
		},
	})
	metrics := decide.NewMetrics(reg, ev)
	r.svc = &engine.Service{
		Source:    src,
		Decider:   decide.New(ev, router(cfg), decide.Options{Lifecycle: lc, Logger: logger, Metrics: metrics}),
		Outbox:    ob,
		Notifiers: targets,
		Logger:    logger,
		Metrics:   metrics,
	}
	if cfg.QuietAfter > 0 {
		r.svc.Quiet = engine.NewQuietWatch(cfg.QuietAfter, groups, nil)
		reg.MustRegister(r.svc.Quiet.Collector())
	}
	r.started = cfg
	r.reloadSuccess.SetToCurrentTime()

	// Watching starts before /readyz answers, so that a change made once
	// the service is ready is seen.
	var fw *fileWatch
	if cfg.Reload.Watch || r.watch {
		debounce := cfg.Reload.Debounce
		if debounce == 0 {
			debounce = defaultWatchDebounce
		}
		if fw, err = newFileWatch(logger, debounce); err != nil {
			return exitCode(1, err.Error())
		}
		defer fw.close()
		fw.sync(r.watchRoots())
		logger.Info("watching the configuration and rules for changes", "paths", r.watchRoots(), "debounce", debounce.String())
	}

	if cfg.Listen != "" {
		stop, err := r.serve(cfg, src, len(targets), engine.Check{Name: "delivery", Func: ob.CheckParked})
		if err != nil {
			return exitCode(1, err.Error())
		}
		defer stop()
	}

	reloadCtx, stopReload := context.WithCancel(ctx)
	reloadDone := make(chan struct{})
	go func() {
		defer close(reloadDone)
		r.reloadLoop(reloadCtx, fw)
	}()
	defer func() {
		stopReload()
		<-reloadDone
	}()

	logger.Info("trailwatch running", "log_groups", groups, "rules", set.Len(), "notifiers", len(targets),
		"state_dir", cfg.StateDir, "listen", cfg.Listen, "quiet_after", cfg.QuietAfter.String())
	if err := r.svc.Run(ctx); err != nil {
		return err
	}
	logger.Info("trailwatch stopped")
	return nil
}

// withLedger wraps every notifier with the shared delivery ledger, so that
// an alert several processes hold reaches each notifier once, and returns
// the shared store of dedup windows, thresholds and silences in the same
// table, once the table has answered.
func withLedger(ctx context.Context, ss *config.SharedState, targets map[string]notifiers.Notifier, logger *slog.Logger, reg prometheus.Registerer) (*dynamostate.LifecycleStore, error) {
	client, err := dynamostate.NewClient(ctx, ss.Region, logger)
	if err != nil {
		return nil, err
	}
	opts := dynamostate.Options{Lease: ss.Lease, TTL: ss.TTL, Logger: logger, Registerer: reg}
	store, shared, err := dynamostate.Open(client, ss.DynamoDBTable, opts)
	if err != nil {
		return nil, err
	}
	// Refused here, not at the first alert: a missing table cannot clear.
	if err := shared.Check(ctx); err != nil {
		return nil, exitCode(1, err.Error())
	}
	for name, n := range targets {
		targets[name] = dynamostate.NewNotifier(name, n, store, dynamostate.NotifierOptions{Logger: logger})
	}
	logger.Info("deliveries, dedup windows, thresholds and silences are shared", "table", ss.DynamoDBTable)
	return shared, nil
}

// serve starts the metrics and health endpoints on cfg.Listen; stop shuts
// them down.
func (r *runner) serve(cfg *config.Config, src source.Source, notifierCount int, more ...engine.Check) (stop func(), err error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics on %s: %w", cfg.Listen, err)
	}
	ready := func(context.Context) error { return nil }
	if sr, ok := src.(source.Ready); ok {
		ready = sr.Ready
	}
	checks := append([]engine.Check{
		{Name: "source", Func: ready},
		{Name: "state_dir", Func: engine.DirWritable(cfg.StateDir)},
		{Name: "notifiers", Func: func(context.Context) error {
			if notifierCount == 0 {
				return errors.New("no notifier is configured: alerts go nowhere")
			}
			return nil
		}},
	}, more...)
	h := engine.NewHTTPHandler(r.reg, r.logger, checks...)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.logger.Error("metrics server", "err", err)
		}
	}()
	r.logger.Info("serving metrics and health", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
		<-done
	}, nil
}

// What asked for a reload: the trigger label of trailwatch_reloads_total.
const (
	reloadBySignal = "signal"
	reloadByWatch  = "watch"
)

// reloadLoop reloads on each signal and, when fw is not nil, once the
// watched files have been quiet for the debounce after a change, until
// ctx ends. It is the only goroutine that reloads or touches fw.
func (r *runner) reloadLoop(ctx context.Context, fw *fileWatch) {
	var (
		events  <-chan fsnotify.Event
		errs    <-chan error
		timer   = time.NewTimer(time.Hour)
		fire    <-chan time.Time // nil while no change is pending
		first   string           // the first path that changed since the last reload
		changes int
		since   time.Time
	)
	timer.Stop()
	defer timer.Stop()
	if fw != nil {
		events, errs = fw.w.Events, fw.w.Errors
	}
	changed := func(path string) {
		now := time.Now()
		if changes == 0 {
			first, since = path, now
		}
		changes++
		// Wait for quiet, but not forever: a tree that never stops
		// changing is reloaded every maxWait all the same.
		fire = timer.C
		timer.Reset(max(0, min(fw.debounce, since.Add(fw.maxWait).Sub(now))))
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.reload:
			r.reopenFiles()
			r.reloadOnce(reloadBySignal, fw)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if fw.relevant(ev) {
				r.logger.Debug("watched file changed", "path", ev.Name, "op", ev.Op.String())
				changed(ev.Name)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			r.logger.Warn("watching the configuration and rules", "err", err)
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost: one of them may have mattered.
				changed("(too many file events to follow)")
			}
		case <-fire:
			fire = nil
			r.logger.Info("reloading: watched files changed", "path", first, "changes", changes)
			changes = 0
			r.reloadOnce(reloadByWatch, fw)
		}
	}
}

// reloadOnce is every reload, whatever asked for it: on a problem the
// running configuration and rules stay. Then the watches, if any, follow
// what the next reload will read.
func (r *runner) reloadOnce(trigger string, fw *fileWatch) {
	r.reloads.WithLabelValues(trigger).Inc()
	if err := r.doReload(); err != nil {
		r.reloadFailures.Inc()
		r.logger.Error("reload refused; the running configuration and rules stay in force", "err", err, "trigger", trigger)
	}
	if fw != nil {
		fw.sync(r.watchRoots())
	}
}

// watchRoots are the paths a reload reads: the configuration file and
// the rule paths that are not built in.
func (r *runner) watchRoots() []string {
	roots := []string{r.cfgPath}
	for _, p := range r.watchPaths {
		if p != "builtin" && !strings.HasPrefix(p, "builtin:") {
			roots = append(roots, p)
		}
	}
	return roots
}

// reopenFiles reopens file notifiers' files (after log rotation).
func (r *runner) reopenFiles() {
	for name, n := range r.targets {
		if ro, ok := n.(interface{ Reopen() error }); ok {
			if err := ro.Reopen(); err != nil {
				r.logger.Error("reopen notifier file", "notifier", name, "err", err)
			}
		}
	}
}

// doReload loads the configuration and rules again, validates them
// completely and swaps the rule set and routes; on any problem it logs
// each and changes nothing.
func (r *runner) doReload() error {
	log := r.logger
	log.Info("reloading configuration and rules", "config", r.cfgPath)
	cfg, err := config.Load(r.cfgPath)
	if err != nil {
		return logProblems(log, "configuration", err)
	}
	paths := r.rulePaths
	if len(paths) == 0 {
		paths = cfg.RulePaths()
	}
	// Watch what the next reload will read, even if these rules fail: a
	// rule directory the configuration names may not exist yet.
	r.watchPaths = paths
	set, err := rules.LoadWith(cfg.RulesOptions(), paths...)
	if err != nil {
		return logProblems(log, "rules", err)
	}
	if err := cfg.CheckRuleNotifiers(set); err != nil {
		return logProblems(log, "rules", err)
	}
	// New notifiers cannot be built in place: their alerts would need a
	// delivery loop of their own. Refuse rather than route to nothing.
	var added []string
	for _, n := range cfg.Notifiers {
		if _, ok := r.targets[n.Name]; !ok {
			added = append(added, n.Name)
		}
	}
	if len(added) > 0 {
		log.Error("reload adds notifiers; restart trailwatch to add notifiers", "notifiers", added)
		return fmt.Errorf("reload: new notifiers %v need a restart", added)
	}
	r.warnRestartOnly(cfg)
	r.svc.Decider.Swap(set, router(cfg))
	r.reloadSuccess.SetToCurrentTime()
	log.Info("reloaded configuration and rules", "rules", set.Len(), "routes", len(cfg.Routes))
	return nil
}

// logProblems logs every problem of a failed load (file:line:col each)
// and returns a summary error.
func logProblems(log *slog.Logger, what string, err error) error {
	var list rules.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			log.Error("reload: problem in the "+what, "problem", e.Error())
		}
		return fmt.Errorf("reload: %d problem(s) in the %s", len(list), what)
	}
	log.Error("reload: cannot load the "+what, "err", err)
	return fmt.Errorf("reload %s: %w", what, err)
}

// warnRestartOnly logs the changes a reload does not apply.
func (r *runner) warnRestartOnly(cfg *config.Config) {
	old := r.started
	var changed []string
	if !reflect.DeepEqual(old.Source, cfg.Source) {
		changed = append(changed, "source")
	}
	if !reflect.DeepEqual(old.SharedState, cfg.SharedState) {
		changed = append(changed, "shared_state")
	}
	if old.StateDir != cfg.StateDir {
		changed = append(changed, "state_dir")
	}
	if old.Listen != cfg.Listen {
		changed = append(changed, "listen")
	}
	if old.QuietAfter != cfg.QuietAfter {
		changed = append(changed, "quiet_after")
	}
	if !reflect.DeepEqual(old.Lifecycle, cfg.Lifecycle) {
		changed = append(changed, "lifecycle")
	}
	if old.Reload != cfg.Reload {
		changed = append(changed, "reload")
	}
	now := map[string]config.Notifier{}
	for _, n := range cfg.Notifiers {
		now[n.Name] = n
	}
	for _, n := range old.Notifiers {
		m, ok := now[n.Name]
		switch {
		case !ok:
			// Kept running so that its pending alerts are still delivered.
			changed = append(changed, "notifiers."+n.Name+" (removed; it gets no new alerts)")
		case m.Type != n.Type || !reflect.DeepEqual(m.Spec, n.Spec) || !reflect.DeepEqual(m.RateLimit, n.RateLimit):
			changed = append(changed, "notifiers."+n.Name)
		}
	}
	if len(changed) > 0 {
		r.logger.Warn("these settings changed and take effect only on restart", "settings", changed)
	}
}

// closeNotifiers closes the notifiers that hold resources (files).
func closeNotifiers(targets map[string]notifiers.Notifier, log *slog.Logger) {
	for name, n := range targets {
		if c, ok := n.(io.Closer); ok {
			if err := c.Close(); err != nil {
				log.Warn("close notifier", "notifier", name, "err", err)
			}
		}
	}
}
