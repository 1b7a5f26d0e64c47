package dynamostate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/trailwatch/trailwatch/notifiers"
)

// Ledger is the part of Store that Notifier uses.
type Ledger interface {
	// Claim tries to take the delivery of alert key to notifier.
	Claim(ctx context.Context, key, notifier, ruleID string) (Claim, error)
	// Delivered marks a held claim delivered.
	Delivered(ctx context.Context, c Claim) error
	// Release gives a held claim up after a failed send.
	Release(ctx context.Context, c Claim) error
}

var _ Ledger = (*Store)(nil)

// ErrBusy is wrapped by the error Notify returns when another process
// holds the delivery: it may be sending it now, so this one must not, and
// should try again later (it is not a permanent error).
var ErrBusy = errors.New("another process holds the delivery")

// NotifierOptions adjust a Notifier.
type NotifierOptions struct {
	// Key names an alert in the ledger; nil means DeliveryKey.
	Key func(a *notifiers.Alert) string
	// Logger receives claims that could not be released or recorded; nil
	// discards.
	Logger *slog.Logger
}

// busyError is Notify's error when another process holds the delivery.
type busyError struct {
	msg   string
	until time.Time
}

func (e *busyError) Error() string { return e.msg }
func (e *busyError) Unwrap() error { return ErrBusy }

// HeldUntil says when the other process's claim runs out: an outbox tries
// the alert again by then, and delivers the alerts behind it meanwhile
// (see engine/outbox).
func (e *busyError) HeldUntil() time.Time { return e.until }

// Notifier records each delivery of the notifier it wraps in the shared
// ledger, so that several processes holding the same alert (each in its
// own outbox, e.g. two `trailwatch run` instances that both read a batch
// of a Kinesis shard, one after the other) send it once. Notify claims the
// delivery first: an alert already delivered is not sent again (Notify
// returns nil), one another process is sending fails with a retryable
// error wrapping ErrBusy that says until when that process holds it
// (HeldUntil, which an outbox uses to step past the alert and come back);
// after a successful send it is marked delivered,
// and after a failed send the claim is released so a retry can take it at
// once.
type Notifier struct {
	name   string
	next   notifiers.Notifier
	ledger Ledger
	key    func(a *notifiers.Alert) string
	log    *slog.Logger
}

var _ notifiers.Notifier = (*Notifier)(nil)

// NewNotifier wraps next, the notifier configured under name, with the
// ledger. name is part of the delivery record's key, so it must be the
// same in every process.
func NewNotifier(name string, next notifiers.Notifier, ledger Ledger, opts NotifierOptions) *Notifier {
	if opts.Key == nil {
		opts.Key = DeliveryKey
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Notifier{name: name, next: next, ledger: ledger, key: opts.Key, log: opts.Logger}
}

// DeliveryKey is the ledger key of an alert: its dedup key and the
// CloudTrail event that raised it. The dedup key alone is not enough: a
// rule with a dedup window raises a new alert with the same dedup key once
// the window is over, and that one must be delivered too.
func DeliveryKey(a *notifiers.Alert) string {
	if a.EventID == "" {
		return a.DedupKey
	}
	sum := sha256.Sum256([]byte(a.DedupKey + "\x00" + a.EventID))
	return hex.EncodeToString(sum[:16])
}

// Notify claims the delivery, sends it through the wrapped notifier, and
// records the outcome.
func (n *Notifier) Notify(ctx context.Context, a notifiers.Alert) error {
	key := n.key(&a)
	claim, err := n.ledger.Claim(ctx, key, n.name, a.RuleID)
	if err != nil {
		return fmt.Errorf("notify %q: %w", n.name, err)
	}
	switch claim.Status {
	case AlreadyDelivered:
		return nil
	case Busy:
		return &busyError{until: claim.Until, msg: fmt.Sprintf("notify %q: rule %q event %q: %v (lease until %s)", n.name, a.RuleID, a.EventID, ErrBusy,
			claim.Until.UTC().Format("2006-01-02T15:04:05.000Z"))}
	}
	if err := n.next.Notify(ctx, a); err != nil {
		// The context may be what failed; releasing must still work.
		if rerr := n.ledger.Release(context.WithoutCancel(ctx), claim); rerr != nil {
			n.log.Warn("could not release a delivery claim; a retry waits for its lease to run out",
				"notifier", n.name, "rule", a.RuleID, "event_id", a.EventID, "err", rerr.Error())
		}
		return err
	}
	if err := n.ledger.Delivered(context.WithoutCancel(ctx), claim); err != nil {
		// The alert went out: failing would only send it again. The record
		// stays a claim, retaken (and the alert sent again) only if another
		// process holds the alert after the lease.
		n.log.Warn("alert delivered but not recorded as delivered", "notifier", n.name,
			"rule", a.RuleID, "event_id", a.EventID, "err", err.Error())
	}
	return nil
}

// Unwrap returns the wrapped notifier.
func (n *Notifier) Unwrap() notifiers.Notifier { return n.next }

// Close closes the wrapped notifier if it holds resources (a file).
func (n *Notifier) Close() error {
	if c, ok := n.next.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Reopen reopens the wrapped notifier's file, if it writes one (after log
// rotation).
func (n *Notifier) Reopen() error {
	if r, ok := n.next.(interface{ Reopen() error }); ok {
		return r.Reopen()
	}
	return nil
}
