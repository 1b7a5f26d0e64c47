package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/trailwatch/trailwatch/engine/subscription"
	"github.com/trailwatch/trailwatch/internal/s3bundle"
	"github.com/trailwatch/trailwatch/internal/s3test"
)

// syncBuffer is a log destination that handlers may write to from several
// goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// downloads returns the directories that configurations were copied to
// under tmp.
func downloads(t *testing.T, tmp string) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(tmp, "trailwatch-config-*"))
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// TestS3Config builds handlers whose TRAILWATCH_CONFIG is in S3 (moto),
// as `aws s3 sync` of a bundle directory leaves it.
func TestS3Config(t *testing.T) {
	h := &hook{attempts: map[string]int{}}
	environ, s3AlertFile := lambdaEnv(t, h) // moto behind AWS_ENDPOINT_URL
	ctx := context.Background()
	client, err := s3bundle.NewClient(ctx, s3bundle.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("trailwatch-config")}); err != nil {
		t.Fatal(err)
	}
	s3test.UploadTree(t, client, "trailwatch-config", "lambda/", "testdata/bundle")
	s3test.UploadTree(t, client, "trailwatch-config", "trailwatch/", "../../examples/deploy/lambda/bundle")

	t.Run("evaluates and notifies like the bundled configuration", func(t *testing.T) {
		tmp := t.TempDir()
		t.Setenv("TMPDIR", tmp)
		discard := slog.New(slog.DiscardHandler)

		// The configuration reads ALERT_FILE when it loads: each handler
		// gets its own file.
		bundledFile := filepath.Join(t.TempDir(), "bundled.jsonl")
		t.Setenv("ALERT_FILE", bundledFile)
		bundled, err := newHandler(ctx, env(map[string]string{"TRAILWATCH_CONFIG": "testdata/bundle/config.yaml"}), discard)
		if err != nil {
			t.Fatal(err)
		}
		if got := downloads(t, tmp); len(got) != 0 {
			t.Fatalf("a bundled configuration was copied to %q", got)
		}

		t.Setenv("ALERT_FILE", s3AlertFile)
		environ["TRAILWATCH_CONFIG"] = "s3://trailwatch-config/lambda/config.yaml"
		var logs syncBuffer
		fromS3, err := newHandler(ctx, env(environ), slog.New(slog.NewJSONHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fromS3.Decider.Evaluator().Rules().Len(), bundled.Decider.Evaluator().Rules().Len(); got != want {
			t.Errorf("the S3 configuration loads %d rules, the bundled one %d", got, want)
		}
		if fromS3.Decider.Evaluator().Rules().Rule("local-console-login") == nil {
			t.Error("the rule file beside the configuration in S3 was not loaded")
		}

		batches := payloads(t, readLines(t, "../../examples/events/sample-trail.jsonl"), 7)
		for _, hd := range []*subscription.Handler{bundled, fromS3} {
			for i, ev := range batches {
				if err := hd.Handle(ctx, ev); err != nil {
					t.Fatalf("batch %d: %v", i, err)
				}
			}
		}
		want, got := filePairs(t, bundledFile), filePairs(t, s3AlertFile)
		if len(want) == 0 {
			t.Fatal("the bundled configuration raised no alerts: the test proves nothing")
		}
		if !slices.ContainsFunc(got, func(p string) bool { return strings.HasPrefix(p, "local-console-login/") }) {
			t.Errorf("no alert from the rule file in S3 (local-console-login) among %q", got)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("alerts from the S3 configuration:\n%q\nwant the bundled configuration's:\n%q", got, want)
		}
		hooked, both := h.got(), append(slices.Clone(want), got...)
		slices.Sort(hooked)
		slices.Sort(both)
		if !slices.Equal(hooked, both) {
			t.Errorf("the webhook got %d alerts, want %d: each configuration's alerts once", len(hooked), len(both))
		}

		dirs := downloads(t, tmp)
		if len(dirs) != 1 {
			t.Fatalf("configuration copies under TMPDIR: %q, want one", dirs)
		}
		if st, err := os.Stat(dirs[0]); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("the copy's directory: %v, %v; want mode 0700", st.Mode(), err)
		}
		for _, f := range []string{"config.yaml", "rules/local.yaml"} {
			if _, err := os.Stat(filepath.Join(dirs[0], f)); err != nil {
				t.Errorf("the copy lacks %s: %v", f, err)
			}
		}
		// Every object loaded is logged with its ETag, at info.
		logged := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var m struct{ Level, Key, ETag string }
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("log line %q: %v", l, err)
			}
			if m.Key != "" && m.Level == "INFO" {
				logged[m.Key] = m.ETag
			}
		}
		for _, k := range []string{"lambda/config.yaml", "lambda/rules/local.yaml"} {
			if logged[k] == "" {
				t.Errorf("%s is not logged with its ETag at info; logged: %v", k, logged)
			}
		}
	})

	t.Run("the deployable example loads from S3", func(t *testing.T) {
		t.Setenv("TMPDIR", t.TempDir())
		t.Setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T000/B000/XXXX")
		discard := slog.New(slog.DiscardHandler)
		bundled, err := newHandler(ctx, env(map[string]string{"TRAILWATCH_CONFIG": "../../examples/deploy/lambda/bundle/config.yaml"}), discard)
		if err != nil {
			t.Fatal(err)
		}
		// The template's default ConfigPrefix.
		fromS3, err := newHandler(ctx, env(map[string]string{"TRAILWATCH_CONFIG": "s3://trailwatch-config/trailwatch/config.yaml"}), discard)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fromS3.Decider.Evaluator().Rules().Len(), bundled.Decider.Evaluator().Rules().Len(); got != want {
			t.Errorf("the example loads %d rules from S3, %d bundled", got, want)
		}
		if fromS3.Decider.Evaluator().Rules().Rule("team-break-glass-role-assumed") == nil {
			t.Error("the example's team rule was not loaded from S3")
		}
	})

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name string
			env  map[string]string
			want string
		}{
			{"missing object", map[string]string{"TRAILWATCH_CONFIG": "s3://trailwatch-config/lambda/nope.yaml"},
				"TRAILWATCH_CONFIG s3://trailwatch-config/lambda/nope.yaml: no such object"},
			{"missing bucket", map[string]string{"TRAILWATCH_CONFIG": "s3://no-such-bucket/lambda/config.yaml"},
				"TRAILWATCH_CONFIG s3://no-such-bucket/lambda/config.yaml: no such bucket"},
			{"a folder, not a file", map[string]string{"TRAILWATCH_CONFIG": "s3://trailwatch-config/lambda/"},
				`TRAILWATCH_CONFIG "s3://trailwatch-config/lambda/" is not an s3://bucket/key URI`},
			{"bad path style", map[string]string{"TRAILWATCH_CONFIG": "s3://trailwatch-config/lambda/config.yaml", "TRAILWATCH_S3_PATH_STYLE": "maybe"},
				`TRAILWATCH_S3_PATH_STYLE must be true or false, not "maybe"`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tmp := t.TempDir()
				t.Setenv("TMPDIR", tmp)
				_, err := newHandler(ctx, env(tt.env), slog.New(slog.DiscardHandler))
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("newHandler error = %v, want one containing %q", err, tt.want)
				}
				if got := downloads(t, tmp); len(got) != 0 {
					t.Errorf("a failed start left %q behind", got)
				}
			})
		}
	})
}
