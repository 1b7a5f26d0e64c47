package outbox

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/trailwatch/trailwatch/notifiers"
)

// errAttemptTimeout is the cause of an attempt's context cancellation when
// AttemptTimeout runs out.
var errAttemptTimeout = errors.New("notify attempt timed out")

// drainStatus is what a drainer is doing, for tests and debugging.
type drainStatus int

const (
	statusStarting drainStatus = iota
	statusIdle                 // queue empty, waiting for Enqueue
	statusWaiting              // head is backing off until a time
	statusSending              // Notify in flight
	statusStopped
)

// drainer delivers one notifier's queue.
type drainer struct {
	name string
	n    notifiers.Notifier

	mu     sync.Mutex
	status drainStatus
	until  time.Time
}

func (d *drainer) set(s drainStatus, until time.Time) {
	d.mu.Lock()
	d.status, d.until = s, until
	d.mu.Unlock()
}

func (d *drainer) get() (drainStatus, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status, d.until
}

// Run delivers the outbox to targets, one goroutine per notifier, until ctx
// is cancelled, and purges old entries every PurgeInterval. It returns nil
// after ctx is cancelled and every drainer has stopped: an in-flight Notify
// sees its context cancelled and is waited for, and its entry stays pending
// with its attempt uncounted unless the call succeeded. Notifiers must
// therefore honour their context.
//
// Entries for a notifier absent from targets stay pending; Run logs them.
// With a Registerer, trailwatch_outbox_depth is exported for every target
// from the start, 0 when nothing is pending.
func (o *Outbox) Run(ctx context.Context, targets map[string]notifiers.Notifier) error {
	if o.opts.ReadOnly {
		return errors.New("run outbox: opened read-only")
	}
	o.mu.Lock()
	if o.running {
		o.mu.Unlock()
		return fmt.Errorf("run outbox: %w", ErrRunning)
	}
	for name, n := range targets {
		if n == nil {
			o.mu.Unlock()
			return fmt.Errorf("run outbox: notifier %q is nil", name)
		}
	}
	o.running = true
	o.drains = make(map[string]*drainer, len(targets))
	for name, n := range targets {
		o.drains[name] = &drainer{name: name, n: n}
		if o.metrics != nil {
			// Every configured notifier has a depth from the start, zero
			// included, so that an alert on it has a series to watch.
			// Set under mu, so that a concurrent Enqueue's value wins.
			o.metrics.depth.WithLabelValues(name).Set(float64(o.depth[name]))
		}
	}
	var orphans []string
	for name, depth := range o.depth {
		if _, ok := targets[name]; !ok && depth > 0 {
			orphans = append(orphans, name)
		}
	}
	drains := o.drains
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.running = false
		o.mu.Unlock()
	}()

	sort.Strings(orphans)
	for _, name := range orphans {
		o.log.Warn("outbox has pending alerts for a notifier that is not configured; they wait until it is",
			"notifier", name, "pending", o.Depth(name))
	}

	var wg sync.WaitGroup
	for _, d := range drains {
		wg.Go(func() {
			o.drain(ctx, d)
			d.set(statusStopped, time.Time{})
		})
	}
	if o.opts.PurgeInterval > 0 {
		wg.Go(func() { o.purgeLoop(ctx) })
	}
	wg.Wait()
	return nil
}

func (o *Outbox) after(d time.Duration) <-chan time.Time {
	if o.opts.After != nil {
		return o.opts.After(d)
	}
	return time.After(d)
}

