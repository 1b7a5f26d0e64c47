// Package slack delivers alerts to Slack as Block Kit messages, either
// through an incoming webhook or through chat.postMessage with a bot token.
//
// Event fields are attacker-controlled: every one is put in a plain_text
// object with &, < and > escaped, so that mentions such as <!channel> and
// links such as <https://evil|click> stay inert, and is cut to Slack's size
// limits. The webhook URL and the token never appear in errors or logs.
package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	slackgo "github.com/slack-go/slack"

	"github.com/trailwatch/trailwatch/notifiers"
)

// Config is the YAML configuration of a Slack notifier. Give exactly one of
// WebhookURL, WebhookURLFile, Token and TokenFile; Channel goes with a
// token.
type Config struct {
	// WebhookURL is an incoming webhook URL. It is a secret: write it as
	// ${ENV} or use WebhookURLFile.
	WebhookURL string `yaml:"webhook_url,omitempty"`
	// WebhookURLFile names a file whose content is the webhook URL.
	WebhookURLFile string `yaml:"webhook_url_file,omitempty"`
	// Token is a bot token (xoxb-...) with the chat:write scope. It is a
	// secret: write it as ${ENV} or use TokenFile.
	Token string `yaml:"token,omitempty"`
	// TokenFile names a file whose content is the token.
	TokenFile string `yaml:"token_file,omitempty"`
	// Channel is the channel ID or name that chat.postMessage posts to.
	Channel string `yaml:"channel,omitempty"`
}

// Validate reports every problem with the configuration at once. It does
// not read the *_file options; New does.
func (c *Config) Validate() error {
	var errs []error
	given := 0
	for _, s := range []string{c.WebhookURL, c.WebhookURLFile, c.Token, c.TokenFile} {
		if s != "" {
			given++
		}
	}
	switch {
	case given == 0:
		errs = append(errs, errors.New("slack: one of webhook_url, webhook_url_file, token or token_file is required"))
	case given > 1:
		errs = append(errs, errors.New("slack: webhook_url, webhook_url_file, token and token_file are mutually exclusive"))
	}
	if c.WebhookURL != "" {
		if err := notifiers.CheckURL(c.WebhookURL); err != nil {
			errs = append(errs, fmt.Errorf("slack: webhook_url: %w", err))
		}
	}
	usesToken := c.Token != "" || c.TokenFile != ""
	switch {
	case usesToken && strings.TrimSpace(c.Channel) == "":
		errs = append(errs, errors.New("slack: channel is required with token or token_file"))
	case !usesToken && c.Channel != "":
		errs = append(errs, errors.New("slack: channel is only used with token or token_file (an incoming webhook posts to its own channel)"))
	}
	if c.Token != "" && strings.ContainsAny(c.Token, " \t\r\n") {
		errs = append(errs, errors.New("slack: token contains white space"))
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

// WithAPIURL points the token mode at another Slack Web API base URL
// (ending in "/"), such as a slacktest server.
func WithAPIURL(u string) Option { return func(n *Notifier) { n.apiURL = u } }

// Notifier posts alerts to Slack.
type Notifier struct {
	webhookURL string
	token      string
	channel    string
	apiURL     string
	api        *slackgo.Client
	client     *http.Client
	logger     *slog.Logger
	now        func() time.Time
}

var _ notifiers.Notifier = (*Notifier)(nil)

// secrets returns the webhook URL and the token: as given, or read from
// webhook_url_file and token_file (the URL checked as webhook_url is).
func (c *Config) secrets() (webhookURL, token string, err error) {
	webhookURL, token = c.WebhookURL, c.Token
	var errs []error
	if c.WebhookURLFile != "" {
		webhookURL, err = notifiers.ReadSecretFile(c.WebhookURLFile)
		if err == nil {
			err = notifiers.CheckURL(webhookURL)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("slack: webhook_url_file: %w", err))
		}
	}
	if c.TokenFile != "" {
		if token, err = notifiers.ReadSecretFile(c.TokenFile); err != nil {
			errs = append(errs, fmt.Errorf("slack: token_file: %w", err))
		}
	}
	return webhookURL, token, errors.Join(errs...)
}

// ReadSecrets reads webhook_url_file and token_file as New does and
// reports what New would refuse, never their content (validate --config
// calls it).
func (c *Config) ReadSecrets() error {
	_, _, err := c.secrets()
	return err
}

// New validates cfg, reads the *_file option if given, and returns a ready
// Notifier.
func New(cfg Config, opts ...Option) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Notifier{
		webhookURL: cfg.WebhookURL,
		token:      cfg.Token,
		channel:    strings.TrimSpace(cfg.Channel),
		apiURL:     slackgo.APIURL,
		client:     notifiers.DefaultHTTPClient(),
		logger:     slog.New(slog.DiscardHandler),
		now:        time.Now,
	}
	var err error
	if n.webhookURL, n.token, err = cfg.secrets(); err != nil {
		return nil, err
	}
	for _, o := range opts {
		o(n)
	}
	n.client = notifiers.NoRedirects(n.client)
	if n.token != "" {
		n.api = slackgo.New(n.token, slackgo.OptionHTTPClient(n.client), slackgo.OptionAPIURL(n.apiURL))
	}
	return n, nil
}

