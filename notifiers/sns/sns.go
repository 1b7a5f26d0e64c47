// Package sns publishes trailwatch alerts to an Amazon SNS topic
// (aws-sdk-go-v2 sns).
//
// The message is the alert's public JSON form, the same document the file
// and webhook notifiers write. Each message carries the String attributes
// "severity" and "rule_id" for subscription filter policies, and a short
// ASCII subject for e-mail subscriptions. FIFO topics (".fifo") get the
// rule id as MessageGroupId and a hash of the alert's identity as
// MessageDeduplicationId.
//
// SNS refuses messages over 256 KiB (message and attributes together). A
// CloudTrail record may be that large on its own, so an oversized alert is
// sent with its record trimmed: the largest top-level fields are dropped,
// and the record gains "event_truncated": true, "original_size" and
// "trimmed_fields". The message stays valid JSON and is never refused for
// its size.
package sns

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/smithy-go"

	"github.com/trailwatch/trailwatch/notifiers"
)

// MaxPublishBytes is SNS's limit on one published message, attributes
// included.
const MaxPublishBytes = 256 * 1024

// MaxSubjectLen is one less than SNS's subject limit ("less than 100
// characters").
const MaxSubjectLen = 99

// safetyMargin keeps the payload clear of the limit, for the attribute
// framing SNS counts and we cannot see.
const safetyMargin = 1024

// Config is the `type: sns` notifier's configuration.
type Config struct {
	// Type is the notifier kind; when set it must be "sns".
	Type string `yaml:"type,omitempty"`
	// TopicARN is the topic to publish to, e.g.
	// arn:aws:sns:eu-west-1:111122223333:trailwatch-alerts (or ….fifo).
	TopicARN string `yaml:"topic_arn"`
	// Region defaults to the topic ARN's region; when set it must agree
	// with it. AWS_ENDPOINT_URL is honoured.
	Region string `yaml:"region,omitempty"`
}

