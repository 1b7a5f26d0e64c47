// Package decide is trailwatch's one decision function: what becomes of a
// batch of raw records. Every path that turns records into deliveries goes
// through it, the same way: `run` (engine.Service, whatever the source),
// the Lambda function (engine/subscription), and `replay`.
//
//	records ──► Evaluator (decode, match: Match = alert + rule + decoded event)
//	        ──► alert lifecycle (silences, thresholds, dedup windows)
//	        ──► Router (the notifiers each alert goes to)
//	        ──► storm control per notifier (alerts above a rate fold into digests)
//	        ──► Items (one alert for one notifier, with its idempotency key)
//
// A Decision is one batch: Begin, feed it records (or matches evaluated
// elsewhere, by Parallel), Finish to get the items, hand the items on (the
// outbox, or the Lambda's deliveries), then Commit the lifecycle's changes,
// or Rollback when the hand-off failed so that the batch, read again, is
// decided the same way.
package decide

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/engine/source"
	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
)

// Router picks the notifiers an alert goes to; rule is the rule that
// raised it (nil for trailwatch's built-in alerts).
type Router func(a *notifiers.Alert, rule *rules.Rule) []string

// Item is one alert due to one notifier.
type Item struct {
	// Key is the idempotency key: the same for the same rule and
	// CloudTrail event (or digest) however often the record is read.
	Key      string
	Notifier string
	Alert    notifiers.Alert
}

// Options are a Decider's collaborators besides the evaluator and router.
type Options struct {
	// Lifecycle, if set, applies silences, thresholds, dedup windows and
	// storm control; its changes are kept only when the Decision is
	// committed. Nil sends every match as its own alert.
	Lifecycle *lifecycle.Lifecycle
	// Logger receives alerts that go nowhere; nil discards.
	Logger *slog.Logger
	// Metrics, if set, counts records and alerts.
	Metrics *Metrics
	// Now is the clock of the lag metric; nil means time.Now.
	Now func() time.Time
}

// Decider decides batches. It is safe for concurrent use: decisions are
// taken one at a time (Begin waits for the previous one to end), and Swap
// waits for the current one, so that a batch sees one rule set and one
// router from start to end.
type Decider struct {
	ev   *Evaluator
	opts Options
	log  *slog.Logger

	// mu is held from Begin to Commit or Rollback.
	mu    sync.Mutex
	route Router

	// again is DecideMatches' finished decision, whose memory its next
	// call reuses (nil while a call uses it).
	again atomic.Pointer[Decision]
}

// New returns a Decider that evaluates with ev and routes with route.
func New(ev *Evaluator, route Router, opts Options) *Decider {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Decider{ev: ev, opts: opts, log: log, route: route}
}

// Evaluator returns the Decider's evaluator.
func (d *Decider) Evaluator() *Evaluator { return d.ev }

// Lifecycle returns the Decider's alert lifecycle (nil when there is none).
func (d *Decider) Lifecycle() *lifecycle.Lifecycle { return d.opts.Lifecycle }

// Swap replaces the rule set and the router between two decisions: the
// decision under way finishes with the old ones. A nil argument keeps the
// current one.
func (d *Decider) Swap(set *rules.Set, route Router) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if set != nil {
		d.ev.SetRules(set)
	}
	if route != nil {
		d.route = route
	}
}

// Begin starts a decision. It waits until the previous decision was
// committed or rolled back. ctx is used for the shared lifecycle state's
// requests.
func (d *Decider) Begin(ctx context.Context) *Decision {
	d.mu.Lock()
	x := &Decision{d: d, route: d.route}
	if d.opts.Lifecycle != nil {
		x.lb = d.opts.Lifecycle.BeginContext(ctx)
	}
	return x
}

