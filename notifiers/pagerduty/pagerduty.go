// Package pagerduty triggers PagerDuty incidents through the Events API v2.
//
// Each alert becomes one "trigger" event whose dedup_key is the alert's
// DedupKey, so a redelivery by the outbox never opens a second incident.
// The routing key is a secret: it never appears in errors or logs.
package pagerduty

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/trailwatch/trailwatch/notifiers"
)

// DefaultURL is the Events API v2 enqueue endpoint.
const DefaultURL = "https://events.pagerduty.com/v2/enqueue"

// Limits of the Events API v2.
const (
	maxSummary  = 1024
	maxDedupKey = 255
	// maxRawEvent bounds the CloudTrail record copied into custom_details,
	// keeping the whole event well under the API's 512 KB limit.
	maxRawEvent = 256 << 10
)

// Config is the YAML configuration of a PagerDuty notifier. Give exactly
// one of RoutingKey and RoutingKeyFile.
type Config struct {
	// RoutingKey is the integration key of an Events API v2 integration. It
	// is a secret: write it as ${ENV} or use RoutingKeyFile.
	RoutingKey string `yaml:"routing_key,omitempty"`
	// RoutingKeyFile names a file whose content is the routing key.
	RoutingKeyFile string `yaml:"routing_key_file,omitempty"`
	// URL overrides DefaultURL (for tests, or an EU service region:
	// https://events.eu.pagerduty.com/v2/enqueue).
	URL string `yaml:"url,omitempty"`
}

