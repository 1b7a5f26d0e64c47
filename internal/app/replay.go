package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/trailwatch/trailwatch/engine/decide"
	"github.com/trailwatch/trailwatch/engine/files"
	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/engine/outbox"
	"github.com/trailwatch/trailwatch/engine/s3files"
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
	// Evaluator evaluates the records (Read runs it through
	// decide.Parallel); its Stats are replay's counts.
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
// prints), valid until the next call (decide.Decider.DecideMatches).
func (r *Replay) Decide(ctx context.Context, ms []decide.Match, flush bool) ([]lifecycle.Output, error) {
	res, err := r.decider.DecideMatches(ctx, ms, flush)
	if err != nil {
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

// ReplayInput is what Replay.Read reads, and whom it tells what it finds.
type ReplayInput struct {
	// Paths are files, directories, "-" (Stdin) and s3:// URIs, read as
	// files.Walk and s3files.Walk read them.
	Paths []string
	// Stdin is read for "-".
	Stdin io.Reader
	// Workers decode and evaluate records (0: one per core); the result is
	// the same for any number.
	Workers int
	// S3Stats, if set, counts what was read from S3.
	S3Stats *s3files.Stats
	// Alerts receives, in input order, the alerts each record raised (see
	// Decide), and with Notify the storm digests pending at the end. The
	// slice is valid only during the call; an error stops the reading.
	Alerts func([]lifecycle.Output) error
	// Skipped receives, in its place among the alerts, each input or
	// record that could not be read as CloudTrail.
	Skipped func(place string, err error)
	// Progress, if set, is called every 1024 records with how many were
	// read and the file being read.
	Progress func(read int, file string)
}

// replayItem is what Read hands through decide.Parallel with each record:
// where it was read, or an input that could not be read, whose report
// keeps its place among the records'.
type replayItem struct {
	rec files.Record // Data is nil: the record's bytes travel on their own
	bad *files.BadInput
}

// Read reads in's paths, evaluates every record on Workers goroutines and
// decides the matches in input order (Decide), so that the alerts and
// the reports come out exactly as a sequential replay gives them. With
// Notify, the storm digests still pending at the end are decided too.
func (r *Replay) Read(ctx context.Context, in ReplayInput) error {
	emit := func(m replayItem, matches []decide.Match, err error) error {
		switch {
		case m.bad != nil:
			in.Skipped(m.bad.Place, m.bad.Err)
			return nil
		case err != nil:
			in.Skipped(m.rec.Place(), err)
			return nil
		}
		return r.decideAll(ctx, &in, matches, false)
	}
	// Decide copies what it keeps of the matches' events (alerts,
	// lifecycle state, outbox items): Parallel may reuse them.
	par := decide.NewParallel(r.Evaluator, decide.ParallelOptions{Workers: in.Workers, ReuseEvents: true}, emit)
	read := 0
	err := s3files.Walk(ctx, in.Paths, s3files.Options{Options: files.Options{Stdin: in.Stdin}, Stats: in.S3Stats}, func(rec files.Record) error {
		read++
		if read%1024 == 0 && in.Progress != nil {
			in.Progress(read, rec.File)
		}
		data := rec.Data
		rec.Data = nil
		return par.Add(data, replayItem{rec: rec})
	}, func(b *files.BadInput) {
		// Keep the report in its place among the records' own.
		_ = par.Pass(replayItem{bad: b})
	})
	if cerr := par.Close(); err == nil {
		err = cerr
	}
	if err == nil && r.ob != nil {
		err = r.decideAll(ctx, &in, nil, true)
	}
	return err
}

// decideAll decides one record's matches (none with flush: the storm
// digests pending at the end) and hands the alerts on.
func (r *Replay) decideAll(ctx context.Context, in *ReplayInput, ms []decide.Match, flush bool) error {
	alerts, err := r.Decide(ctx, ms, flush)
	if err != nil {
		return err
	}
	if len(alerts) == 0 {
		return nil
	}
	return in.Alerts(alerts)
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
