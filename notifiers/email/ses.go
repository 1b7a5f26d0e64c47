package email

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/smithy-go"

	"github.com/trailwatch/trailwatch/notifiers"
)

// sesSender delivers through Amazon SES v2 SendEmail.
type sesSender struct {
	client *sesv2.Client
	cfg    *Config
}

func newSESSender(ctx context.Context, cfg *Config, awsCfg *aws.Config) (*sesSender, error) {
	var ac aws.Config
	if awsCfg != nil {
		ac = awsCfg.Copy()
		if cfg.Region != "" {
			ac.Region = cfg.Region
		}
	} else {
		var opts []func(*config.LoadOptions) error
		if cfg.Region != "" {
			opts = append(opts, config.WithRegion(cfg.Region))
		}
		var err error
		if ac, err = config.LoadDefaultConfig(ctx, opts...); err != nil {
			return nil, fmt.Errorf("email: load aws config: %w", err)
		}
	}
	client := sesv2.NewFromConfig(ac, func(o *sesv2.Options) {
		// The outbox retries with backoff; SDK retries on top would only
		// multiply the wait.
		o.RetryMaxAttempts = 1
	})
	return &sesSender{client: client, cfg: cfg}, nil
}

func (s *sesSender) send(ctx context.Context, m *message) error {
	in := &sesv2.SendEmailInput{
		FromEmailAddress: aws.String(m.From),
		Destination:      &types.Destination{ToAddresses: m.To},
	}
	if s.cfg.SESConfigurationSet != "" {
		in.ConfigurationSetName = aws.String(s.cfg.SESConfigurationSet)
	}
	if s.cfg.SESRaw {
		msg, err := buildMsg(m)
		if err != nil {
			return notifiers.Permanent(fmt.Errorf("email: build message: %w", err))
		}
		var buf bytes.Buffer
		if _, err := msg.WriteTo(&buf); err != nil {
			return notifiers.Permanent(fmt.Errorf("email: write message: %w", err))
		}
		in.Content = &types.EmailContent{Raw: &types.RawMessage{Data: buf.Bytes()}}
	} else {
		// SES replaces any Message-ID with its own, so threading rests on
		// References and In-Reply-To.
		thread := "<" + toASCII(m.ThreadID) + ">"
		all := append([][2]string{{"References", thread}, {"In-Reply-To", thread}, {"Auto-Submitted", "auto-generated"}}, m.Headers...)
		headers := make([]types.MessageHeader, 0, len(all))
		for _, h := range all {
			headers = append(headers, types.MessageHeader{Name: aws.String(h[0]), Value: aws.String(h[1])})
		}
		in.Content = &types.EmailContent{Simple: &types.Message{
			// SES wants a 7-bit subject: RFC 2047 encode when needed.
			Subject: &types.Content{Data: aws.String(mime.QEncoding.Encode("utf-8", m.Subject)), Charset: aws.String("UTF-8")},
			Body: &types.Body{
				Text: &types.Content{Data: aws.String(m.Text), Charset: aws.String("UTF-8")},
				Html: &types.Content{Data: aws.String(m.HTML), Charset: aws.String("UTF-8")},
			},
			Headers: headers,
		}}
	}
	if _, err := s.client.SendEmail(ctx, in); err != nil {
		return classifyAWS(fmt.Errorf("email: ses send email: %w", err))
	}
	return nil
}

// retryableAWSCodes are API error codes worth retrying whatever their HTTP
// status.
var retryableAWSCodes = map[string]bool{
	"Throttling":                    true,
	"ThrottlingException":           true,
	"TooManyRequestsException":      true,
	"LimitExceededException":        true, // SES: sending quota; it resets.
	"ServiceUnavailable":            true,
	"InternalFailure":               true,
	"InternalError":                 true,
	"RequestTimeout":                true,
	"RequestTimeoutException":       true,
	"ProvisionedThroughputExceeded": true,
}

// classifyAWS marks an SES error permanent when the service rejected the
// request itself (a 4xx such as MessageRejected, an unverified sender,
// AccessDenied); throttling, 5xx and errors without a response (refused
// connections, timeouts, missing credentials) stay retryable.
func classifyAWS(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && retryableAWSCodes[apiErr.ErrorCode()] {
		return err
	}
	var respErr *awshttp.ResponseError
	if errors.As(err, &respErr) {
		status := respErr.HTTPStatusCode()
		switch {
		case status == http.StatusTooManyRequests || status >= 500:
			return err
		case status >= 400:
			return notifiers.Permanent(err)
		}
	}
	return err
}
