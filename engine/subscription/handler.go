package subscription

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/trailwatch/trailwatch/engine"
	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/lifecycle"
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
	// Evaluator evaluates the records. Make it with DedupWindow -1: an
	// in-memory eventID window would drop the records of a retried batch
	// that this environment already saw; the ledger is what stops repeats.
	Evaluator *engine.Evaluator
	// Lifecycle, if set, applies silences, dedup windows, thresholds and
	// storm control. Without lifecycle.Options.Shared its state lives in
	// this process only (it is not shared between Lambda environments),
	// and a batch's changes are kept only when every delivery of the batch
	// succeeded. With it, dedup windows and thresholds are shared, and each
	// alert's decision is recorded before delivery, so a retried batch
	// gets the same alerts again (the ledger then sends each once).
	Lifecycle *lifecycle.Lifecycle
	// Notifiers are the notifiers by name.
	Notifiers map[string]notifiers.Notifier
	// Route picks the notifiers of an alert.
	Route engine.Router
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
	data, err := Decode(ev.AWSLogs.Data)
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

// delivery is one alert due to one notifier.
type delivery struct {
	key      string
	notifier string
	alert    notifiers.Alert
}

// ProcessData processes a decoded subscription payload.
func (h *Handler) ProcessData(ctx context.Context, data events.CloudwatchLogsData) (Result, error) {
	res := Result{MessageType: data.MessageType, LogEvents: len(data.LogEvents)}
	log := h.logger()
	switch data.MessageType {
	case MessageTypeData:
	case MessageTypeControl:
		return res, nil
	default:
		log.WarnContext(ctx, "ignored a subscription payload of unknown message type", "message_type", data.MessageType)
		return res, nil
	}

	var lb *lifecycle.Batch
	if h.Lifecycle != nil {
		lb = h.Lifecycle.BeginContext(ctx)
		// Undone unless every delivery succeeds: a retry must see the
		// same outputs again.
		defer lb.Rollback()
	}
	set := h.Evaluator.Rules()
	var due []delivery
	var alerts []notifiers.Alert
	var firstSkip error
	for _, le := range data.LogEvents {
		var err error
		alerts, err = h.Evaluator.Evaluate([]byte(le.Message), alerts[:0])
		if err != nil {
			res.Skipped++
			if firstSkip == nil {
				firstSkip = err
			}
			continue
		}
		res.Records++
		for i := range alerts {
			rule := set.Rule(alerts[i].RuleID)
			outs := []lifecycle.Output{{Key: alerts[i].DedupKey, Alert: alerts[i]}}
			if lb != nil {
				outs = lb.Process(alerts[i], rule)
			}
			for _, o := range outs {
				targets := h.Route(&o.Alert, rule)
				if len(targets) == 0 {
					log.WarnContext(ctx, "alert matches no route and its rule names no notifier; it is not delivered",
						"rule", o.Alert.RuleID, "event_id", o.Alert.EventID)
				}
				for _, t := range targets {
					if lb != nil && !lb.Admit(t, o) {
						continue
					}
					due = append(due, delivery{key: o.Key, notifier: t, alert: o.Alert})
				}
			}
		}
	}
	if lb != nil {
		if err := lb.Err(); err != nil {
			// Nothing is sent: the retried batch is decided the same way
			// (decisions already recorded are read back).
			return res, err
		}
		for _, d := range lb.Digests() {
			due = append(due, delivery{key: d.Key, notifier: d.Notifier, alert: d.Alert})
		}
	}
	if firstSkip != nil {
		log.WarnContext(ctx, "skipped log events that are not CloudTrail records", "count", res.Skipped, "first_error", firstSkip.Error())
	}
	due = unique(due)
	res.Deliveries = len(due)

	errs := h.deliver(ctx, due, &res)
	if len(errs) > 0 {
		return res, fmt.Errorf("deliver alerts: %d of %d failed: %w", len(errs), len(due), errors.Join(errs...))
	}
	if lb != nil {
		if err := lb.Commit(); err != nil {
			// Only the snapshot can fail, and the Lambda keeps none.
			log.WarnContext(ctx, "lifecycle state not saved", "error", err.Error())
		}
	}
	return res, nil
}

// deliver sends every delivery, Concurrency at a time, and returns the
// failures.
func (h *Handler) deliver(ctx context.Context, due []delivery, res *Result) []error {
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
func (h *Handler) deliverOne(ctx context.Context, d delivery) (dynamostate.Status, error) {
	log := h.logger()
	nt, ok := h.Notifiers[d.notifier]
	if !ok {
		return 0, fmt.Errorf("notify %q: no such notifier", d.notifier)
	}
	var claim dynamostate.Claim
	if h.Ledger != nil {
		var err error
		claim, err = h.Ledger.Claim(ctx, d.key, d.notifier, d.alert.RuleID)
		if err != nil {
			return 0, err
		}
		switch claim.Status {
		case dynamostate.AlreadyDelivered:
			return dynamostate.AlreadyDelivered, nil
		case dynamostate.Busy:
			return 0, fmt.Errorf("notify %q: rule %q event %q: another process holds the delivery until %s",
				d.notifier, d.alert.RuleID, d.alert.EventID, claim.Until.UTC().Format(time.RFC3339))
		}
	}
	timeout := h.SendTimeout
	if timeout <= 0 {
		timeout = DefaultSendTimeout
	}
	sendCtx, cancel := context.WithTimeout(ctx, timeout)
	err := nt.Notify(sendCtx, d.alert)
	cancel()
	if err != nil {
		if h.Ledger != nil {
			// The context may be what failed; releasing must still work.
			if rerr := h.Ledger.Release(context.WithoutCancel(ctx), claim); rerr != nil {
				log.WarnContext(ctx, "could not release a delivery claim; a retry waits for its lease to run out", "notifier", d.notifier, "error", rerr.Error())
			}
		}
		log.ErrorContext(ctx, "notification failed", "notifier", d.notifier, "rule", d.alert.RuleID,
			"event_id", d.alert.EventID, "permanent", notifiers.IsPermanent(err), "error", err.Error())
		return 0, fmt.Errorf("notify %q: rule %q event %q: %w", d.notifier, d.alert.RuleID, d.alert.EventID, err)
	}
	if h.Ledger != nil {
		if err := h.Ledger.Delivered(context.WithoutCancel(ctx), claim); err != nil {
			// The alert went out: failing the invocation could only send
			// it again. The record stays a claim, retaken (and the alert
			// re-sent) only if the batch is read again after the lease.
			log.WarnContext(ctx, "alert delivered but not recorded as delivered", "notifier", d.notifier,
				"rule", d.alert.RuleID, "event_id", d.alert.EventID, "error", err.Error())
		}
	}
	return dynamostate.Claimed, nil
}

// unique drops repeated (key, notifier) pairs (a record delivered twice in
// one batch), which would otherwise race for one claim.
func unique(due []delivery) []delivery {
	seen := make(map[[2]string]bool, len(due))
	out := due[:0]
	for _, d := range due {
		k := [2]string{d.key, d.notifier}
		if !seen[k] {
			seen[k] = true
			out = append(out, d)
		}
	}
	return out
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Logger
}
