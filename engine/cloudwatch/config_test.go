package cloudwatch

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string // substrings; none means valid
	}{
		{name: "defaults", cfg: Config{LogGroups: []string{"CloudTrail/logs"}}},
		{name: "arn", cfg: Config{LogGroups: []string{"arn:aws:logs:us-east-1:123456789012:log-group:CloudTrail/logs:*"}}},
		{name: "every start form", cfg: Config{LogGroups: []string{"g"}, Start: "2026-01-02T03:04:05Z"}},
		{name: "relative start", cfg: Config{LogGroups: []string{"g"}, Start: "-90m"}},
		{name: "no groups", cfg: Config{}, wantErr: []string{"log_groups: at least one"}},
		{name: "everything wrong at once",
			cfg: Config{LogGroups: []string{"", "g", "g", "arn:aws:s3:::bucket"}, PollInterval: -time.Second, Lookback: -1, Start: "yesterday"},
			wantErr: []string{"log_groups[0]: empty", `log_groups[2]: "g" is listed twice`, "log_groups[3]: \"arn:aws:s3:::bucket\" is not a log group ARN",
				"poll_interval: must be positive", "lookback: must be positive", `start: "yesterday" is not now`}},
		{name: "positive duration start", cfg: Config{LogGroups: []string{"g"}, Start: "1h"}, wantErr: []string{`start: "1h" is not now`}},
		{name: "negative sign only", cfg: Config{LogGroups: []string{"g"}, Start: "-0s"}, wantErr: []string{"must be negative"}},
		{name: "lookback shorter than poll", cfg: Config{LogGroups: []string{"g"}, PollInterval: time.Minute, Lookback: time.Second}, wantErr: []string{"lookback: 1s is shorter than poll_interval 1m0s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.SetDefaults()
			err := tt.cfg.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want errors %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestSetDefaults(t *testing.T) {
	var c Config
	c.SetDefaults()
	if got, want := c, (Config{PollInterval: 5 * time.Second, Lookback: 15 * time.Minute, Start: "now"}); got.PollInterval != want.PollInterval || got.Lookback != want.Lookback || got.Start != want.Start {
		t.Errorf("SetDefaults = %+v, want %+v", got, want)
	}
}

func TestParseStart(t *testing.T) {
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
	}{
		{"now", now},
		{"beginning", time.Time{}},
		{"-1h", now.Add(-time.Hour)},
		{"-36h30m", now.Add(-36*time.Hour - 30*time.Minute)},
		{"2026-01-02T03:04:05+02:00", time.Date(2026, 1, 2, 1, 4, 5, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseStart(tt.in, now)
			if err != nil {
				t.Fatalf("parseStart: %v", err)
			}
			if !got.Equal(tt.want) {
				t.Errorf("parseStart(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