// Validate reports every problem with the configuration at once. It does
// not read RoutingKeyFile; New does.
func (c *Config) Validate() error {
	var errs []error
	switch {
	case c.RoutingKey == "" && c.RoutingKeyFile == "":
		errs = append(errs, errors.New("pagerduty: one of routing_key or routing_key_file is required"))
	case c.RoutingKey != "" && c.RoutingKeyFile != "":
		errs = append(errs, errors.New("pagerduty: routing_key and routing_key_file are mutually exclusive"))
	case strings.ContainsAny(c.RoutingKey, " \t\r\n"):
		errs = append(errs, errors.New("pagerduty: routing_key contains white space"))
	}
	if c.URL != "" {
		if err := notifiers.CheckURL(c.URL); err != nil {
			errs = append(errs, fmt.Errorf("pagerduty: url: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Option adjusts a Notifier built by New.
type Option func(*Notifier)

// WithHTTPClient makes the notifier send with c instead of
// notifiers.DefaultHTTPClient(). Redirects are never followed, whatever
// c's policy.
func WithHTTPClient(c *http.Client) Option { return func(n *Notifier) { n.client = c } }

// WithLogger makes the notifier log to l instead of discarding.
func WithLogger(l *slog.Logger) Option { return func(n *Notifier) { n.logger = l } }

// WithClock makes the notifier read the time (for Retry-After dates) from
// now instead of time.Now.
func WithClock(now func() time.Time) Option { return func(n *Notifier) { n.now = now } }

// Notifier sends alerts to PagerDuty.
type Notifier struct {
	url        string
	routingKey string
	client     *http.Client
	logger     *slog.Logger
	now        func() time.Time
}

var _ notifiers.Notifier = (*Notifier)(nil)

// routingKey returns routing_key, or routing_key_file's content.
func (c *Config) routingKey() (string, error) {
	if c.RoutingKeyFile == "" {
		return c.RoutingKey, nil
	}
	k, err := notifiers.ReadSecretFile(c.RoutingKeyFile)
	if err != nil {
		return "", fmt.Errorf("pagerduty: routing_key_file: %w", err)
	}
	return k, nil
}

// ReadSecrets reads routing_key_file as New does and reports what New
// would refuse, never its content (validate --config calls it).
func (c *Config) ReadSecrets() error {
	_, err := c.routingKey()
	return err
}

// New validates cfg, reads RoutingKeyFile if given, and returns a ready
// Notifier.
func New(cfg Config, opts ...Option) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Notifier{
		url:        cfg.URL,
		routingKey: cfg.RoutingKey,
		client:     notifiers.DefaultHTTPClient(),
		logger:     slog.New(slog.DiscardHandler),
		now:        time.Now,
	}
	if n.url == "" {
		n.url = DefaultURL
	}
	var err error
	if n.routingKey, err = cfg.routingKey(); err != nil {
		return nil, err
	}
	for _, o := range opts {
		o(n)
	}
	n.client = notifiers.NoRedirects(n.client)
	return n, nil
}

// event is an Events API v2 event.
type event struct {
	RoutingKey  string  `json:"routing_key"`
	EventAction string  `json:"event_action"`
	DedupKey    string  `json:"dedup_key,omitempty"`
	Payload     payload `json:"payload"`
	Links       []link  `json:"links,omitempty"`
	Client      string  `json:"client,omitempty"`
}

type payload struct {
	Summary       string         `json:"summary"`
	Source        string         `json:"source"`
	Severity      string         `json:"severity"`
	Timestamp     string         `json:"timestamp,omitempty"`
	Component     string         `json:"component,omitempty"`
	Group         string         `json:"group,omitempty"`
	Class         string         `json:"class,omitempty"`
	CustomDetails map[string]any `json:"custom_details,omitempty"`
}

type link struct {
	Href string `json:"href"`
	Text string `json:"text"`
}

// Severity maps a trailwatch severity to a PagerDuty one: critical to
// critical, high to error, medium to warning, low and info to info. An
// unknown severity maps to warning, so it neither pages as critical nor
// hides as info.
func Severity(s string) string {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "critical":
		return "critical"
	case "high":
		return "error"
	case "medium":
		return "warning"
	case "low", "info":
		return "info"
	default:
		return "warning"
	}
}

// dedupKey returns k if PagerDuty accepts it, or a stable hash of it if it
// is too long.
func dedupKey(k string) string {
	if len(k) <= maxDedupKey {
		return k
	}
	sum := sha256.Sum256([]byte(k))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// truncate cuts s to at most limit characters, ending in an ellipsis when
// cut.
func truncate(s string, limit int) string {
	s = strings.ToValidUTF8(s, "�")
	if utf8.RuneCountInString(s) <= limit {
		return s
	}
	r := []rune(s)
	return string(r[:limit-1]) + "…"
}

func buildEvent(routingKey string, a notifiers.Alert) event {
	sev := strings.ToUpper(strings.TrimSpace(a.Severity))
	if sev == "" {
		sev = "UNKNOWN"
	}
	test := ""
	if a.Test {
		test = "[TEST] "
	}
	title := a.Title
	if title == "" {
		title = a.RuleID
	}
	summary := fmt.Sprintf("%s[%s] %s", test, sev, title)
	if a.Summary != "" {
		summary += ": " + a.Summary
	}
	// PagerDuty shows the summary as a one-line title.
	summary = strings.Join(strings.Fields(summary), " ")

	source := "trailwatch"
	if a.AccountID != "" || a.AWSRegion != "" {
		source = strings.Trim("aws:"+a.AccountID+":"+a.AWSRegion, ":")
	}

	details := map[string]any{
		"rule_id":      a.RuleID,
		"title":        a.Title,
		"severity":     a.Severity,
		"summary":      a.Summary,
		"event_id":     a.EventID,
		"event_name":   a.EventName,
		"event_source": a.EventSource,
		"principal":    a.Principal,
		"source_ip":    a.SourceIP,
		"aws_region":   a.AWSRegion,
		"account_id":   a.AccountID,
		"outcome":      "success",
	}
	optional := map[string]string{
		"description":   a.Description,
		"user_name":     a.UserName,
		"access_key_id": a.AccessKeyID,
		"user_agent":    a.UserAgent,
		"error_code":    a.ErrorCode,
		"error_message": a.ErrorMessage,
		"runbook":       a.Runbook,
	}
	for k, v := range optional {
		if v != "" {
			details[k] = v
		}
	}
	if a.ErrorCode != "" {
		details["outcome"] = a.ErrorCode
	}
	if !a.EventTime.IsZero() {
		details["event_time"] = a.EventTime.UTC().Format(time.RFC3339)
	}
	if len(a.Tags) > 0 {
		details["tags"] = a.Tags
	}
	if len(a.References) > 0 {
		details["references"] = a.References
	}
	if a.Count > 1 {
		details["count"] = a.Count
	}
	if a.Suppressed > 0 {
		details["suppressed"] = a.Suppressed
	}
	if !a.FirstTime.IsZero() {
		details["first_time"] = a.FirstTime.UTC().Format(time.RFC3339)
	}
	if !a.LastTime.IsZero() {
		details["last_time"] = a.LastTime.UTC().Format(time.RFC3339)
	}
	if len(a.Group) > 0 {
		details["group"] = a.Group
	}
	if len(a.Samples) > 0 {
		details["samples"] = a.Samples
	}
	if a.Test {
		details["test"] = true
	}
	switch {
	case len(a.Event) == 0:
	case len(a.Event) > maxRawEvent:
		details["event_omitted"] = fmt.Sprintf("the CloudTrail record is %d bytes, more than the %d sent", len(a.Event), maxRawEvent)
	case json.Valid(a.Event):
		details["event"] = a.Event
	}

	ev := event{
		RoutingKey:  routingKey,
		EventAction: "trigger",
		DedupKey:    dedupKey(a.DedupKey),
		Payload: payload{
			Summary:       truncate(summary, maxSummary),
			Source:        truncate(source, maxSummary),
			Severity:      Severity(a.Severity),
			Component:     a.EventSource,
			Group:         a.AccountID,
			Class:         a.RuleID,
			CustomDetails: details,
		},
		Client: "trailwatch",
	}
	if !a.EventTime.IsZero() {
		ev.Payload.Timestamp = a.EventTime.UTC().Format(time.RFC3339Nano)
	}
	if u := notifiers.LinkURL(a.ConsoleURL()); u != "" {
		ev.Links = append(ev.Links, link{Href: u, Text: "View the event in CloudTrail"})
	}
	if u := notifiers.LinkURL(a.Runbook); u != "" {
		ev.Links = append(ev.Links, link{Href: u, Text: "Runbook"})
	}
	return ev
}

// Notify sends a trigger event for a. PagerDuty answers 202 when it has
// accepted the event; see notifiers.StatusError for how other answers are
// classified.
func (n *Notifier) Notify(ctx context.Context, a notifiers.Alert) error {
	op := "pagerduty: enqueue event at " + notifiers.RedactURL(n.url)
	body, err := json.Marshal(buildEvent(n.routingKey, a))
	if err != nil {
		return notifiers.Permanent(fmt.Errorf("pagerduty: encode event: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return notifiers.Permanent(notifiers.RequestError(op, err, n.routingKey))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.client.Do(req)
	if err != nil {
		return notifiers.RequestError(op, err, n.routingKey)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		_ = resp.Body.Close()
	}()
	if err := notifiers.CheckResponse(op, resp, n.now, n.routingKey); err != nil {
		return err
	}
	n.logger.DebugContext(ctx, "pagerduty event enqueued", "rule_id", a.RuleID, "dedup_key", a.DedupKey)
	return nil
}
