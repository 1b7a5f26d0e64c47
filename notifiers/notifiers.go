// Package notifiers holds what every integration shares: the Alert value in
// its public JSON form, the Notifier interface, the error that says "do not
// retry", and helpers for HTTP status handling and secret redaction.
//
// Each integration lives in its own sub-package (notifiers/slack,
// notifiers/email, ...) with a Config and a New beside it, and imports only
// this package.
package notifiers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Alert is one rule match on one CloudTrail record, in the shape that every
// output shares. Its JSON encoding is trailwatch's public alert form: the
// file notifier writes it, `replay --output json` prints it, the webhook and
// SNS notifiers send it. Fields are only ever added to it, never renamed.
//
// Every string taken from the event (Principal, UserAgent, SourceIP, Summary,
// Event...) is attacker-controlled: integrations must escape it for their
// markup before use.
type Alert struct {
	RuleID      string   `json:"rule_id"`
	Title       string   `json:"title"`
	Severity    string   `json:"severity"`
	Summary     string   `json:"summary"`
	Description string   `json:"description,omitempty"`
	Tags        []string `json:"tags,omitempty"`
	Runbook     string   `json:"runbook,omitempty"`
	References  []string `json:"references,omitempty"`

	// DedupKey is the alert's identity downstream: PagerDuty dedup_key, SNS
	// FIFO deduplication id, the outbox's idempotency key.
	DedupKey string `json:"dedup_key"`

	EventID      string    `json:"event_id"`
	EventTime    time.Time `json:"event_time"`
	EventName    string    `json:"event_name"`
	EventSource  string    `json:"event_source"`
	Principal    string    `json:"principal"`
	UserName     string    `json:"user_name,omitempty"`
	AccessKeyID  string    `json:"access_key_id,omitempty"`
	SourceIP     string    `json:"source_ip"`
	UserAgent    string    `json:"user_agent,omitempty"`
	AWSRegion    string    `json:"aws_region"`
	AccountID    string    `json:"account_id"`
	ErrorCode    string    `json:"error_code,omitempty"`
	ErrorMessage string    `json:"error_message,omitempty"`

	// Count is how many matching events this alert stands for (1 for a
	// plain match; more for threshold alerts or after suppressed repeats).
	Count int `json:"count,omitempty"`

	// Test marks an alert sent by `trailwatch notify-test`.
	Test bool `json:"test,omitempty"`

	// Event is the whole CloudTrail record as it was read.
	Event json.RawMessage `json:"event"`
}

// ConsoleURL links to the event in the CloudTrail console's Event History.
// It is empty when the alert has no event id or region.
func (a *Alert) ConsoleURL() string {
	if a.EventID == "" || a.AWSRegion == "" {
		return ""
	}
	region := url.PathEscape(a.AWSRegion)
	return fmt.Sprintf("https://%s.console.aws.amazon.com/cloudtrailv2/home?region=%s#/events/%s",
		region, url.QueryEscape(a.AWSRegion), url.PathEscape(a.EventID))
}

// Notifier delivers one alert. An error wrapped with Permanent must not be
// retried; any other error may be.
type Notifier interface {
	Notify(ctx context.Context, a Alert) error
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that IsPermanent reports true for it. A nil err
// stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or any error it wraps, was marked
// Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// RetryAfterError carries a server's Retry-After hint with a retryable error.
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
}
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter returns the server's hint carried by err, if any.
func RetryAfter(err error) (time.Duration, bool) {
	var r *RetryAfterError
	if errors.As(err, &r) {
		return r.After, true
	}
	return 0, false
}
