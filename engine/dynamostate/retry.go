package dynamostate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/prometheus/client_golang/prometheus"
)

// Bounds of the wait between two tries of a DynamoDB call that failed for
// a reason that passes. The SDK has already retried the call (three
// attempts, with its own backoff) before the store sees the failure; the
// store then waits a random time between half and all of RetryInitial
// doubled per retry, at most RetryMax, and tries again until the call
// succeeds, fails for a reason that does not pass, or its context ends.
const (
	RetryInitial = 200 * time.Millisecond
	RetryMax     = 10 * time.Second
)

// Operation labels of trailwatch_shared_state_retries_total.
const (
	opClaim       = "claim"
	opDelivered   = "delivered"
	opRelease     = "release"
	opRead        = "read"
	opApply       = "apply"
	opPutSilences = "put_silences"
)

// transient reports whether err is a DynamoDB failure that passes by
// itself, so that the same call, tried again later, may succeed:
// throttling (the SDK's throttle codes, and a cancelled transaction whose
// items were throttled), a 5xx answer, a dropped or refused connection, a
// timeout. A missing table, a refused permission, a failed condition or a
// cancelled context are not.
func transient(err error) bool {
	if err == nil {
		return false
	}
	var tce *types.TransactionCanceledException
	if errors.As(err, &tce) {
		return throttledOnly(tce.CancellationReasons)
	}
	return retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary
}

// throttledOnly reports whether a transaction was cancelled only because
// some of its items were throttled (none failed a condition or was
// invalid).
func throttledOnly(reasons []types.CancellationReason) bool {
	seen := false
	for _, r := range reasons {
		switch code := aws.ToString(r.Code); {
		case code == "" || strings.EqualFold(code, "None"):
		case throttleReason(code):
			seen = true
		default:
			return false
		}
	}
	return seen
}

// throttleReason reports whether a transaction's cancellation reason code
// says the item was throttled.
func throttleReason(code string) bool {
	return code == "ThrottlingError" || code == "ProvisionedThroughputExceeded" || code == "RequestLimitExceeded"
}

// retrier tries a DynamoDB call again while it fails for a reason that
// passes (see transient). Its waits are bounded, jittered and end with
// the call's context. It logs one warning when calls start failing and
// one line when they succeed again, and counts every retry.
type retrier struct {
	table   string
	after   func(time.Duration) <-chan time.Time
	rand    func() float64
	log     *slog.Logger
	retries *prometheus.CounterVec

	mu       sync.Mutex
	failing  int // calls now waiting to be tried again
	outage   time.Time
	attempts int // retries since the outage began
}

func newRetrier(table string, opts Options) (*retrier, error) {
	r := &retrier{table: table, after: opts.After, rand: opts.Rand, log: opts.Logger}
	if r.after == nil {
		r.after = time.After
	}
	if r.rand == nil {
		r.rand = rand.Float64
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trailwatch_shared_state_retries_total",
		Help: "DynamoDB calls of the shared state (delivery ledger, dedup windows, thresholds, silences) tried again after a failure that passes (throttling, a 5xx answer, a dropped connection), by operation.",
	}, []string{"operation"})
	for _, op := range []string{opClaim, opDelivered, opRelease, opRead, opApply, opPutSilences} {
		r.retries.WithLabelValues(op)
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(r.retries); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("register shared state metrics: %w", err)
			}
			// Both stores of one table count into one metric.
			existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
			if !ok {
				return nil, fmt.Errorf("register shared state metrics: %w", err)
			}
			r.retries = existing
		}
	}
	return r, nil
}

// wait returns the wait before retry n (from 0).
func (r *retrier) wait(n int) time.Duration {
	hi := min(RetryInitial<<min(n, 16), RetryMax)
	return hi/2 + time.Duration(r.rand()*float64(hi/2))
}

// do calls fn until it returns nil or an error that is not transient, or
// ctx ends; it returns fn's last error (with the context's cause when
// that is what stopped it). fn must be safe to call again: it builds its
// request anew or sends one that DynamoDB applies once.
func (r *retrier) do(ctx context.Context, op string, fn func() error) error {
	retried := false
	for n := 0; ; n++ {
		err := fn()
		if err == nil || !transient(err) {
			if retried {
				r.recovered(op, err == nil)
			}
			return err
		}
		if ctx.Err() != nil {
			if retried {
				r.recovered(op, false)
			}
			return fmt.Errorf("%w (stopped retrying: %w)", err, context.Cause(ctx))
		}
		wait := r.wait(n)
		r.retries.WithLabelValues(op).Inc()
		if !retried {
			retried = true
			r.failed(op, err, wait)
		} else {
			r.mu.Lock()
			r.attempts++
			r.mu.Unlock()
			r.log.Debug("shared state still unavailable; retrying", "table", r.table, "operation", op, "retry_in", wait, "err", err.Error())
		}
		select {
		case <-ctx.Done():
			r.recovered(op, false)
			return fmt.Errorf("%w (stopped retrying: %w)", err, context.Cause(ctx))
		case <-r.after(wait):
		}
	}
}

// failed notes a call that starts retrying; the first one of an outage
// is logged as a warning.
func (r *retrier) failed(op string, err error, wait time.Duration) {
	r.mu.Lock()
	first := r.failing == 0
	r.failing++
	if first {
		r.outage, r.attempts = time.Now(), 1
	} else {
		r.attempts++
	}
	r.mu.Unlock()
	if first {
		r.log.Warn("shared state unavailable; retrying in place, leases kept", "table", r.table,
			"operation", op, "retry_in", wait, "err", err.Error())
	}
}

// recovered notes a call that stopped retrying, successfully when ok;
// when it was the last one and it succeeded, the end of the outage is
// logged.
func (r *retrier) recovered(op string, ok bool) {
	r.mu.Lock()
	r.failing--
	last := r.failing == 0
	attempts, since := r.attempts, time.Since(r.outage)
	r.mu.Unlock()
	if last && ok {
		r.log.Info("shared state answers again", "table", r.table, "operation", op,
			"retries", attempts, "after", since.Round(time.Millisecond).String())
	}
}
