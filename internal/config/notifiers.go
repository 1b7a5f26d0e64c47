package config

import (
	"context"

	"github.com/trailwatch/trailwatch/internal/awsconf"
	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/notifiers/email"
	"github.com/trailwatch/trailwatch/notifiers/file"
	"github.com/trailwatch/trailwatch/notifiers/pagerduty"
	"github.com/trailwatch/trailwatch/notifiers/slack"
	"github.com/trailwatch/trailwatch/notifiers/sns"
	"github.com/trailwatch/trailwatch/notifiers/webhook"
)

// The notifier types a configuration may use. Each integration keeps its
// Config, Validate and New beside its code; this file only names them.
func init() {
	register("email", (*email.Config).Validate,
		func(ctx context.Context, _ string, c *email.Config, d Deps) (notifiers.Notifier, error) {
			opts := []email.Option{email.WithLogger(d.logger())}
			if c.Transport == email.TransportSES {
				ac, err := awsconf.Load(ctx, "", d.logger())
				if err != nil {
					return nil, err
				}
				opts = append(opts, email.WithAWSConfig(ac))
			}
			return email.New(ctx, *c, opts...)
		})
	register("sns", (*sns.Config).Validate,
		func(ctx context.Context, _ string, c *sns.Config, d Deps) (notifiers.Notifier, error) {
			ac, err := awsconf.Load(ctx, "", d.logger())
			if err != nil {
				return nil, err
			}
			return sns.New(ctx, *c, sns.WithLogger(d.logger()), sns.WithAWSConfig(ac))
		})
}

func init() {
	register("slack", (*slack.Config).Validate,
		func(_ context.Context, _ string, c *slack.Config, d Deps) (notifiers.Notifier, error) {
			return slack.New(*c, slack.WithLogger(d.logger()))
		})
	register("webhook", (*webhook.Config).Validate,
		func(_ context.Context, _ string, c *webhook.Config, d Deps) (notifiers.Notifier, error) {
			return webhook.New(*c, webhook.WithLogger(d.logger()))
		})
	register("pagerduty", (*pagerduty.Config).Validate,
		func(_ context.Context, _ string, c *pagerduty.Config, d Deps) (notifiers.Notifier, error) {
			return pagerduty.New(*c, pagerduty.WithLogger(d.logger()))
		})
	register("file", (*file.Config).Validate,
		func(_ context.Context, _ string, c *file.Config, d Deps) (notifiers.Notifier, error) {
			return file.New(*c, file.WithLogger(d.logger()))
		})
}