// DecideMatches is one decision of matches evaluated elsewhere: Begin,
// Matches(ms), Finish(flush) and Commit, for a caller that decides record
// by record, as replay does, and hands the result on after the commit.
// The decision (and its lifecycle batch, and its result's slices) is made
// in the memory of the previous call's, which nothing else ever sees: the
// Result is valid only until the next call, from any goroutine.
func (d *Decider) DecideMatches(ctx context.Context, ms []Match, flush bool) (Result, error) {
	prev := d.again.Swap(nil)
	d.mu.Lock()
	x := prev
	var lb *lifecycle.Batch
	if x == nil {
		x = new(Decision)
	} else {
		lb = x.lb
		clear(x.res.Alerts) // drop what they refer to
		clear(x.res.Items)
		clear(x.seen)
		*x = Decision{res: Result{Alerts: x.res.Alerts[:0], Items: x.res.Items[:0]}, seen: x.seen, buf: x.buf[:0]}
	}
	x.d, x.route = d, d.route
	if d.opts.Lifecycle != nil {
		x.lb = d.opts.Lifecycle.BeginReusing(ctx, lb)
	}
	defer func() {
		x.Rollback() // after Commit it does nothing
		d.again.Store(x)
	}()
	x.Matches(ms)
	res, err := x.Finish(flush)
	if err != nil {
		return Result{}, err
	}
	return res, x.Commit()
}

// Route returns the items of trailwatch's built-in alerts (the dead man's
// switch's), outside any decision: they have no rule, so the lifecycle and
// storm control do not apply, and they are routed with the current router.
func (d *Decider) Route(alerts ...notifiers.Alert) []Item {
	d.mu.Lock()
	route := d.route
	d.mu.Unlock()
	var items []Item
	for _, a := range alerts {
		items = d.routeOne(items, route, nil, lifecycle.Output{Key: a.DedupKey, Alert: a}, nil, true)
	}
	return items
}

// Decision is the decision of one batch. It is used by one goroutine.
type Decision struct {
	d     *Decider
	lb    *lifecycle.Batch // nil without a lifecycle
	route Router
	res   Result
	seen  map[[2]string]bool // (key, notifier) of the items so far
	buf   []Match
	done  bool
}

// Result is what a decision produced.
type Result struct {
	// Records were evaluated; Skipped were not CloudTrail records.
	Records, Skipped int
	// Alerts are what the lifecycle let through, in order, before routing
	// and storm control (what `replay` prints).
	Alerts []lifecycle.Output
	// Items are the deliveries due: each alert once for every notifier its
	// route names and storm control admits, then the storm digests due.
	// A (key, notifier) pair appears once.
	Items []Item
}

// Records evaluates and decides each record; skipped, if set, is told of
// each record that is not a CloudTrail record (it is counted and skipped).
func (x *Decision) Records(recs []source.Record, skipped func(source.Record, error)) {
	for _, r := range recs {
		if err := x.Record(r.Data); err != nil && skipped != nil {
			skipped(r, err)
		}
	}
}

// Record evaluates one raw record and decides its matches. It returns the
// evaluation's error for a record that is not a CloudTrail record, which
// is counted and skipped.
func (x *Decision) Record(raw []byte) error {
	var err error
	x.buf, err = x.d.ev.Evaluate(raw, x.buf[:0])
	if m := x.d.opts.Metrics; m != nil {
		if err != nil {
			m.RecordsSkipped.Inc()
		} else {
			m.RecordsRead.Inc()
		}
	}
	if err != nil {
		x.res.Skipped++
		return err
	}
	x.res.Records++
	x.Matches(x.buf)
	clear(x.buf) // drop the events
	return nil
}

// Matches decides matches evaluated elsewhere (by Parallel), in order. An
// alert that goes out is completed (lifecycle.Complete: its summary and
// record JSON, if the evaluator left them out; see Match).
func (x *Decision) Matches(ms []Match) {
	for i := range ms {
		m := &ms[i]
		n := len(x.res.Alerts)
		if x.lb != nil {
			x.res.Alerts = x.lb.ProcessAppend(x.res.Alerts, m.Alert, m.Rule, m.Event)
		} else {
			x.res.Alerts = append(x.res.Alerts, lifecycle.Output{Key: m.Alert.DedupKey, Alert: m.Alert})
			lifecycle.Complete(&x.res.Alerts[n].Alert, m.Rule, m.Event)
		}
		for _, o := range x.res.Alerts[n:] {
			x.res.Items = x.d.routeOne(x.res.Items, x.route, x.lb, o, m.Rule, false)
		}
	}
}