// The patterns compile on first use, not when the package initializes:
// their counted repetitions made them 4-8 ms of every command's start-up,
// most of which never configure an SNS notifier.
var (
	arnRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^arn:(aws[a-z-]*):sns:([a-z0-9-]+):(\d{12}):([A-Za-z0-9_-]{1,256}(?:\.fifo)?)$`)
	})
	regionRE    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9-]+$`) })
	fifoGroupRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[A-Za-z0-9!"#$%&'()*+,\-./:;<=>?@\[\\\]^_` + "`" + `{|}~]{1,128}$`)
	})
)

// Validate reports every problem in c at once, joined; nil means c is
// usable. It does not reach the network.
func (c *Config) Validate() error {
	var errs []error
	if c.Type != "" && c.Type != "sns" {
		errs = append(errs, fmt.Errorf("type: %q is not sns", c.Type))
	}
	var arnRegion string
	switch m := arnRE().FindStringSubmatch(c.TopicARN); {
	case c.TopicARN == "":
		errs = append(errs, errors.New("topic_arn: required"))
	case m == nil:
		errs = append(errs, fmt.Errorf("topic_arn: %q is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)", c.TopicARN))
	default:
		arnRegion = m[2]
	}
	switch {
	case c.Region == "":
	case !regionRE().MatchString(c.Region):
		errs = append(errs, fmt.Errorf("region: %q is not a region name", c.Region))
	case arnRegion != "" && c.Region != arnRegion:
		errs = append(errs, fmt.Errorf("region: %q differs from the topic's region %q", c.Region, arnRegion))
	}
	return errors.Join(errs...)
}

// region is the region to publish in: the configured one, else the ARN's.
func (c *Config) region() string {
	if c.Region != "" {
		return c.Region
	}
	if m := arnRE().FindStringSubmatch(c.TopicARN); m != nil {
		return m[2]
	}
	return ""
}

// fifo reports whether the topic is a FIFO topic.
func (c *Config) fifo() bool { return strings.HasSuffix(c.TopicARN, ".fifo") }

// Option adjusts a Notifier built by New.
type Option func(*options)

type options struct {
	logger *slog.Logger
	awsCfg *aws.Config
}

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithAWSConfig makes the notifier use cfg instead of loading the SDK's
// default configuration chain. The topic's region still applies.
func WithAWSConfig(cfg aws.Config) Option { return func(o *options) { o.awsCfg = &cfg } }

// Notifier publishes alerts to one SNS topic. It is safe for concurrent use.
type Notifier struct {
	cfg    Config
	client *sns.Client
	logger *slog.Logger
}

var _ notifiers.Notifier = (*Notifier)(nil)

// New validates cfg and loads the AWS configuration. It does not call SNS.
func New(ctx context.Context, cfg Config, opts ...Option) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sns: invalid config: %w", err)
	}
	o := options{logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	var ac aws.Config
	if o.awsCfg != nil {
		ac = o.awsCfg.Copy()
	} else {
		var err error
		if ac, err = config.LoadDefaultConfig(ctx); err != nil {
			return nil, fmt.Errorf("sns: load aws config: %w", err)
		}
	}
	ac.Region = cfg.region()
	client := sns.NewFromConfig(ac, func(o *sns.Options) {
		// The outbox retries with backoff; SDK retries on top would only
		// multiply the wait.
		o.RetryMaxAttempts = 1
	})
	return &Notifier{cfg: cfg, client: client, logger: o.logger}, nil
}

// Notify publishes a. Throttling, 5xx replies and network failures are
// retryable; a request SNS refuses (NotFound, InvalidParameter,
// AuthorizationError and other 4xx) is marked notifiers.Permanent.
func (n *Notifier) Notify(ctx context.Context, a notifiers.Alert) error {
	in, err := n.publishInput(&a)
	if err != nil {
		return notifiers.Permanent(err)
	}
	out, err := n.client.Publish(ctx, in)
	if err != nil {
		err = classify(fmt.Errorf("sns: publish to %s: %w", n.cfg.TopicARN, err))
		n.logger.DebugContext(ctx, "sns publish failed", "rule_id", a.RuleID,
			"permanent", notifiers.IsPermanent(err), "err", err)
		return err
	}
	n.logger.DebugContext(ctx, "sns published", "rule_id", a.RuleID, "message_id", aws.ToString(out.MessageId))
	return nil
}

// publishInput builds the Publish request for a.
func (n *Notifier) publishInput(a *notifiers.Alert) (*sns.PublishInput, error) {
	in := &sns.PublishInput{
		TopicArn:          aws.String(n.cfg.TopicARN),
		MessageAttributes: map[string]types.MessageAttributeValue{},
	}
	overhead := safetyMargin
	if s := Subject(a); s != "" {
		in.Subject = aws.String(s)
		overhead += len(s)
	}
	for name, value := range map[string]string{"severity": a.Severity, "rule_id": a.RuleID} {
		value = attributeValue(value)
		if value == "" {
			continue // SNS refuses empty attribute values.
		}
		in.MessageAttributes[name] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(value)}
		overhead += len(name) + len("String") + len(value)
	}
	msg, err := Message(*a, MaxPublishBytes-overhead)
	if err != nil {
		return nil, err
	}
	in.Message = aws.String(string(msg))
	if n.cfg.fifo() {
		group := a.RuleID
		if !fifoGroupRE().MatchString(group) {
			group = "trailwatch-" + hash(a.RuleID)[:32]
		}
		in.MessageGroupId = aws.String(group)
		in.MessageDeduplicationId = aws.String(DeduplicationID(a))
	}
	return in, nil
}

// DeduplicationID identifies one delivery of a for SNS FIFO: a retry of
// the same alert repeats it, so SNS drops the duplicate, while another
// event under the same dedup key gets its own. It is 64 hex characters.
func DeduplicationID(a *notifiers.Alert) string {
	return a.DeliveryID()
}

func hash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Subject is "[trailwatch] SEVERITY: title" in printable ASCII, one line,
// at most MaxSubjectLen characters, as SNS requires. Event data reaches it
// only through the title, sanitised.
func Subject(a *notifiers.Alert) string {
	sev := strings.ToUpper(asciiLine(a.Severity))
	if sev == "" {
		sev = "ALERT"
	}
	title := asciiLine(a.Title)
	if title == "" {
		title = asciiLine(a.RuleID)
	}
	s := "[trailwatch] "
	if a.Test {
		s += "TEST "
	}
	s = strings.TrimSpace(s + sev + ": " + title)
	if len(s) > MaxSubjectLen {
		s = strings.TrimSpace(s[:MaxSubjectLen-3]) + "..."
	}
	return s
}

// asciiLine keeps printable ASCII, turns everything else into spaces or
// '?', and collapses white space.
func asciiLine(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 0x21 && r <= 0x7e:
			return r
		case unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			return ' '
		}
		return '?'
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// attributeValue strips control characters and bounds the length.
func attributeValue(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	for len(s) > 256 {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// marshal encodes v without HTML escaping, which would only inflate the
// message.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// Message is a's public JSON form, no longer than limit bytes. When the
// whole alert does not fit, its CloudTrail record is trimmed first (see the
// package doc), then its long free-text fields are cut; the result is
// always valid JSON that decodes into a notifiers.Alert.
func Message(a notifiers.Alert, limit int) ([]byte, error) {
	origSize := len(a.Event)
	if len(bytes.TrimSpace(a.Event)) > 0 && !json.Valid(a.Event) {
		// A record that is not JSON would make the whole message invalid.
		a.Event = marker(len(a.Event), nil)
	}
	b, err := marshal(a)
	if err != nil {
		return nil, fmt.Errorf("sns: encode alert: %w", err)
	}
	if len(b) <= limit {
		return b, nil
	}
	room := limit - (len(b) - len(a.Event))
	a.Event = trimEvent(a.Event, room)
	if b, err = marshal(a); err == nil && len(b) <= limit {
		return b, nil
	}
	// The rest of the alert is too big on its own: cut the free text.
	for _, s := range []*string{&a.Summary, &a.Description, &a.ErrorMessage, &a.UserAgent, &a.Principal, &a.Title} {
		*s = cut(*s, 1024)
	}
	if len(a.Tags) > 32 {
		a.Tags = a.Tags[:32]
	}
	if len(a.References) > 16 {
		a.References = a.References[:16]
	}
	for _, list := range [][]string{a.Tags, a.References} {
		for i := range list {
			list[i] = cut(list[i], 256)
		}
	}
	a.Event = marker(origSize, nil)
	if b, err = marshal(a); err != nil {
		return nil, fmt.Errorf("sns: encode alert: %w", err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("sns: alert is %d bytes after trimming, over the %d byte limit", len(b), limit)
	}
	return b, nil
}

// trimEvent drops the record's largest top-level fields until the record
// fits in room bytes, and marks it truncated.
func trimEvent(raw json.RawMessage, room int) json.RawMessage {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return marker(len(raw), nil)
	}
	type kv struct {
		key  string
		size int
	}
	order := make([]kv, 0, len(fields))
	for k, v := range fields {
		switch k {
		case "event_truncated", "original_size", "trimmed_fields":
			continue // overwritten below; the record cannot forge them.
		}
		order = append(order, kv{k, len(k) + len(v)})
	}
	// Largest first; by name for equal sizes, so the result is stable.
	slices.SortFunc(order, func(x, y kv) int {
		if x.size != y.size {
			return y.size - x.size
		}
		return strings.Compare(x.key, y.key)
	})
	var trimmed []string
	fields["event_truncated"] = json.RawMessage("true")
	fields["original_size"] = json.RawMessage(fmt.Sprint(len(raw)))
	fields["trimmed_fields"] = json.RawMessage("[]")
	b, err := marshal(fields)
	if err != nil {
		return marker(len(raw), nil)
	}
	// Track the size as fields go, and marshal only when it may fit: a
	// record of many fields would otherwise cost one marshal per field.
	est := len(b)
	for _, f := range order {
		delete(fields, f.key)
		trimmed = append(trimmed, f.key)
		est += -(f.size + len(`"":,`)) + len(f.key) + len(`"",`)
		if est > room {
			continue
		}
		fields["trimmed_fields"], _ = marshal(trimmed)
		if b, err := marshal(fields); err == nil {
			if len(b) <= room {
				return b
			}
			est = len(b)
		}
	}
	return marker(len(raw), trimmed)
}

// marker stands in for a record that could not be kept at all.
func marker(size int, trimmed []string) json.RawMessage {
	m := map[string]any{"event_truncated": true, "original_size": size}
	if len(trimmed) > 0 {
		m["trimmed_fields"] = trimmed
	}
	b, _ := marshal(m)
	return b
}

// cut shortens s to at most n bytes on a rune boundary, marking the cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// retryableCodes are API error codes worth retrying whatever their HTTP
// status.
var retryableCodes = map[string]bool{
	"Throttled":           true,
	"Throttling":          true,
	"ThrottlingException": true,
	"KMSThrottling":       true,
	"InternalError":       true,
	"InternalFailure":     true,
	"ServiceUnavailable":  true,
	"RequestTimeout":      true,
}

// classify marks err permanent when SNS refused the request itself (a 4xx:
// NotFound, InvalidParameter, AuthorizationError, KMS configuration errors);
// throttling, 5xx and errors without a response stay retryable.
func classify(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && retryableCodes[apiErr.ErrorCode()] {
		return err
	}
	var respErr *awshttp.ResponseError
	if errors.As(err, &respErr) {
		switch status := respErr.HTTPStatusCode(); {
		case status == http.StatusTooManyRequests || status >= 500:
			return err
		case status >= 400:
			return notifiers.Permanent(err)
		}
	}
	return err
}