// Notify posts a to Slack. Errors are classified for the outbox: rate
// limits carry the server's Retry-After, authentication and channel errors
// are permanent, network and server errors are retryable.
func (n *Notifier) Notify(ctx context.Context, a notifiers.Alert) error {
	text, blocks := buildMessage(a)
	var err error
	if n.api != nil {
		err = n.postMessage(ctx, text, blocks)
	} else {
		err = n.postWebhook(ctx, text, blocks)
	}
	if err != nil {
		return err
	}
	n.logger.DebugContext(ctx, "slack message delivered", "endpoint", n.endpoint(),
		"rule_id", a.RuleID, "dedup_key", a.DedupKey)
	return nil
}

// endpoint names where messages go, safely for logs.
func (n *Notifier) endpoint() string {
	if n.api != nil {
		return notifiers.RedactURL(n.apiURL) + " channel " + n.channel
	}
	return notifiers.RedactURL(n.webhookURL)
}

func (n *Notifier) postWebhook(ctx context.Context, text string, blocks []slackgo.Block) error {
	op := "slack: post to webhook " + notifiers.RedactURL(n.webhookURL)
	body, err := json.Marshal(payload{
		Text:   text,
		Blocks: slackgo.Blocks{BlockSet: blocks},
		Parse:  "none",
	})
	if err != nil {
		return notifiers.Permanent(fmt.Errorf("slack: encode message: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.webhookURL, bytes.NewReader(body))
	if err != nil {
		return notifiers.Permanent(notifiers.RequestError(op, err, n.webhookURL))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.client.Do(req)
	if err != nil {
		return notifiers.RequestError(op, err, n.webhookURL)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		_ = resp.Body.Close()
	}()
	return notifiers.CheckResponse(op, resp, n.now, n.webhookURL)
}

func (n *Notifier) postMessage(ctx context.Context, text string, blocks []slackgo.Block) error {
	_, _, err := n.api.PostMessageContext(ctx, n.channel,
		slackgo.MsgOptionText(text, false),
		slackgo.MsgOptionBlocks(blocks...),
		slackgo.MsgOptionParse(false),
		slackgo.MsgOptionDisableMarkdown(),
		slackgo.MsgOptionDisableLinkUnfurl(),
		slackgo.MsgOptionDisableMediaUnfurl(),
	)
	if err == nil {
		return nil
	}
	return n.classifyAPIError(err)
}

// permanentAPIErrors are chat.postMessage error codes that retrying the
// same message cannot fix. Unknown codes are treated as retryable, since
// dropping an alert is worse than retrying it.
var permanentAPIErrors = map[string]bool{
	"invalid_auth":                             true,
	"not_authed":                               true,
	"account_inactive":                         true,
	"token_revoked":                            true,
	"token_expired":                            true,
	"no_permission":                            true,
	"missing_scope":                            true,
	"not_allowed_token_type":                   true,
	"invalid_arguments":                        true,
	"invalid_arg_name":                         true,
	"invalid_form_data":                        true,
	"invalid_post_type":                        true,
	"invalid_charset":                          true,
	"invalid_blocks":                           true,
	"invalid_blocks_format":                    true,
	"invalid_attachments":                      true,
	"msg_too_long":                             true,
	"msg_blocks_too_long":                      true,
	"no_text":                                  true,
	"too_many_attachments":                     true,
	"channel_not_found":                        true,
	"not_in_channel":                           true,
	"is_archived":                              true,
	"restricted_action":                        true,
	"restricted_action_read_only_channel":      true,
	"restricted_action_thread_only_channel":    true,
	"restricted_action_non_threadable_channel": true,
	"ekm_access_denied":                        true,
	"team_access_not_granted":                  true,
	"two_factor_setup_required":                true,
	"method_deprecated":                        true,
	"deprecated_endpoint":                      true,
	"org_login_required":                       true,
}

// classifyAPIError maps slack-go's errors to the outbox's vocabulary and
// strips anything that could carry the token or URL.
func (n *Notifier) classifyAPIError(err error) error {
	op := "slack: chat.postMessage to " + n.channel
	secrets := []string{n.token}

	var rl *slackgo.RateLimitedError
	if errors.As(err, &rl) {
		return &notifiers.RetryAfterError{
			Err:   errors.New(op + ": rate limited"),
			After: rl.RetryAfter,
		}
	}
	var sc slackgo.StatusCodeError
	if errors.As(err, &sc) {
		return notifiers.StatusError(op, sc.Code, nil, nil, n.now(), secrets...)
	}
	var se slackgo.SlackErrorResponse
	if errors.As(err, &se) {
		// The error code comes from whatever answered: quote it as a body.
		msg := errors.New(op + ": " + notifiers.RedactBody(se.Err, secrets...))
		if se.Err == "ratelimited" || se.Err == "rate_limited" {
			return &notifiers.RetryAfterError{Err: msg, After: notifiers.DefaultRetryAfter}
		}
		if permanentAPIErrors[se.Err] {
			return notifiers.Permanent(msg)
		}
		return msg
	}
	// Transport errors (with the URL stripped) and anything else, such as
	// an unreadable answer from a proxy, may pass on a later try.
	return notifiers.RequestError(op, err, secrets...)
}
