package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailwatch/trailwatch/engine"
	"github.com/trailwatch/trailwatch/engine/decide"
	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/engine/outbox"
	"github.com/trailwatch/trailwatch/engine/source"
	"github.com/trailwatch/trailwatch/internal/config"
	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
)

// Options are the process's dependencies of what the root builds.
type Options struct {
	// Logger receives the parts' logs; nil discards.
	Logger *slog.Logger
	// Registerer receives the parts' metrics; nil keeps them in a private
	// registry.
	Registerer prometheus.Registerer
	// AcceptEmptyOutbox (run --accept-empty-outbox) starts with a new
	// outbox even though the state directory holds read positions: the
	// alerts pending in the lost one are not sent (outbox.RequirePaired).
	AcceptEmptyOutbox bool
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	return o
}

// Service is `trailwatch run`'s pipeline, built from a configuration: the
// source, the decision function with the lifecycle and storm control, the
// outbox and the notifiers.
type Service struct {
	// Engine is the running pipeline.
	Engine *engine.Service

	cfg       *config.Config
	src       source.Source
	origins   []string
	targets   map[string]notifiers.Notifier
	ob        *outbox.Outbox
	log       *slog.Logger
	reg       prometheus.Registerer
	closeOnce bool
}

// NewService builds run's pipeline for cfg and set, after run's start-up
// checks (see Check): it holds the outbox's lock from here to Close. An
// error means nothing was started; when ctx ended meanwhile it is ctx's.
func NewService(ctx context.Context, cfg *config.Config, set *rules.Set, opts Options) (_ *Service, err error) {
	opts = opts.withDefaults()
	logger, reg := opts.Logger, opts.Registerer
	if err := RequireRun(cfg); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	s := &Service{cfg: cfg, log: logger, reg: reg}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	obPath := filepath.Join(cfg.StateDir, outbox.FileName)
	if st, err := os.Stat(obPath); opts.AcceptEmptyOutbox && (err != nil || st.Size() == 0) {
		logger.Warn("starting with a new, empty outbox (--accept-empty-outbox): alerts pending in a lost one are not sent", "path", obPath)
	}
	if s.ob, err = outbox.Open(obPath, outbox.Options{Logger: logger, Registerer: reg,
		AttemptTimeout: cfg.Outbox.SendTimeout, RequirePaired: !opts.AcceptEmptyOutbox}); err != nil {
		return nil, err
	}
	if s.targets, err = cfg.BuildNotifiers(ctx, config.Deps{Logger: logger}); err != nil {
		return nil, err
	}
	shared, err := withSharedState(ctx, cfg, s.targets, logger, reg)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// The source is not built yet: run its checks too (all of run's,
		// with Check), so that a missing table does not hide a missing
		// stream until the next start.
		if all := Check(ctx, cfg, opts); all != nil && ctx.Err() == nil {
			return nil, all
		}
		return nil, err
	}
	if s.src, s.origins, err = buildSource(ctx, cfg, source.Deps{Logger: logger, Registerer: reg, StateDir: cfg.StateDir}); err != nil {
		return nil, err
	}
	if err := quietAfterErr(cfg, s.src); err != nil {
		return nil, err
	}
	if err := s.src.Check(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	lc, err := openLifecycle(cfg, shared, logger, reg)
	if err != nil {
		return nil, err
	}
	ev := liveEvaluator(set, logger)
	metrics := decide.NewMetrics(reg, ev)
	s.Engine = &engine.Service{
		Source:    s.src,
		Decider:   decide.New(ev, Router(cfg), decide.Options{Lifecycle: lc, Logger: logger, Metrics: metrics}),
		Outbox:    s.ob,
		Notifiers: s.targets,
		Logger:    logger,
		Metrics:   metrics,
	}
	if cfg.QuietAfter > 0 {
		s.Engine.Quiet = engine.NewQuietWatch(cfg.QuietAfter, s.origins, nil)
		reg.MustRegister(s.Engine.Quiet.Collector())
	}
	return s, nil
}