func (o *Outbox) purgeLoop(ctx context.Context) {
	for {
		n, err := o.Purge()
		if err != nil {
			o.log.Error("purge outbox", "err", err)
		} else if n > 0 {
			o.log.Debug("purged outbox entries past retention", "entries", n, "retention", o.opts.Retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-o.after(o.opts.PurgeInterval):
		}
	}
}

// heldElsewhere is implemented by a notifier's error that says another
// process holds the alert's delivery until a time (it is sending it now,
// or died holding it): engine/dynamostate's busy deliveries. Such an
// entry is tried again by then, sooner while its backoff is shorter (a
// live sender finishes in moments), and meanwhile the drainer steps past
// it to the entries behind it, so that one stuck claim delays only its
// own alert.
type heldElsewhere interface {
	HeldUntil() time.Time
}

// heldUntil returns when the holder's claim runs out, if err says the
// delivery is held elsewhere.
func heldUntil(err error) (time.Time, bool) {
	var h heldElsewhere
	if errors.As(err, &h) {
		return h.HeldUntil(), true
	}
	return time.Time{}, false
}

// heldMargin is added to a holder's claim so that the next attempt finds
// it run out.
const heldMargin = 250 * time.Millisecond

// drain is one notifier's loop: deliver the first entry that is due, or
// wait for it, or wait for Enqueue. Entries are delivered in order, except
// that entries held elsewhere (see heldElsewhere) are stepped over until
// they are due again.
func (o *Outbox) drain(ctx context.Context, d *drainer) {
	wake := o.wakeChan(d.name)
	// pause waits after a storage error, so that a full disk does not turn
	// the loop into a spin.
	pause := func() bool {
		timer := o.after(o.opts.InitialBackoff)
		d.set(statusWaiting, o.opts.Now().Add(o.opts.InitialBackoff))
		select {
		case <-ctx.Done():
			return false
		case <-timer:
			return true
		}
	}
	for ctx.Err() == nil {
		now := o.opts.Now()
		seq, rec, heldDue, err := o.next(d.name, now)
		if err != nil {
			o.log.Error("read outbox queue", "notifier", d.name, "err", err)
			if !pause() {
				return
			}
			continue
		}
		if rec == nil && heldDue.IsZero() {
			d.set(statusIdle, time.Time{})
			select {
			case <-ctx.Done():
				return
			case <-wake:
			}
			continue
		}
		if rec == nil {
			// Only entries held elsewhere, none due: wait for the first of
			// them, or for a new entry, which may go at once.
			// The timer exists before the status says so, so that whoever
			// reads the status and moves a fake clock cannot miss it.
			// The wait is measured from the clock as it is now, not as it
			// was before next read the queue, so the timer fires at the
			// time the status gives.
			timer := o.after(heldDue.Sub(o.opts.Now()))
			d.set(statusWaiting, heldDue)
			select {
			case <-ctx.Done():
				return
			case <-timer:
			case <-wake:
			}
			continue
		}
		if rec.NextAttempt.After(now) {
			// The entries behind this one wait for it (first in, first
			// out); an entry held elsewhere before it may come due first.
			// Enqueue only appends behind it, so there is no need to
			// listen to wake here; a signal left in it costs one re-read.
			due := rec.NextAttempt
			if !heldDue.IsZero() && heldDue.Before(due) {
				due = heldDue
			}
			timer := o.after(due.Sub(o.opts.Now()))
			d.set(statusWaiting, due)
			select {
			case <-ctx.Done():
				return
			case <-timer:
			}
			continue
		}
		alert, err := alertOf(rec)
		if err != nil {
			err = notifiers.Permanent(fmt.Errorf("decode stored alert: %w", err))
		} else {
			d.set(statusSending, time.Time{})
			err = o.attempt(ctx, d.n, alert)
			if err != nil && ctx.Err() != nil {
				// Shutting down: the failure is ours, not the notifier's.
				return
			}
		}
		if serr := o.settle(d.name, seq, rec, alert, err); serr != nil {
			o.log.Error("record outbox delivery", "notifier", d.name, "key", rec.Key, "err", serr)
			if !pause() {
				return
			}
		}
	}
}

// next returns the first pending entry of notifier that is not held
// elsewhere until after now (a nil record when there is none), and the
// earliest time one of the held entries it stepped over is due (zero when
// none).
func (o *Outbox) next(notifier string, now time.Time) (seq uint64, rec *record, heldDue time.Time, err error) {
	err = o.view(func(tx *bolt.Tx) error {
		nb, err := notifierBucket(tx, notifier, false)
		if err != nil || nb == nil {
			return err
		}
		c := nb.Bucket(bPending).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			r, err := getRecord(nb, seqOf(k))
			if err != nil {
				return err
			}
			if r.Held && r.NextAttempt.After(now) {
				if heldDue.IsZero() || r.NextAttempt.Before(heldDue) {
					heldDue = r.NextAttempt
				}
				continue
			}
			seq, rec = seqOf(k), r
			return nil
		}
		return nil
	})
	return seq, rec, heldDue, err
}

// attempt calls Notify once under AttemptTimeout.
func (o *Outbox) attempt(ctx context.Context, n notifiers.Notifier, a notifiers.Alert) error {
	var (
		actx   context.Context
		cancel func()
	)
	if o.opts.After == nil {
		// The real clock: a real deadline, which HTTP clients can see.
		var c context.CancelFunc
		actx, c = context.WithTimeoutCause(ctx, o.opts.AttemptTimeout, errAttemptTimeout)
		cancel = c
	} else {
		c, cc := context.WithCancelCause(ctx)
		done := make(chan struct{})
		timeout := o.opts.After(o.opts.AttemptTimeout)
		go func() {
			select {
			case <-timeout:
				cc(errAttemptTimeout)
			case <-done:
			}
		}()
		actx = c
		cancel = func() { close(done); cc(context.Canceled) }
	}
	err := n.Notify(actx, a)
	timedOut := errors.Is(context.Cause(actx), errAttemptTimeout)
	cancel()
	if err != nil && timedOut && ctx.Err() == nil {
		return fmt.Errorf("%w after %s: %w", errAttemptTimeout, o.opts.AttemptTimeout, err)
	}
	return err
}

