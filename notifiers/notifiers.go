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
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"sync"
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

	EventID   string    `json:"event_id"`
	EventTime time.Time `json:"event_time"`
	// EventTimeWarning, when set, says why the record's eventTime was not
	// trusted (missing, unparseable, or far ahead of the clock: a forged or
	// damaged record): the alert went out without dedup or threshold
	// windows, and for a missing time EventTime is when it was read.
	EventTimeWarning string `json:"event_time_warning,omitempty"`

	EventName    string `json:"event_name"`
	EventSource  string `json:"event_source"`
	Principal    string `json:"principal"`
	UserName     string `json:"user_name,omitempty"`
	AccessKeyID  string `json:"access_key_id,omitempty"`
	SourceIP     string `json:"source_ip"`
	UserAgent    string `json:"user_agent,omitempty"`
	AWSRegion    string `json:"aws_region"`
	AccountID    string `json:"account_id"`
	ErrorCode    string `json:"error_code,omitempty"`
	ErrorMessage string `json:"error_message,omitempty"`

	// Count is how many matching events this alert stands for (1 for a
	// plain match; more for threshold alerts or after suppressed repeats).
	Count int `json:"count,omitempty"`
	// Suppressed is how many of Count were repeats that dedup held back
	// since the previous notification with the same DedupKey.
	Suppressed int `json:"suppressed,omitempty"`
	// FirstTime and LastTime bound the event times this alert stands for
	// when it stands for more than one event (zero otherwise).
	FirstTime time.Time `json:"first_time,omitzero"`
	LastTime  time.Time `json:"last_time,omitzero"`
	// Group is a threshold alert's group: the values of the rule's
	// group_by expressions, in order.
	Group []string `json:"group,omitempty"`
	// Samples are a bounded sample of the events an aggregated alert
	// (threshold or storm digest) stands for; Event holds the last one.
	Samples []EventSample `json:"samples,omitempty"`

	// Test marks an alert sent by `trailwatch notify-test`.
	Test bool `json:"test,omitempty"`

	// Event is the whole CloudTrail record as it was read.
	Event json.RawMessage `json:"event"`
}

// EventSample is a short reference to one of the events an aggregated
// alert stands for. Its strings are attacker-controlled, like the Alert's.
type EventSample struct {
	EventID   string    `json:"event_id"`
	EventTime time.Time `json:"event_time"`
	EventName string    `json:"event_name"`
	RuleID    string    `json:"rule_id,omitempty"`
	Principal string    `json:"principal,omitempty"`
	SourceIP  string    `json:"source_ip,omitempty"`
	ErrorCode string    `json:"error_code,omitempty"`
}

// ConsoleURL links to the event in the CloudTrail console's Event History.
// It is empty when the alert has no event id or when the region (an
// attacker-controlled field) is not shaped like an AWS region, so a record
// cannot point the link at another host.
func (a *Alert) ConsoleURL() string {
	if a.EventID == "" || !regionRe().MatchString(a.AWSRegion) {
		return ""
	}
	return fmt.Sprintf("https://%s.console.aws.amazon.com/cloudtrailv2/home?region=%s#/events/%s",
		a.AWSRegion, a.AWSRegion, url.PathEscape(a.EventID))
}

var regionRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`) })

// DeliveryID identifies this alert for a receiver that drops repeats: the
// outbox delivers at least once, and a delivery it retries (after a
// timeout, or a crash between the send and its record) is the same alert
// and has the same id, while another notification under the same dedup
// key (a later event, more suppressed repeats) has its own. It is 64 hex
// characters: the webhook's Idempotency-Key header, the SNS FIFO
// deduplication id, and (its first half) the email's Message-ID.
func (a *Alert) DeliveryID() string {
	key := a.DedupKey
	if key == "" {
		key = a.RuleID + "\x00" + a.EventID
	}
	h := sha256.New()
	for _, p := range []string{key, a.EventID, strconv.Itoa(a.Count)} {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
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

// MaxRetryAfter caps a server's Retry-After hint: a server asking for more
// (Retry-After: 99999) is tried again after MaxRetryAfter, so that one
// answer cannot park a notifier for a day.
const MaxRetryAfter = 10 * time.Minute

// RetryAfterError carries a server's Retry-After hint with a retryable error.
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
}
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter returns the server's hint carried by err, if any, capped at
// MaxRetryAfter.
func RetryAfter(err error) (time.Duration, bool) {
	var r *RetryAfterError
	if errors.As(err, &r) {
		return min(r.After, MaxRetryAfter), true
	}
	return 0, false
}
