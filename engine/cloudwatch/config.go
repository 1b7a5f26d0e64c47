package cloudwatch

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Default values that SetDefaults fills in.
const (
	DefaultPollInterval = 5 * time.Second
	DefaultLookback     = 15 * time.Minute
	DefaultStart        = "now"
)

// Config is the `source.cloudwatch` block of the config file.
type Config struct {
	// LogGroups are the log groups to read, by name or ARN; several are
	// allowed, each is read whole (every stream).
	LogGroups []string `yaml:"log_groups"`
	// Region is the AWS region of the log groups; empty means the SDK's
	// default chain (AWS_REGION, shared config...).
	Region string `yaml:"region"`
	// PollInterval is how often the recent tail of each log group is read.
	PollInterval time.Duration `yaml:"poll_interval"`
	// Lookback is how late, after its timestamp, a record may be ingested
	// and still be read. Records ingested later than that are missed.
	Lookback time.Duration `yaml:"lookback"`
	// Start is where the first run begins when the state dir holds no
	// position for a log group: "now", "beginning", an RFC 3339 time, or a
	// negative duration relative to now such as "-1h".
	Start string `yaml:"start"`
}

// SetDefaults fills in the zero fields with their defaults.
func (c *Config) SetDefaults() {
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Lookback == 0 {
		c.Lookback = DefaultLookback
	}
	if c.Start == "" {
		c.Start = DefaultStart
	}
}

// Validate reports every problem with the configuration at once. Call
// SetDefaults first.
func (c *Config) Validate() error {
	var errs []error
	if len(c.LogGroups) == 0 {
		errs = append(errs, errors.New("log_groups: at least one log group is required"))
	}
	seen := map[string]bool{}
	for i, g := range c.LogGroups {
		switch {
		case strings.TrimSpace(g) == "":
			errs = append(errs, fmt.Errorf("log_groups[%d]: empty log group name", i))
			continue
		case strings.HasPrefix(g, "arn:"):
			if _, err := parseLogGroupARN(g); err != nil {
				errs = append(errs, fmt.Errorf("log_groups[%d]: %w", i, err))
			}
		case len(g) > 512:
			errs = append(errs, fmt.Errorf("log_groups[%d]: log group name longer than 512 characters", i))
		}
		if seen[g] {
			errs = append(errs, fmt.Errorf("log_groups[%d]: %q is listed twice", i, g))
		}
		seen[g] = true
	}
	if c.PollInterval <= 0 {
		errs = append(errs, fmt.Errorf("poll_interval: must be positive, got %s", c.PollInterval))
	}
	if c.Lookback <= 0 {
		errs = append(errs, fmt.Errorf("lookback: must be positive, got %s", c.Lookback))
	} else if c.PollInterval > 0 && c.Lookback < c.PollInterval {
		errs = append(errs, fmt.Errorf("lookback: %s is shorter than poll_interval %s", c.Lookback, c.PollInterval))
	}
	if _, err := parseStart(c.Start, time.Unix(0, 0)); err != nil {
		errs = append(errs, fmt.Errorf("start: %w", err))
	}
	return errors.Join(errs...)
}

// beginning is the start position meaning "the oldest record the log group
// can hold".
var beginning = time.Time{}

// parseStart resolves a `start` value against now. It returns the zero
// time for "beginning".
func parseStart(s string, now time.Time) (time.Time, error) {
	switch s {
	case "now", "":
		return now, nil
	case "beginning":
		return beginning, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if strings.HasPrefix(s, "-") {
		d, err := time.ParseDuration(s)
		if err != nil {
			return time.Time{}, fmt.Errorf("parse %q as a duration: %w", s, err)
		}
		if d >= 0 {
			return time.Time{}, fmt.Errorf("duration %q must be negative (relative to now)", s)
		}
		return now.Add(d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not now, beginning, an RFC 3339 time or a negative duration such as -1h", s)
}

// logGroupARN is the useful part of a log group ARN.
type logGroupARN struct {
	Region, Account, Name string
}

// parseLogGroupARN parses arn:PARTITION:logs:REGION:ACCOUNT:log-group:NAME,
// with or without the ":*" suffix DescribeLogGroups puts on it.
func parseLogGroupARN(s string) (logGroupARN, error) {
	parts := strings.SplitN(s, ":", 7)
	if len(parts) != 7 || parts[0] != "arn" || parts[2] != "logs" || parts[5] != "log-group" || parts[6] == "" {
		return logGroupARN{}, fmt.Errorf("%q is not a log group ARN (arn:aws:logs:REGION:ACCOUNT:log-group:NAME)", s)
	}
	name := strings.TrimSuffix(parts[6], ":*")
	if name == "" || strings.Contains(name, ":") {
		return logGroupARN{}, fmt.Errorf("%q is not a log group ARN (arn:aws:logs:REGION:ACCOUNT:log-group:NAME)", s)
	}
	return logGroupARN{Region: parts[3], Account: parts[4], Name: name}, nil
}