// Check runs `trailwatch run`'s start-up checks on cfg without starting
// anything, in run's order: the configuration has what run needs (a
// source, state_dir, quiet_after only with a source whose log groups are
// known), the state directory can be created and written, every notifier
// can be built (each is closed again), shared_state's table answers, the
// source can be built and passes its own check (it reads: the log
// groups exist and can be read; the stream and the lease table answer),
// and the lifecycle's state and silences load. It returns every problem
// it found. It does not open the outbox: a running `run` holds its lock.
func Check(ctx context.Context, cfg *config.Config, opts Options) error {
	opts = opts.withDefaults()
	// A private registry: the checks' parts register metrics of the same
	// names as a running service's.
	logger, reg := opts.Logger, prometheus.NewRegistry()
	if err := RequireRun(cfg); err != nil {
		return err
	}
	var errs []error
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		errs = append(errs, fmt.Errorf("create state dir: %w", err))
	} else if err := engine.DirWritable(cfg.StateDir)(ctx); err != nil {
		errs = append(errs, err)
	}
	targets, err := cfg.BuildNotifiers(ctx, config.Deps{Logger: logger})
	if err != nil {
		errs = append(errs, err)
	} else {
		defer CloseNotifiers(targets, logger)
	}
	shared, err := withSharedState(ctx, cfg, map[string]notifiers.Notifier{}, logger, reg)
	if err != nil {
		errs = append(errs, err)
	}
	if src, _, err := buildSource(ctx, cfg, source.Deps{Logger: logger, Registerer: reg, StateDir: cfg.StateDir}); err != nil {
		errs = append(errs, err)
	} else {
		if err := quietAfterErr(cfg, src); err != nil {
			errs = append(errs, err)
		}
		if err := src.Check(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := openLifecycle(cfg, shared, logger, reg); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// RequireRun checks what run needs of the configuration beyond what
// loading it checked (a source, state_dir), without building or reaching
// anything: run's first check, and `trailwatch validate`'s for a
// configuration that has a source.
func RequireRun(cfg *config.Config) error {
	var errs []error
	if cfg.Source.Type == "" {
		errs = append(errs, fmt.Errorf("%s: run needs a source: one of source.%s", cfg.File, strings.Join(source.Types(), ", source.")))
	}
	if cfg.StateDir == "" {
		errs = append(errs, fmt.Errorf("%s: state_dir is required for run", cfg.File))
	}
	return errors.Join(errs...)
}

// CheckOffline is what run refuses of cfg that can be known without
// reaching AWS or using state_dir: RequireRun, and what run decides from
// the built source (quiet_after needs one whose log groups are known).
// The source is built against a throwaway state directory and never run
// or checked, so nothing is contacted. `trailwatch validate` calls it;
// Check (validate --check-aws) goes further.
func CheckOffline(ctx context.Context, cfg *config.Config) error {
	errs := []error{RequireRun(cfg)}
	if cfg.Source.Type != "" {
		tmp, err := os.MkdirTemp("", "trailwatch-validate-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		logger := slog.New(slog.DiscardHandler)
		if src, _, err := buildSource(ctx, cfg, source.Deps{Logger: logger, Registerer: prometheus.NewRegistry(), StateDir: tmp}); err != nil {
			errs = append(errs, err)
		} else {
			errs = append(errs, quietAfterErr(cfg, src))
		}
	}
	return errors.Join(errs...)
}

// buildSource builds cfg's source and says which origins the dead man's
// switch watches: the source's, or none when it cannot say (then
// quiet_after is refused: quietAfterErr).
func buildSource(ctx context.Context, cfg *config.Config, deps source.Deps) (source.Source, []string, error) {
	src, err := cfg.Source.Build(ctx, deps)
	if err != nil {
		return nil, nil, err
	}
	var origins []string
	if o, ok := src.(source.Origins); ok {
		origins = o.Origins()
	}
	return src, origins, nil
}

// quietAfterErr refuses quiet_after with a source that does not say which
// origins to expect.
func quietAfterErr(cfg *config.Config, src source.Source) error {
	if _, ok := src.(source.Origins); !ok && cfg.QuietAfter > 0 {
		return fmt.Errorf("%s: quiet_after needs a source whose log groups are known in advance (source.cloudwatch), not source.%s", cfg.File, cfg.Source.Type)
	}
	return nil
}

// withSharedState, when cfg has shared_state, checks that its table
// answers (refused at start, not at the first alert: a missing table
// cannot clear), wraps every notifier of targets with the shared delivery
// ledger, so that an alert several processes hold reaches each notifier
// once, and returns the shared store of dedup windows, thresholds and
// silences in the same table.
func withSharedState(ctx context.Context, cfg *config.Config, targets map[string]notifiers.Notifier, logger *slog.Logger, reg prometheus.Registerer) (*dynamostate.LifecycleStore, error) {
	ss := cfg.SharedState
	if ss == nil {
		return nil, nil
	}
	ledger, shared, err := sharedState(ctx, ss.DynamoDBTable, cfg.SharedStateRegion(),
		dynamostate.Options{Lease: ss.Lease, TTL: ss.TTL, Logger: logger, Registerer: reg})
	if err != nil {
		return nil, err
	}
	if err := shared.Check(ctx); err != nil {
		return nil, err
	}
	for name, n := range targets {
		targets[name] = dynamostate.NewNotifier(name, n, ledger, dynamostate.NotifierOptions{Logger: logger})
	}
	if len(targets) > 0 {
		logger.Info("deliveries, dedup windows, thresholds and silences are shared", "table", ss.DynamoDBTable)
	}
	return shared, nil
}

// openLifecycle opens run's alert lifecycle: its state in state_dir (or
// shared), storm control per notifier.
func openLifecycle(cfg *config.Config, shared *dynamostate.LifecycleStore, logger *slog.Logger, reg prometheus.Registerer) (*lifecycle.Lifecycle, error) {
	opts := lifecycle.Options{StateDir: cfg.StateDir, Storm: StormControl(cfg), Logger: logger, Registerer: reg}
	if shared != nil {
		opts.Shared, opts.SharedSilences = shared, shared
	}
	return lifecycle.Open(cfg.Lifecycle, opts)
}

// Run runs the pipeline until ctx ends or the source fails; nil on a clean
// shutdown.
func (s *Service) Run(ctx context.Context) error { return s.Engine.Run(ctx) }

// Swap puts the rules of set and the routes of cfg in force between two
// batches (a reload).
func (s *Service) Swap(cfg *config.Config, set *rules.Set) { s.Engine.Decider.Swap(set, Router(cfg)) }

// Notifiers are the notifiers by name.
func (s *Service) Notifiers() map[string]notifiers.Notifier { return s.targets }

// Origins are the log groups the source reads, when it knows them.
func (s *Service) Origins() []string { return s.origins }

// ReadyChecks are /readyz's conditions: the source reads (if it can say),
// state_dir is writable, a notifier is configured, and none is parked on
// a long Retry-After (delivery).
func (s *Service) ReadyChecks() []engine.Check {
	ready := func(context.Context) error { return nil }
	if r, ok := s.src.(source.Ready); ok {
		ready = r.Ready
	}
	n := len(s.targets)
	return []engine.Check{
		{Name: "source", Func: ready},
		{Name: "state_dir", Func: engine.DirWritable(s.cfg.StateDir)},
		{Name: "notifiers", Func: func(context.Context) error {
			if n == 0 {
				return errors.New("no notifier is configured: alerts go nowhere")
			}
			return nil
		}},
		{Name: "delivery", Func: s.ob.CheckParked},
	}
}

// Close closes the notifiers and the outbox.
func (s *Service) Close() {
	if s.closeOnce {
		return
	}
	s.closeOnce = true
	CloseNotifiers(s.targets, s.log)
	if s.ob != nil {
		if err := s.ob.Close(); err != nil {
			s.log.Warn("close outbox", "err", err)
		}
	}
}
