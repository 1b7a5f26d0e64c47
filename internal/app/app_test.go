package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailwatch/trailwatch/engine/source"
	"github.com/trailwatch/trailwatch/internal/app"
	"github.com/trailwatch/trailwatch/internal/config"
	"github.com/trailwatch/trailwatch/rules"
)

// memConfig is the `source.app-test-mem` block of a source made for the
// test: records given in the configuration.
type memConfig struct {
	Group   string   `yaml:"group"`
	Records []string `yaml:"records"`
	Fail    string   `yaml:"fail"` // Check's error, if set
}

func (c *memConfig) prepare() error {
	if c.Group == "" {
		c.Group = "mem"
	}
	if len(c.Records) == 0 {
		return errors.New("records: at least one is required")
	}
	return nil
}

// memSource hands its records over in one batch, then waits for the end,
// as a live source does.
type memSource struct{ cfg memConfig }

func (m *memSource) Check(context.Context) error {
	if m.cfg.Fail != "" {
		return errors.New(m.cfg.Fail)
	}
	return nil
}

func (m *memSource) Origins() []string { return []string{m.cfg.Group} }

func (m *memSource) Run(ctx context.Context, handle source.Handler) error {
	b := source.Batch{Origin: m.cfg.Group}
	for i, r := range m.cfg.Records {
		b.Records = append(b.Records, source.Record{Data: []byte(r), Place: source.Place{LogGroup: m.cfg.Group, EventID: fmt.Sprint(i)}})
	}
	if err := handle(ctx, b); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// blindSource is memSource without Origins: a source whose origins are
// not known in advance (as Kinesis).
type blindSource struct{ m *memSource }

func (b blindSource) Check(ctx context.Context) error { return b.m.Check(ctx) }

func (b blindSource) Run(ctx context.Context, h source.Handler) error { return b.m.Run(ctx, h) }

// The whole of what a new source needs to be usable by run: one line each.
func init() {
	source.Register("app-test-mem", (*memConfig).prepare, func(_ context.Context, c *memConfig, _ source.Deps) (source.Source, error) {
		return &memSource{cfg: *c}, nil
	})
	source.Register("app-test-blind", (*memConfig).prepare, func(_ context.Context, c *memConfig, _ source.Deps) (source.Source, error) {
		return blindSource{&memSource{cfg: *c}}, nil
	})
}

const testRules = `rules:
  - id: key-created
    title: Access key created
    severity: high
    when: eventName == "CreateAccessKey"
`

func record(id, name string) string {
	b, _ := json.Marshal(map[string]any{
		"eventVersion": "1.08", "eventID": id, "eventName": name, "eventTime": "2024-05-01T08:00:00Z",
		"eventSource": "iam.amazonaws.com", "awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.9",
		"userIdentity": map[string]any{"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/alice", "userName": "alice"},
	})
	return string(b)
}

type env struct {
	dir, alerts string
	cfg         *config.Config
	set         *rules.Set
}

// newEnv writes a configuration whose source is the test's registered
// type and whose notifier writes to a file.
func newEnv(t *testing.T, sourceBlock string) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{dir: dir, alerts: filepath.Join(dir, "alerts.jsonl")}
	yaml := sourceBlock + fmt.Sprintf(`state_dir: %s
notifiers:
  - name: out
    type: file
    path: %s
routes:
  - notify: [out]
`, filepath.Join(dir, "state"), e.alerts)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if e.cfg, err = config.Load(cfgPath); err != nil {
		t.Fatal(err)
	}
	if e.set, err = rules.LoadFiles([]rules.File{{Name: "r.yaml", Data: []byte(testRules)}}); err != nil {
		t.Fatal(err)
	}
	return e
}

func memSourceBlock(records ...string) string {
	var b strings.Builder
	b.WriteString("source:\n  app-test-mem:\n    group: trail\n    records:\n")
	for _, r := range records {
		q, _ := json.Marshal(r)
		fmt.Fprintf(&b, "      - %s\n", q)
	}
	return b.String()
}

// TestRegisteredSourceRunsAsRun checks that a source registered with one
// line is read by run's service like a built-in one: its records go
// through the decision function to the outbox and the notifier, and its
// origins are watched.
func TestRegisteredSourceRunsAsRun(t *testing.T) {
	e := newEnv(t, memSourceBlock(record("k1", "CreateAccessKey"), record("g1", "GetObject"), "not a record"))
	reg := prometheus.NewRegistry()
	svc, err := app.NewService(context.Background(), e.cfg, e.set, app.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if got := svc.Origins(); len(got) != 1 || got[0] != "trail" {
		t.Errorf("Origins() = %v, want [trail]", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	eventually(t, "an alert at the file notifier", func() bool { return len(alertsIn(t, e.alerts)) > 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if alerts := alertsIn(t, e.alerts); len(alerts) != 1 || alerts[0].RuleID != "key-created" || alerts[0].EventID != "k1" {
		t.Errorf("alerts = %+v, want key-created on k1 only", alerts)
	}
	if counts := counters(t, reg); counts["trailwatch_records_read_total"] != 2 || counts["trailwatch_records_skipped_total"] != 1 {
		t.Errorf("records read %v, skipped %v; want 2 and 1", counts["trailwatch_records_read_total"], counts["trailwatch_records_skipped_total"])
	}
}

// TestCheck checks that Check reports what run's start refuses, all at
// once, and nothing for a configuration run starts with.
func TestCheck(t *testing.T) {
	tests := []struct {
		name   string
		source string
		extra  string
		want   []string
	}{
		{"a good configuration", memSourceBlock(record("k1", "CreateAccessKey")), "", nil},
		{"no source", "", "", []string{"run needs a source: one of source.app-test-blind, source.app-test-mem, source.cloudwatch, source.files, source.kinesis"}},
		{"the source's own check fails", "source:\n  app-test-mem:\n    records: [x]\n    fail: no such stream\n", "", []string{"no such stream"}},
		{"quiet_after with a source whose origins are not known", "source:\n  app-test-blind:\n    records: [x]\n", "quiet_after: 1h\n",
			[]string{"quiet_after needs a source whose log groups are known in advance (source.cloudwatch), not source.app-test-blind"}},
		{"every problem at once", "source:\n  app-test-blind:\n    records: [x]\n    fail: no lease table\n", "quiet_after: 1h\n",
			[]string{"quiet_after needs a source", "no lease table"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.source+tt.extra)
			err := app.Check(context.Background(), e.cfg, app.Options{})
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				// Run starts where Check passed.
				svc, err := app.NewService(context.Background(), e.cfg, e.set, app.Options{})
				if err != nil {
					t.Fatalf("NewService after a passing Check: %v", err)
				}
				svc.Close()
				return
			}
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Check = %v, want it to contain %q", err, w)
				}
			}
			if _, serr := app.NewService(context.Background(), e.cfg, e.set, app.Options{}); serr == nil {
				t.Error("NewService started where Check failed")
			}
		})
	}
}