// settle records the outcome of an attempt on the head entry seq.
func (o *Outbox) settle(notifier string, seq uint64, rec *record, alert notifiers.Alert, sendErr error) error {
	now := o.opts.Now()
	r := *rec
	r.Attempts++
	r.Held = false
	outcome := outcomeSent
	var wait time.Duration
	switch {
	case sendErr == nil:
		r.State = Delivered
		r.DeliveredAt = now
		r.NextAttempt = time.Time{}
	case notifiers.IsPermanent(sendErr):
		outcome = outcomeDead
		r.State = Dead
		r.DeadAt = now
		r.NextAttempt = time.Time{}
		r.LastError = redactedError(sendErr)
	default:
		r.LastError = redactedError(sendErr)
		after, hinted := notifiers.RetryAfter(sendErr)
		if hinted && after > 0 {
			wait = after
		} else {
			hinted = false
			wait = o.backoff(r.Attempts, r.Backoff)
		}
		if until, ok := heldUntil(sendErr); ok {
			// By the time the holder's claim runs out at the latest.
			wait = min(wait, max(until.Sub(now), 0)+heldMargin)
			r.Held = true
		}
		if o.opts.MaxAge > 0 {
			deadline := r.ageFrom().Add(o.opts.MaxAge)
			if !now.Before(deadline) {
				outcome = outcomeDead
				r.State = Dead
				r.DeadAt = now
				r.NextAttempt = time.Time{}
				r.LastError = redactedError(fmt.Errorf("gave up after %d attempts in %s: %w",
					r.Attempts, now.Sub(r.ageFrom()).Round(time.Second), sendErr))
				break
			}
			if !hinted && now.Add(wait).After(deadline) {
				// One last attempt on the deadline rather than past it.
				wait = deadline.Sub(now)
			}
		}
		if r.State == Pending {
			outcome = outcomeRetry
			r.Backoff = wait
			r.NextAttempt = now.Add(wait)
		}
	}

	err := o.update(func(tx *bolt.Tx) error {
		nb, err := notifierBucket(tx, notifier, false)
		if err != nil {
			return err
		}
		if nb == nil || nb.Bucket(bPending).Get(u64(seq)) == nil {
			return fmt.Errorf("entry %d: %w", seq, ErrNotFound)
		}
		if err := putRecord(nb, seq, &r); err != nil {
			return err
		}
		if r.State == Pending {
			return nil
		}
		if err := nb.Bucket(bPending).Delete(u64(seq)); err != nil {
			return err
		}
		return nb.Bucket(bDone).Put(doneKey(now, seq), nil)
	})
	if err != nil {
		return err
	}

	// Metrics first and the depth last, so that a depth seen at zero
	// implies the rest is recorded.
	if m := o.metrics; m != nil {
		m.alerts.WithLabelValues(notifier, outcome).Inc()
		if outcome == outcomeSent {
			m.queueDelay.WithLabelValues(notifier).Observe(now.Sub(r.EnqueuedAt).Seconds())
			if !alert.EventTime.IsZero() {
				m.eventDelay.WithLabelValues(notifier).Observe(now.Sub(alert.EventTime).Seconds())
			}
		}
	}
	log := o.log.With("notifier", notifier, "key", r.Key, "rule", alert.RuleID, "attempts", r.Attempts)
	switch outcome {
	case outcomeSent:
		log.Debug("alert delivered")
		o.addDepth(notifier, -1)
	case outcomeDead:
		log.Warn("alert dead-lettered; list with `trailwatch outbox --dead`", "err", r.LastError)
		o.addDepth(notifier, -1)
	case outcomeRetry:
		if r.Held {
			log.Info("another process holds this alert's delivery; the alerts behind it go first", "retry_in", wait, "err", r.LastError)
			break
		}
		log.Info("alert delivery failed; will retry", "retry_in", wait, "err", r.LastError)
	}
	return nil
}

// backoff returns the delay before attempt attempts+1, after attempts
// failures; prev is the delay used before the last one.
func (o *Outbox) backoff(attempts int, prev time.Duration) time.Duration {
	base, ceil := o.opts.InitialBackoff, o.opts.MaxBackoff
	switch o.opts.Jitter {
	case FullJitter:
		hi := base
		for i := 1; i < attempts && hi < ceil; i++ {
			hi *= 2
		}
		hi = min(hi, ceil)
		return time.Duration(o.opts.Rand() * float64(hi))
	default:
		prev = max(prev, base)
		hi := ceil
		if prev < ceil/3 {
			hi = prev * 3
		}
		if hi <= base {
			return base
		}
		return min(base+time.Duration(o.opts.Rand()*float64(hi-base)), ceil)
	}
}
