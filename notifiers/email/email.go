// Package email delivers trailwatch alerts as e-mail, through an SMTP relay
// (github.com/wneessen/go-mail) or through Amazon SES (aws-sdk-go-v2 sesv2).
//
// Each alert becomes one message with a short, sanitised subject
// ("[trailwatch] HIGH: Root account used"), a plain-text part and an HTML
// part that carry the same facts as the Slack message: who, what, where,
// when, how, outcome, the CloudTrail console link and the runbook. Every
// field taken from the event is attacker-controlled: the HTML part is
// rendered with html/template, and nothing from the event reaches a header
// without its control characters removed.
//
// Messages carry a Message-ID derived from the alert's dedup key, event id
// and count, so a retried delivery of the same alert repeats its Message-ID,
// and References/In-Reply-To headers derived from the dedup key alone, so
// mail clients thread the alerts of one incident together.
package email

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/trailwatch/trailwatch/notifiers"
)

// Transports that Config.Transport accepts.
const (
	TransportSMTP = "smtp"
	TransportSES  = "ses"
)

// TLS modes that Config.TLS accepts.
const (
	// TLSNone sends in clear text. Authentication is then refused by the
	// client unless the relay is on loopback.
	TLSNone = "none"
	// TLSStartTLS connects in clear text and requires the STARTTLS upgrade.
	TLSStartTLS = "starttls"
	// TLSImplicit speaks TLS from the first byte (SMTPS, usually port 465).
	TLSImplicit = "tls"
)

// DefaultTimeout bounds one SMTP conversation when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Config is the `type: email` notifier's configuration.
//
// Secrets come either expanded from the environment by the config loader
// (`password: ${SMTP_PASSWORD}`) or from a file named by password_file,
// which New reads.
type Config struct {
	// Type is the notifier kind; when set it must be "email".
	Type string `yaml:"type,omitempty"`

	// Transport is "smtp" (the default) or "ses".
	Transport string `yaml:"transport,omitempty"`

	// SMTPHost and SMTPPort name the relay. The port defaults to 587 for
	// starttls, 465 for tls and 25 for none.
	SMTPHost string `yaml:"smtp_host,omitempty"`
	SMTPPort int    `yaml:"smtp_port,omitempty"`
	// TLS is "starttls" (the default), "tls" or "none".
	TLS string `yaml:"tls,omitempty"`
	// TLSCAFile, when set, is a PEM bundle that replaces the system roots for
	// verifying the relay's certificate (private relays, tests).
	TLSCAFile string `yaml:"tls_ca_file,omitempty"`
	// TLSInsecureSkipVerify turns certificate verification off. For tests.
	TLSInsecureSkipVerify bool `yaml:"tls_insecure_skip_verify,omitempty"`

	// Username, with Password or PasswordFile, turns SMTP AUTH on.
	Username     string `yaml:"username,omitempty"`
	Password     string `yaml:"password,omitempty"`
	PasswordFile string `yaml:"password_file,omitempty"`
	// AuthMechanism is "plain" (the default), "login" or "cram-md5".
	AuthMechanism string `yaml:"auth_mechanism,omitempty"`

	// From is the sender, an RFC 5322 address ("Trailwatch <tw@example.com>"
	// or "tw@example.com"). With SES it must be a verified identity.
	From string `yaml:"from"`
	// To lists the recipients.
	To []string `yaml:"to"`

	// Region is the SES region; empty means the SDK's default chain
	// (AWS_REGION, shared config). AWS_ENDPOINT_URL is honoured.
	Region string `yaml:"region,omitempty"`
	// SESConfigurationSet names an SES configuration set to send with.
	SESConfigurationSet string `yaml:"ses_configuration_set,omitempty"`
	// SESRaw sends the same MIME message as SMTP (with its Message-ID and
	// threading headers) as SES Raw content, instead of Simple content.
	SESRaw bool `yaml:"ses_raw,omitempty"`

	// Timeout bounds one delivery attempt; zero means DefaultTimeout.
	Timeout time.Duration `yaml:"timeout,omitempty"`
}

