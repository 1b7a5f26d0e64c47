package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/trailwatch/trailwatch/engine"
	"github.com/trailwatch/trailwatch/internal/config"
	"github.com/trailwatch/trailwatch/rules"
)

// RunOptions are `trailwatch run`'s settings besides the configuration.
type RunOptions struct {
	// ConfigPath is the configuration file, read again on each reload.
	ConfigPath string
	// RulePaths are --rules; empty means the configuration's rules.
	RulePaths []string
	// Watch reloads when a watched file changes, as reload.watch does
	// (--watch).
	Watch bool
	// Reload asks for a reload with each value (SIGHUP); nil never.
	Reload <-chan struct{}
	// Logger receives the service's logs; nil discards.
	Logger *slog.Logger
	// Registry receives the metrics and serves them on listen:; nil is a
	// new registry.
	Registry *prometheus.Registry
	// AcceptEmptyOutbox is --accept-empty-outbox (Options.AcceptEmptyOutbox).
	AcceptEmptyOutbox bool
}

// Run is `trailwatch run`: it builds the service for cfg and set (loaded
// from ConfigPath), serves metrics and health on cfg.Listen, reloads the
// rules and routes on Reload or, with watching, when a watched file
// changes, and runs until ctx ends (nil) or the source fails.
func Run(ctx context.Context, cfg *config.Config, set *rules.Set, opts RunOptions) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	r := &runner{
		cfgPath: opts.ConfigPath, rulePaths: opts.RulePaths, logger: opts.Logger,
		reg: opts.Registry, reload: opts.Reload, watch: opts.Watch,
		acceptEmpty: opts.AcceptEmptyOutbox,
	}
	return r.run(ctx, cfg, set)
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
	// acceptEmpty is --accept-empty-outbox.
	acceptEmpty bool

	// watchPaths are the rule paths of the newest configuration that
	// loaded: what the next reload will read.
	watchPaths []string

	svc     *Service
	started *config.Config // the configuration the process started with

	reloadFailures prometheus.Counter
	reloadSuccess  prometheus.Gauge
	reloads        *prometheus.CounterVec
}

// run wires and runs the live pipeline until ctx ends.
func (r *runner) run(ctx context.Context, cfg *config.Config, set *rules.Set) error {
	logger, reg := r.logger, r.reg
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

	svc, err := NewService(ctx, cfg, set, Options{Logger: logger, Registerer: reg, AcceptEmptyOutbox: r.acceptEmpty})
	if err != nil {
		if ctx.Err() != nil {
			// Stopped during the start-up checks: a clean shutdown.
			return nil
		}
		return err
	}
	defer svc.Close()
	r.svc = svc
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
			return err
		}
		defer fw.close()
		fw.sync(r.watchRoots())
		logger.Info("watching the configuration and rules for changes", "paths", r.watchRoots(), "debounce", debounce.String())
	}

	if cfg.Listen != "" {
		stop, err := r.serve(cfg)
		if err != nil {
			return err
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

	attrs := []any{"source", cfg.Source.Type}
	if o := svc.Origins(); len(o) > 0 {
		// Only a source that knows its origins in advance (CloudWatch
		// Logs) has them to show.
		attrs = append(attrs, "log_groups", o)
	}
	logger.Info("trailwatch running", append(attrs, "rules", set.Len(), "notifiers", len(svc.Notifiers()),
		"state_dir", cfg.StateDir, "listen", cfg.Listen, "quiet_after", cfg.QuietAfter.String())...)
	if err := r.svc.Run(ctx); err != nil {
		return err
	}
	logger.Info("trailwatch stopped")
	return nil
}

// serve starts the metrics and health endpoints on cfg.Listen; stop shuts
// them down.
func (r *runner) serve(cfg *config.Config) (stop func(), err error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics on %s: %w", cfg.Listen, err)
	}
	h := engine.NewHTTPHandler(r.reg, r.logger, r.svc.ReadyChecks()...)
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
	for name, n := range r.svc.Notifiers() {
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
		if _, ok := r.svc.Notifiers()[n.Name]; !ok {
			added = append(added, n.Name)
		}
	}
	if len(added) > 0 {
		log.Error("reload adds notifiers; restart trailwatch to add notifiers", "notifiers", added)
		return fmt.Errorf("reload: new notifiers %v need a restart", added)
	}
	r.warnRestartOnly(cfg)
	r.svc.Swap(cfg, set)
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
