// Package webhook delivers alerts as a JSON POST of trailwatch's public alert
// form to any HTTP endpoint, with an Idempotency-Key header that is the same
// for every attempt at the same alert.
//
// The URL and header values are treated as secrets: they never appear in
// errors or logs, which name the endpoint by scheme and host only.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/trailwatch/trailwatch/notifiers"
)

// IdempotencyHeader is the request header that carries the alert's
// notifiers.Alert.DeliveryID. Delivery is at least once (a crash between
// the POST and its record in the outbox sends the alert again); receivers
// drop a repeat by this key.
const IdempotencyHeader = "Idempotency-Key"

// Config is the YAML configuration of a webhook notifier.
type Config struct {
	// URL receives the POST. It often carries a secret in its path or
	// query; write it as ${ENV} or use URLFile.
	URL string `yaml:"url,omitempty"`
	// URLFile names a file whose content is the URL.
	URLFile string `yaml:"url_file,omitempty"`
	// Headers are added to every request. Values may be secrets (API keys,
	// bearer tokens) and are never logged.
	Headers map[string]string `yaml:"headers,omitempty"`
}

// Validate reports every problem with the configuration at once. It does
// not read URLFile; New does.
func (c *Config) Validate() error {
	var errs []error
	switch {
	case c.URL == "" && c.URLFile == "":
		errs = append(errs, errors.New("webhook: one of url or url_file is required"))
	case c.URL != "" && c.URLFile != "":
		errs = append(errs, errors.New("webhook: url and url_file are mutually exclusive"))
	case c.URL != "":
		if err := notifiers.CheckURL(c.URL); err != nil {
			errs = append(errs, fmt.Errorf("webhook: url: %w", err))
		}
	}
	names := make([]string, 0, len(c.Headers))
	for name := range c.Headers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !validHeaderName(name) {
			errs = append(errs, fmt.Errorf("webhook: headers: %q is not a valid header name", name))
		}
		if strings.ContainsAny(c.Headers[name], "\r\n\x00") {
			// The value may be a secret: say which header, not what.
			errs = append(errs, fmt.Errorf("webhook: headers: value of %q contains a line break or NUL", name))
		}
		switch textproto.CanonicalMIMEHeaderKey(name) {
		case "Content-Length", "Host", "Transfer-Encoding":
			errs = append(errs, fmt.Errorf("webhook: headers: %q cannot be set", name))
		}
	}
	return errors.Join(errs...)
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if r > 0x7e || r <= 0x20 || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}

// Option adjusts a Notifier built by New.
type Option func(*Notifier)

// WithHTTPClient makes the notifier send with c instead of
// notifiers.DefaultHTTPClient(). Redirects are never followed, whatever c's
// policy: the notifier uses a copy of c without it.
func WithHTTPClient(c *http.Client) Option { return func(n *Notifier) { n.client = c } }

// WithLogger makes the notifier log to l instead of discarding.
func WithLogger(l *slog.Logger) Option { return func(n *Notifier) { n.logger = l } }

// WithClock makes the notifier read the time (for Retry-After dates) from
// now instead of time.Now.
func WithClock(now func() time.Time) Option { return func(n *Notifier) { n.now = now } }

// Notifier POSTs alerts to a webhook.
type Notifier struct {
	url     string
	headers http.Header
	secrets []string
	client  *http.Client
	logger  *slog.Logger
	now     func() time.Time
}

var _ notifiers.Notifier = (*Notifier)(nil)

// url returns the endpoint: url, or url_file's content, checked as url is.
func (c *Config) url() (string, error) {
	if c.URLFile == "" {
		return c.URL, nil
	}
	u, err := notifiers.ReadSecretFile(c.URLFile)
	if err == nil {
		err = notifiers.CheckURL(u)
	}
	if err != nil {
		return "", fmt.Errorf("webhook: url_file: %w", err)
	}
	return u, nil
}

// ReadSecrets reads url_file as New does and reports what New would
// refuse in it, never its content (validate --config calls it).
func (c *Config) ReadSecrets() error {
	_, err := c.url()
	return err
}

// New validates cfg, reads URLFile if given, and returns a ready Notifier.
func New(cfg Config, opts ...Option) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u, err := cfg.url()
	if err != nil {
		return nil, err
	}
	n := &Notifier{
		url:     u,
		headers: http.Header{},
		secrets: []string{u},
		client:  notifiers.DefaultHTTPClient(),
		logger:  slog.New(slog.DiscardHandler),
		now:     time.Now,
	}
	for name, v := range cfg.Headers {
		n.headers.Set(name, v)
		n.secrets = append(n.secrets, v)
	}
	for _, o := range opts {
		o(n)
	}
	n.client = notifiers.NoRedirects(n.client)
	return n, nil
}

// Notify POSTs a as JSON. A 2xx answer is success; see
// notifiers.StatusError for how other answers are classified.
func (n *Notifier) Notify(ctx context.Context, a notifiers.Alert) error {
	body, err := json.Marshal(a)
	if err != nil {
		return notifiers.Permanent(fmt.Errorf("webhook: encode alert: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return notifiers.Permanent(notifiers.RequestError("webhook: build request", err, n.secrets...))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "trailwatch")
	// Every attempt at this alert, before or after a restart, carries the
	// same key: a receiver that honours it sees the alert once.
	req.Header.Set(IdempotencyHeader, a.DeliveryID())
	for name, vs := range n.headers {
		req.Header[name] = vs
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return notifiers.RequestError("webhook: post alert to "+notifiers.RedactURL(n.url), err, n.secrets...)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		_ = resp.Body.Close()
	}()
	if err := notifiers.CheckResponse("webhook: post alert to "+notifiers.RedactURL(n.url), resp, n.now, n.secrets...); err != nil {
		return err
	}
	n.logger.DebugContext(ctx, "webhook delivered", "endpoint", notifiers.RedactURL(n.url),
		"rule_id", a.RuleID, "dedup_key", a.DedupKey, "status", resp.StatusCode)
	return nil
}
