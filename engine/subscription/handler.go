// Package subscription is trailwatch's Lambda handler for CloudWatch Logs
// subscription deliveries: it decodes the payload CloudWatch Logs pushes to
// a Lambda function (engine/cwlogs), runs its log events through the
// decision function (engine/decide) like every other path, and notifies,
// recording each (alert, notifier) delivery in a shared ledger
// (engine/dynamostate) so that a retried batch never sends an alert twice
// once it is known to be delivered.
//
// # Errors and AWS retries
//
// CloudWatch Logs invokes the function asynchronously: when Handle returns
// an error, Lambda runs the same payload again (twice by default, one and
// then two minutes later) and then hands it to the function's on-failure
// destination or dead-letter queue. Handle therefore returns an error when
// a retry can help or when the payload must be kept:
//
//   - a notification failed, a delivery is held by another process, or the
//     ledger could not be reached: the retry sends only what is not yet
//     recorded as delivered;
//   - the payload itself cannot be decoded (not base64, not gzip, not JSON):
//     retrying cannot fix it, but failing moves it, intact, to the
//     on-failure destination where it can be inspected.
//
// It returns nil for a CONTROL_MESSAGE (CloudWatch Logs checking that the
// destination is reachable), for a message type it does not know (logged),
// and it skips, counting and logging them, log events that are not
// CloudTrail records: the log group may carry other lines, and failing on
// them would send every retry to the dead-letter queue for nothing.
package subscription

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/trailwatch/trailwatch/engine/cwlogs"
	"github.com/trailwatch/trailwatch/engine/decide"
	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/source"
	"github.com/trailwatch/trailwatch/notifiers"
)

// Ledger records deliveries so a retried batch sends only what is not yet
// delivered. *dynamostate.Store implements it.
type Ledger interface {
	// Claim tries to take the delivery of alert key to notifier.
	Claim(ctx context.Context, key, notifier, ruleID string) (dynamostate.Claim, error)
	// Delivered marks a held claim delivered.
	Delivered(ctx context.Context, c dynamostate.Claim) error
	// Release gives a held claim up after a failed send.
	Release(ctx context.Context, c dynamostate.Claim) error
}

var _ Ledger = (*dynamostate.Store)(nil)

// DefaultSendTimeout bounds one notification when Handler.SendTimeout is
// zero. It must be well inside the ledger's lease (dynamostate.DefaultLease)
// so that no other process retakes a claim while its send is running.
const DefaultSendTimeout = 20 * time.Second

// DefaultConcurrency is how many notifications run at once when
// Handler.Concurrency is zero.
const DefaultConcurrency = 4

// Handler evaluates subscription payloads and notifies. Make one per
// process (a Lambda execution environment) and call Handle for each
// invocation; invocations must not overlap (Lambda never overlaps them in
// one environment).
type Handler struct {
	// Decider decides each batch. Make its evaluator with DedupWindow -1:
	// an in-memory eventID window would drop the records of a retried
	// batch that this environment already saw; the ledger is what stops
	// repeats. Its lifecycle, if any, applies silences, dedup windows,
	// thresholds and storm control. Without lifecycle.Options.Shared its
	// state lives in this process only (it is not shared between Lambda
	// environments), and a batch's changes are kept only when every
	// delivery of the batch succeeded. With it, dedup windows and
	// thresholds are shared, and each alert's decision is recorded before
	// delivery, so a retried batch gets the same alerts again (the ledger
	// then sends each once).
	Decider *decide.Decider
	// Notifiers are the notifiers by name.
	Notifiers map[string]notifiers.Notifier
	// Ledger records deliveries. Nil sends without records: a retried
	// batch then re-sends what was already delivered.
	Ledger Ledger
	// Logger receives one summary line per invocation and every failure.
	// Nil discards.
	Logger *slog.Logger
	// SendTimeout bounds one notification (default DefaultSendTimeout).
	SendTimeout time.Duration
	// Concurrency is how many notifications run at once (default
	// DefaultConcurrency).
	Concurrency int
}

// Result counts what one invocation did.
type Result struct {
	MessageType string
	// LogEvents is the number of log events in the payload.
	LogEvents int
	// Records were evaluated; Skipped were not CloudTrail records.
	Records, Skipped int
	// Deliveries is the number of (alert, notifier) pairs due.
	Deliveries int
	// Sent were delivered now; AlreadyDelivered were recorded as delivered
	// by an earlier invocation and not sent again; Failed were not
	// delivered (the invocation fails so AWS retries it).
	Sent, AlreadyDelivered, Failed int
}

// Handle processes one subscription event. Its signature is what
// lambda.Start expects.
func (h *Handler) Handle(ctx context.Context, ev events.CloudwatchLogsEvent) error {
	_, err := h.Process(ctx, ev)
	return err
}

// Process is Handle that also returns the counts.
func (h *Handler) Process(ctx context.Context, ev events.CloudwatchLogsEvent) (Result, error) {
	log := h.logger()
	data, err := cwlogs.Decode(ev.AWSLogs.Data)
	if err != nil {
		log.ErrorContext(ctx, "malformed subscription payload; failing the invocation so it reaches the on-failure destination", "error", err.Error())
		return Result{}, err
	}
	res, err := h.ProcessData(ctx, data)
	attrs := []any{
		"message_type", res.MessageType, "log_group", data.LogGroup, "log_stream", data.LogStream,
		"log_events", res.LogEvents, "records", res.Records, "skipped", res.Skipped,
		"deliveries", res.Deliveries, "sent", res.Sent, "already_delivered", res.AlreadyDelivered, "failed", res.Failed,
	}
	if err != nil {
		log.ErrorContext(ctx, "subscription batch failed; AWS will retry it", append(attrs, "error", err.Error())...)
		return res, err
	}
	log.InfoContext(ctx, "subscription batch done", attrs...)
	return res, nil
}