// String describes c for logs and error messages with the password
// redacted, so printing a Config with %v or %+v never shows the secret.
func (c Config) String() string {
	pw := ""
	if c.Password != "" {
		pw = "<redacted>"
	}
	return fmt.Sprintf("{transport:%s smtp_host:%s smtp_port:%d tls:%s username:%s password:%s password_file:%s from:%s to:%v region:%s}",
		c.transport(), c.SMTPHost, c.SMTPPort, c.tlsMode(), c.Username, pw, c.PasswordFile, c.From, c.To, c.Region)
}

// LogValue implements slog.LogValuer with the password redacted.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Validate reports every problem in c at once, joined; nil means c is
// usable. It does not read files or reach the network.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.Type != "" && c.Type != "email" {
		add("type: %q is not email", c.Type)
	}
	switch c.transport() {
	case TransportSMTP:
		if c.SMTPHost == "" {
			add("smtp_host: required with transport smtp")
		} else if hasControl(c.SMTPHost) || strings.ContainsAny(c.SMTPHost, " /") {
			add("smtp_host: %q is not a host name", oneLine(c.SMTPHost))
		}
		if c.SMTPPort < 0 || c.SMTPPort > 65535 {
			add("smtp_port: %d is out of range 1-65535", c.SMTPPort)
		}
		switch c.tlsMode() {
		case TLSNone, TLSStartTLS, TLSImplicit:
		default:
			add("tls: %q is not one of none, starttls, tls", oneLine(c.TLS))
		}
		switch c.authMechanism() {
		case "plain", "login", "cram-md5":
		default:
			add("auth_mechanism: %q is not one of plain, login, cram-md5", oneLine(c.AuthMechanism))
		}
		if c.Password != "" && c.PasswordFile != "" {
			add("password and password_file: set one, not both")
		}
		if c.Username == "" && (c.Password != "" || c.PasswordFile != "") {
			add("username: required when a password is set")
		}
		if hasControl(c.Username) {
			add("username: contains control characters")
		}
		if c.Region != "" || c.SESConfigurationSet != "" || c.SESRaw {
			add("region, ses_configuration_set, ses_raw: only apply to transport ses")
		}
	case TransportSES:
		if c.SMTPHost != "" || c.SMTPPort != 0 || c.TLS != "" || c.TLSCAFile != "" || c.TLSInsecureSkipVerify ||
			c.Username != "" || c.Password != "" || c.PasswordFile != "" || c.AuthMechanism != "" {
			add("smtp_host, smtp_port, tls, tls_*, username, password, password_file, auth_mechanism: only apply to transport smtp")
		}
		if hasControl(c.Region) || strings.ContainsAny(c.Region, " /") {
			add("region: %q is not a region name", oneLine(c.Region))
		}
	default:
		add("transport: %q is not one of smtp, ses", oneLine(c.Transport))
	}

	if c.From == "" {
		add("from: required")
	} else if err := checkAddress(c.From); err != nil {
		add("from: %w", err)
	}
	if len(c.To) == 0 {
		add("to: at least one recipient is required")
	}
	for i, to := range c.To {
		if err := checkAddress(to); err != nil {
			add("to[%d]: %w", i, err)
		}
	}
	if c.Timeout < 0 {
		add("timeout: %s is negative", c.Timeout)
	}
	return errors.Join(errs...)
}

// checkAddress accepts one RFC 5322 address with no control characters, so
// that nothing can be smuggled into the From or To header.
func checkAddress(s string) error {
	if hasControl(s) {
		return fmt.Errorf("%q contains control characters", oneLine(s))
	}
	if _, err := mail.ParseAddress(s); err != nil {
		return fmt.Errorf("%q is not an e-mail address: %w", s, err)
	}
	return nil
}

func (c *Config) transport() string {
	if c.Transport == "" {
		return TransportSMTP
	}
	return c.Transport
}

func (c *Config) tlsMode() string {
	if c.TLS == "" {
		return TLSStartTLS
	}
	return c.TLS
}

func (c *Config) authMechanism() string {
	if c.AuthMechanism == "" {
		return "plain"
	}
	return strings.ToLower(c.AuthMechanism)
}

func (c *Config) port() int {
	if c.SMTPPort != 0 {
		return c.SMTPPort
	}
	switch c.tlsMode() {
	case TLSImplicit:
		return 465
	case TLSNone:
		return 25
	}
	return 587
}