// Builtin decides trailwatch's built-in alerts (a log group resumed) with
// the batch: routed, not run through the lifecycle or storm control.
func (x *Decision) Builtin(alerts ...notifiers.Alert) {
	for _, a := range alerts {
		x.res.Items = x.d.routeOne(x.res.Items, x.route, nil, lifecycle.Output{Key: a.DedupKey, Alert: a}, nil, true)
	}
}

// Finish ends the feeding: it appends the storm digests that are due (all
// pending ones with flush, for a run that ends, as replay does) and
// returns the result. An error means the shared lifecycle state could not
// be read or written: nothing of the batch may be handed on, and the
// batch read again is decided the same way.
func (x *Decision) Finish(flush bool) (Result, error) {
	if x.lb != nil {
		if err := x.lb.Err(); err != nil {
			return x.res, err
		}
		var ds []lifecycle.DigestOutput
		if flush {
			ds = x.lb.FlushDigests()
		} else {
			ds = x.lb.Digests()
		}
		for _, dg := range ds {
			x.res.Items = append(x.res.Items, Item{Key: dg.Key, Notifier: dg.Notifier, Alert: dg.Alert})
		}
	}
	// One item a (key, notifier): a record delivered twice in a batch
	// without a lifecycle would otherwise race for one delivery.
	if len(x.res.Items) < 2 && x.seen == nil {
		return x.res, nil // nothing to drop (and no map to make)
	}
	if x.seen == nil {
		x.seen = make(map[[2]string]bool, len(x.res.Items))
	}
	out := x.res.Items[:0]
	for _, it := range x.res.Items {
		k := [2]string{it.Key, it.Notifier}
		if !x.seen[k] {
			x.seen[k] = true
			out = append(out, it)
		}
	}
	x.res.Items = out
	return x.res, nil
}

// Commit keeps the lifecycle's changes: call it once the items are safely
// handed on. It ends the decision.
func (x *Decision) Commit() error {
	if x.done {
		return nil
	}
	x.done = true
	defer x.d.mu.Unlock()
	if x.lb != nil {
		return x.lb.Commit()
	}
	return nil
}

// Rollback drops the lifecycle's changes and ends the decision; after
// Commit it does nothing, so it can be deferred.
func (x *Decision) Rollback() {
	if x.done {
		return
	}
	x.done = true
	defer x.d.mu.Unlock()
	if x.lb != nil {
		x.lb.Rollback()
	}
}

// routeOne appends an item for each notifier o goes to; with lb, storm
// control may fold it into a digest instead. builtin alerts are counted
// without a lag (their time is not a record's).
func (d *Decider) routeOne(items []Item, route Router, lb *lifecycle.Batch, o lifecycle.Output, rule *rules.Rule, builtin bool) []Item {
	if m := d.opts.Metrics; m != nil {
		if builtin {
			m.Alerts.WithLabelValues(o.Alert.RuleID, o.Alert.Severity).Inc()
		} else {
			m.observeAlert(&o.Alert, d.opts.Now())
		}
	}
	if route == nil {
		return items
	}
	// The router gets a copy (it is handed a pointer, and could keep it):
	// made only when there is a router (replay without --notify has none).
	a := o.Alert
	targets := route(&a, rule)
	if len(targets) == 0 {
		d.log.Warn("alert matches no route and its rule names no notifier; it is not delivered",
			"rule", a.RuleID, "event_id", a.EventID)
		return items
	}
	for _, t := range targets {
		if lb != nil && !lb.Admit(t, o) {
			continue
		}
		items = append(items, Item{Key: o.Key, Notifier: t, Alert: a})
	}
	return items
}