// ProcessData processes a decoded subscription payload.
func (h *Handler) ProcessData(ctx context.Context, data events.CloudwatchLogsData) (Result, error) {
	res := Result{MessageType: data.MessageType, LogEvents: len(data.LogEvents)}
	log := h.logger()
	switch data.MessageType {
	case cwlogs.MessageTypeData:
	case cwlogs.MessageTypeControl:
		return res, nil
	default:
		log.WarnContext(ctx, "ignored a subscription payload of unknown message type", "message_type", data.MessageType)
		return res, nil
	}

	var b source.Batch
	cwlogs.AppendRecords(&b, data)
	x := h.Decider.Begin(ctx)
	// Undone unless every delivery succeeds: a retry must see the same
	// outputs again.
	defer x.Rollback()
	var first *source.Record
	var firstErr error
	x.Records(b.Records, func(r source.Record, err error) {
		if first == nil {
			first, firstErr = &r, err
		}
	})
	out, err := x.Finish(false)
	res.Records, res.Skipped = out.Records, out.Skipped
	if err != nil {
		// Nothing is sent: the retried batch is decided the same way
		// (decisions already recorded are read back).
		return res, err
	}
	if first != nil {
		log.WarnContext(ctx, "skipped log events that are not CloudTrail records",
			append([]any{"count", res.Skipped, "first_error", firstErr.Error()}, first.Place.LogAttrs()...)...)
	}
	res.Deliveries = len(out.Items)

	errs := h.deliver(ctx, out.Items, &res)
	if len(errs) > 0 {
		return res, fmt.Errorf("deliver alerts: %d of %d failed: %w", len(errs), len(out.Items), errors.Join(errs...))
	}
	if err := x.Commit(); err != nil {
		// Only the snapshot can fail, and the Lambda keeps none.
		log.WarnContext(ctx, "lifecycle state not saved", "error", err.Error())
	}
	return res, nil
}

// deliver sends every delivery, Concurrency at a time, and returns the
// failures.
func (h *Handler) deliver(ctx context.Context, due []decide.Item, res *Result) []error {
	conc := h.Concurrency
	if conc <= 0 {
		conc = DefaultConcurrency
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, conc)
	for _, d := range due {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			outcome, err := h.deliverOne(ctx, d)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				res.Failed++
				errs = append(errs, err)
			case outcome == dynamostate.AlreadyDelivered:
				res.AlreadyDelivered++
			default:
				res.Sent++
			}
		})
	}
	wg.Wait()
	return errs
}

// deliverOne claims, sends and records one delivery.
func (h *Handler) deliverOne(ctx context.Context, d decide.Item) (dynamostate.Status, error) {
	log := h.logger()
	nt, ok := h.Notifiers[d.Notifier]
	if !ok {
		return 0, fmt.Errorf("notify %q: no such notifier", d.Notifier)
	}
	var claim dynamostate.Claim
	if h.Ledger != nil {
		var err error
		claim, err = h.Ledger.Claim(ctx, d.Key, d.Notifier, d.Alert.RuleID)
		if err != nil {
			return 0, err
		}
		switch claim.Status {
		case dynamostate.AlreadyDelivered:
			return dynamostate.AlreadyDelivered, nil
		case dynamostate.Busy:
			return 0, fmt.Errorf("notify %q: rule %q event %q: another process holds the delivery until %s",
				d.Notifier, d.Alert.RuleID, d.Alert.EventID, claim.Until.UTC().Format(time.RFC3339))
		}
	}
	timeout := h.SendTimeout
	if timeout <= 0 {
		timeout = DefaultSendTimeout
	}
	sendCtx, cancel := context.WithTimeout(ctx, timeout)
	err := nt.Notify(sendCtx, d.Alert)
	cancel()
	if err != nil {
		if h.Ledger != nil {
			// The context may be what failed; releasing must still work.
			if rerr := h.Ledger.Release(context.WithoutCancel(ctx), claim); rerr != nil {
				log.WarnContext(ctx, "could not release a delivery claim; a retry waits for its lease to run out", "notifier", d.Notifier, "error", rerr.Error())
			}
		}
		log.ErrorContext(ctx, "notification failed", "notifier", d.Notifier, "rule", d.Alert.RuleID,
			"event_id", d.Alert.EventID, "permanent", notifiers.IsPermanent(err), "error", err.Error())
		return 0, fmt.Errorf("notify %q: rule %q event %q: %w", d.Notifier, d.Alert.RuleID, d.Alert.EventID, err)
	}
	if h.Ledger != nil {
		if err := h.Ledger.Delivered(context.WithoutCancel(ctx), claim); err != nil {
			// The alert went out: failing the invocation could only send
			// it again. The record stays a claim, retaken (and the alert
			// re-sent) only if the batch is read again after the lease.
			log.WarnContext(ctx, "alert delivered but not recorded as delivered", "notifier", d.Notifier,
				"rule", d.Alert.RuleID, "event_id", d.Alert.EventID, "error", err.Error())
		}
	}
	return dynamostate.Claimed, nil
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Logger
}
