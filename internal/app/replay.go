package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/trailwatch/trailwatch/engine/decide"
	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/engine/outbox"
	"github.com/trailwatch/trailwatch/internal/config"
	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// ReplayOptions are `trailwatch replay`'s settings.
type ReplayOptions struct {
	// Raw decides without the lifecycle: every rule match is an alert.
	Raw bool
	// DedupWindow is the lifecycle's dedup window for rules without one.
	DedupWindow time.Duration
	// StateDir, if set, supplies the live service's silences, read only.
	StateDir string
	// Notify sends the alerts through the configuration's routes and
	// notifiers (it needs a configuration).
	Notify bool
	// OnRuleError reports a rule that failed on an event.
	OnRuleError func(rules.MatchError, *cloudtrail.Event)
	// Logger receives the delivery's warnings; nil discards.
	Logger *slog.Logger
}

// Replay is what `trailwatch replay` decides with: the same decision
// function as run, with the lifecycle's windows in memory and, with
// Notify, the configuration's routes and storm control, delivering from a
// private outbox (the service's own is locked while it runs, and replayed
// alerts must not mix with live ones) with the service's retries,
// Retry-After handling and dead letters.
type Replay struct {
	// Evaluator evaluates the records (replay runs it through Parallel).
	Evaluator *decide.Evaluator

	decider *decide.Decider
	dir     string
	ob      *outbox.Outbox
	targets map[string]notifiers.Notifier
	used    map[string]bool
	queued  int
	log     *slog.Logger
}

// NewReplay builds replay's decision function for set; cfg may be nil
// without Notify.
func NewReplay(ctx context.Context, cfg *config.Config, set *rules.Set, opts ReplayOptions) (_ *Replay, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Replay{
		Evaluator: decide.NewEvaluator(set, decide.EvaluatorOptions{OnRuleError: opts.OnRuleError}),
		used:      map[string]bool{}, log: opts.Logger,
	}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	var route decide.Router
	var storm map[string]lifecycle.StormConfig
	if opts.Notify {
		if cfg == nil {
			return nil, errors.New("notify needs a configuration (its notifiers and routes)")
		}
		if r.targets, err = cfg.BuildNotifiers(ctx, config.Deps{Logger: opts.Logger}); err != nil {
			return nil, err
		}
		if r.dir, err = os.MkdirTemp("", "trailwatch-replay-"); err != nil {
			return nil, err
		}
		if r.ob, err = outbox.Open(filepath.Join(r.dir, outbox.FileName), outbox.Options{Logger: opts.Logger}); err != nil {
			return nil, err
		}
		route, storm = Router(cfg), StormControl(cfg)
	}
	var lc *lifecycle.Lifecycle
	if !opts.Raw {
		lc, err = lifecycle.Open(lifecycle.Config{DedupWindow: opts.DedupWindow},
			lifecycle.Options{StateDir: opts.StateDir, ReadOnlySilences: true, Storm: storm})
		if err != nil {
			return nil, err
		}
	}
	r.decider = decide.New(r.Evaluator, route, decide.Options{Lifecycle: lc})
	return r, nil
}

// Decide runs the matches of one record through the decision function and
// queues their deliveries; with flush (and no matches, at the end) it
// delivers the storm digests still pending. It returns the alerts the
// lifecycle let through, before routing and storm control (what replay
// prints).
func (r *Replay) Decide(ctx context.Context, ms []decide.Match, flush bool) ([]lifecycle.Output, error) {
	x := r.decider.Begin(ctx)
	defer x.Rollback()
	x.Matches(ms)
	res, err := x.Finish(flush)
	if err != nil {
		return nil, err
	}
	if err := x.Commit(); err != nil {
		return nil, err
	}
	if r.ob == nil || len(res.Items) == 0 {
		return res.Alerts, nil
	}
	items := make([]outbox.Item, len(res.Items))
	for i, it := range res.Items {
		r.used[it.Notifier] = true
		items[i] = outbox.Item{Key: it.Key, Notifier: it.Notifier, Alert: it.Alert}
	}
	n, err := r.ob.Enqueue(ctx, items...)
	r.queued += n
	return res.Alerts, err
}

// ErrInterrupted is Deliver's error when ctx ended with deliveries pending.
var ErrInterrupted = errors.New("interrupted")

// Deliver runs the private outbox until every queued delivery was
// delivered or dead-lettered, and returns how many were queued and the
// dead letters. When ctx ends first it returns ErrInterrupted, saying how
// many are pending.
func (r *Replay) Deliver(ctx context.Context) (queued int, dead []outbox.Entry, err error) {
	if r.ob == nil {
		return 0, nil, nil
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.ob.Run(runCtx, r.targets) }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for pending := r.pending(); pending > 0; pending = r.pending() {
		select {
		case <-ctx.Done():
			stop()
			<-done
			return r.queued, nil, fmt.Errorf("%w with %d deliveries pending", ErrInterrupted, pending)
		case <-tick.C:
		}
	}
	stop()
	<-done
	dead, err = r.ob.List(outbox.Dead)
	return r.queued, dead, err
}

func (r *Replay) pending() int {
	n := 0
	for name := range r.used {
		n += r.ob.Depth(name)
	}
	return n
}

// Close closes the notifiers and removes the private outbox.
func (r *Replay) Close() {
	CloseNotifiers(r.targets, r.log)
	if r.ob != nil {
		r.ob.Close()
	}
	if r.dir != "" {
		os.RemoveAll(r.dir)
	}
}