func (c *Config) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// Option adjusts a Notifier built by New.
type Option func(*options)

type options struct {
	logger *slog.Logger
	now    func() time.Time
	awsCfg *aws.Config
}

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithClock sets the clock used for the Date header; the default is
// time.Now.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithAWSConfig makes the SES transport use cfg instead of loading the SDK's
// default configuration chain.
func WithAWSConfig(cfg aws.Config) Option { return func(o *options) { o.awsCfg = &cfg } }

// Notifier sends alerts as e-mail. It is safe for concurrent use.
type Notifier struct {
	cfg    Config
	logger *slog.Logger
	now    func() time.Time
	send   func(ctx context.Context, m *message) error
}

var _ notifiers.Notifier = (*Notifier)(nil)

// New validates cfg, reads password_file and tls_ca_file, and, for SES,
// loads the AWS configuration. It does not connect to the relay.
func New(ctx context.Context, cfg Config, opts ...Option) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("email: invalid config: %w", err)
	}
	o := options{logger: slog.New(slog.DiscardHandler), now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	n := &Notifier{cfg: cfg, logger: o.logger, now: o.now}
	switch cfg.transport() {
	case TransportSMTP:
		pw, err := cfg.password()
		if err != nil {
			return nil, err
		}
		n.cfg.Password = pw
		tlsCfg, err := tlsConfig(&cfg)
		if err != nil {
			return nil, err
		}
		s := &smtpSender{cfg: n.cfg, tls: tlsCfg}
		n.send = s.send
	case TransportSES:
		s, err := newSESSender(ctx, &n.cfg, o.awsCfg)
		if err != nil {
			return nil, err
		}
		n.send = s.send
	}
	return n, nil
}

// password returns password, or password_file's content without its
// trailing line break.
func (c *Config) password() (string, error) {
	if c.PasswordFile == "" {
		return c.Password, nil
	}
	b, err := os.ReadFile(c.PasswordFile)
	if err != nil {
		// The error names the file, never its content.
		return "", fmt.Errorf("email: read password_file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// ReadSecrets reads password_file and tls_ca_file as New does and reports
// what New would refuse, never their content (validate --config calls
// it).
func (c *Config) ReadSecrets() error {
	if c.transport() != TransportSMTP {
		return nil
	}
	_, perr := c.password()
	_, terr := tlsConfig(c)
	return errors.Join(perr, terr)
}

func tlsConfig(cfg *Config) (*tls.Config, error) {
	tc := &tls.Config{
		ServerName:         cfg.SMTPHost,
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: cfg.TLSInsecureSkipVerify, //nolint:gosec // opt-in, for tests and private relays.
	}
	if cfg.TLSCAFile != "" {
		pem, err := os.ReadFile(cfg.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("email: read tls_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("email: read tls_ca_file %s: no PEM certificate found", cfg.TLSCAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// Notify renders a and sends it to every recipient. A rejection that
// retrying cannot fix (SMTP 5xx, failed authentication, an unverified SES
// sender) is marked notifiers.Permanent; refused connections, timeouts and
// SMTP 4xx replies are not.
func (n *Notifier) Notify(ctx context.Context, a notifiers.Alert) error {
	m := render(&a, n.cfg.From, n.cfg.To, n.now())
	ctx, cancel := context.WithTimeout(ctx, n.cfg.timeout())
	defer cancel()
	if err := n.send(ctx, m); err != nil {
		err = redact(err, n.cfg.Password)
		n.logger.DebugContext(ctx, "email delivery failed",
			"rule_id", a.RuleID, "transport", n.cfg.transport(),
			"permanent", notifiers.IsPermanent(err), "err", err)
		return err
	}
	n.logger.DebugContext(ctx, "email sent", "rule_id", a.RuleID, "transport", n.cfg.transport(), "recipients", len(n.cfg.To))
	return nil
}

// redact replaces secret in err's message. The result keeps err's
// permanence but not its chain, so no wrapped error can print the secret.
func redact(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	out := errors.New(strings.ReplaceAll(err.Error(), secret, "<redacted>"))
	if notifiers.IsPermanent(err) {
		return notifiers.Permanent(out)
	}
	return out
}
