package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/trailwatch/trailwatch/engine/cwlogs"
	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/subscription"
	"github.com/trailwatch/trailwatch/internal/testservers"

	"github.com/trailwatch/trailwatch/internal/corpus"
)

// hook is a webhook receiver that fails the first attempt of the alerts
// failFirst picks, with a 503, and records every alert it accepted.
type hook struct {
	failFirst func(pair string) bool

	mu       sync.Mutex
	attempts map[string]int
	accepted []string
	failed   atomic.Int64
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var a struct {
		RuleID  string `json:"rule_id"`
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pair := a.RuleID + "/" + a.EventID
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attempts[pair]++
	if h.attempts[pair] == 1 && h.failFirst != nil && h.failFirst(pair) {
		h.failed.Add(1)
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	h.accepted = append(h.accepted, pair)
}

func (h *hook) got() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.accepted)
}

// env is a fake process environment.
func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// lambdaEnv starts moto and a webhook receiver and returns the
// environment of a function using testdata/bundle, and where its file
// notifier writes.
func lambdaEnv(t *testing.T, h *hook) (map[string]string, string) {
	t.Helper()
	m := testservers.StartMoto(t)
	t.Setenv("AWS_ENDPOINT_URL", m.Endpoint)
	client, err := dynamostate.NewClient(context.Background(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := dynamostate.CreateTable(context.Background(), client, "trailwatch-deliveries"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	alertFile := filepath.Join(t.TempDir(), "alerts.jsonl")
	// The configuration reads its secrets from the environment.
	t.Setenv("ALERT_FILE", alertFile)
	t.Setenv("WEBHOOK_URL", srv.URL+"/hook")
	return map[string]string{
		"TRAILWATCH_CONFIG":         "testdata/bundle/config.yaml",
		"TRAILWATCH_DELIVERY_TABLE": "trailwatch-deliveries",
	}, alertFile
}

// payloads cuts records into subscription events of at most n log events
// each, built as CloudWatch Logs builds them.
func payloads(t *testing.T, records []string, n int) []events.CloudwatchLogsEvent {
	t.Helper()
	var out []events.CloudwatchLogsEvent
	base := time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC)
	for i := 0; i < len(records); i += n {
		d := events.CloudwatchLogsData{
			MessageType: cwlogs.MessageTypeData, Owner: "111122223333",
			LogGroup: "aws-cloudtrail-logs-111122223333", LogStream: "111122223333_CloudTrail_us-east-1",
			SubscriptionFilters: []string{"trailwatch"},
		}
		for j, r := range records[i:min(i+n, len(records))] {
			d.LogEvents = append(d.LogEvents, events.CloudwatchLogsLogEvent{
				ID:        fmt.Sprintf("%056d", i+j),
				Timestamp: base.Add(time.Duration(i+j) * time.Second).UnixMilli(),
				Message:   r,
			})
		}
		data, err := cwlogs.Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, events.CloudwatchLogsEvent{AWSLogs: events.CloudwatchLogsRawData{Data: data}})
	}
	return out
}

// invoke runs ev as Lambda's asynchronous invocation does: the first
// attempt and, while the handler fails, up to two retries of the same
// payload. It returns the number of failed attempts and the last error.
func invoke(ctx context.Context, h *subscription.Handler, ev events.CloudwatchLogsEvent) (failures int, err error) {
	for range 3 {
		if err = h.Handle(ctx, ev); err == nil {
			return failures, nil
		}
		failures++
	}
	return failures, err
}

// readLines reads JSON Lines records from a file (blank lines skipped).
func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			out = append(out, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// filePairs returns "rule/event" for each alert the file notifier wrote.
func filePairs(t *testing.T, path string) []string {
	t.Helper()
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return nil
	}
	var out []string
	for _, l := range readLines(t, path) {
		var a struct {
			RuleID  string `json:"rule_id"`
			EventID string `json:"event_id"`
		}
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a.RuleID+"/"+a.EventID)
	}
	return out
}

func duplicates(pairs []string) []string {
	seen := map[string]int{}
	var dup []string
	for _, p := range pairs {
		if seen[p]++; seen[p] == 2 {
			dup = append(dup, p)
		}
	}
	return dup
}

// everyThird picks about a third of the alerts, the same ones every run.
func everyThird(pair string) bool {
	sum := sha256.Sum256([]byte(pair))
	return sum[0]%3 == 0
}

// TestEndToEnd runs CloudTrail records through the Lambda handler built
// from its environment, in subscription payloads, against DynamoDB (moto),
// a webhook that fails the first attempt of a third of the alerts, and a
// file notifier. Each failed invocation is retried as Lambda does. Every
// alert must reach each notifier exactly once, and replaying every batch
// afterwards (Lambda may deliver an event twice) must send nothing.
func TestEndToEnd(t *testing.T) {
	tests := []struct {
		name  string
		files []string // JSON Lines of CloudTrail records
		batch int
		// optional marks inputs outside the repository: skipped if absent.
		optional bool
	}{
		{name: "sample trail", files: []string{"../../examples/events/sample-trail.jsonl"}, batch: 7},
		{name: "real corpus", files: []string{
			filepath.Join(corpus.Dir(), "datadog_stratus-red-team_detonation-logs.jsonl"),
			filepath.Join(corpus.Dir(), "elastic_integrations-beats_cloudtrail-tests.jsonl"),
			filepath.Join(corpus.Dir(), "otrf_security-datasets_aws.jsonl"),
		}, batch: 50, optional: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var records []string
			for _, f := range tt.files {
				if _, err := os.Stat(f); err != nil && tt.optional {
					t.Skipf("corpus %s is absent (it lives outside the repository): %v", f, err)
				}
				records = append(records, readLines(t, f)...)
			}
			h := &hook{attempts: map[string]int{}, failFirst: everyThird}
			environ, alertFile := lambdaEnv(t, h)
			ctx := context.Background()
			handler, err := newHandler(ctx, env(environ), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			batches := payloads(t, records, tt.batch)
			failedInvocations := 0
			for i, ev := range batches {
				n, err := invoke(ctx, handler, ev)
				if err != nil {
					t.Fatalf("batch %d still fails after Lambda's retries: %v", i, err)
				}
				failedInvocations += n
			}
			fromFile, fromHook := filePairs(t, alertFile), h.got()
			if len(fromFile) == 0 {
				t.Fatal("no alerts at all: the test proves nothing")
			}
			if h.failed.Load() == 0 || failedInvocations == 0 {
				t.Fatalf("the webhook never failed (%d) or no invocation failed (%d): the retry path was not exercised", h.failed.Load(), failedInvocations)
			}
			if d := duplicates(fromFile); len(d) > 0 {
				t.Errorf("file notifier got %d alerts twice, e.g. %q", len(d), d[0])
			}
			if d := duplicates(fromHook); len(d) > 0 {
				t.Errorf("webhook got %d alerts twice, e.g. %q", len(d), d[0])
			}
			slices.Sort(fromFile)
			slices.Sort(fromHook)
			if !slices.Equal(fromFile, fromHook) {
				t.Errorf("webhook got %d alerts, file %d: every alert must reach both", len(fromHook), len(fromFile))
			}

			// Lambda's queue may deliver a batch again after success; a
			// fresh execution environment (new handler, empty lifecycle)
			// must send nothing either.
			fresh, err := newHandler(ctx, env(environ), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			for _, hd := range []*subscription.Handler{handler, fresh} {
				for i, ev := range batches {
					if err := hd.Handle(ctx, ev); err != nil {
						t.Fatalf("replayed batch %d: %v", i, err)
					}
				}
			}
			if got, want := len(filePairs(t, alertFile)), len(fromFile); got != want {
				t.Errorf("after replaying every batch the file holds %d alerts, want still %d", got, want)
			}
			if got, want := len(h.got()), len(fromHook); got != want {
				t.Errorf("after replaying every batch the webhook got %d alerts, want still %d", got, want)
			}
		})
	}
}

// TestHandlePayloadKinds checks the invocation results AWS's retry
// semantics call for: control messages and unknown types succeed without
// alerts; an undecodable payload fails (so it reaches the on-failure
// destination intact); stray log lines are skipped.
func TestHandlePayloadKinds(t *testing.T) {
	h := &hook{attempts: map[string]int{}}
	environ, alertFile := lambdaEnv(t, h)
	handler, err := newHandler(context.Background(), env(environ), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	encode := func(d events.CloudwatchLogsData) events.CloudwatchLogsEvent {
		data, err := cwlogs.Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		return events.CloudwatchLogsEvent{AWSLogs: events.CloudwatchLogsRawData{Data: data}}
	}
	tests := []struct {
		name    string
		ev      events.CloudwatchLogsEvent
		wantErr bool
	}{
		{"control message", encode(events.CloudwatchLogsData{
			MessageType: cwlogs.MessageTypeControl, Owner: "CloudwatchLogs",
			LogEvents: []events.CloudwatchLogsLogEvent{{Timestamp: 1714550400000, Message: "CWL CONTROL MESSAGE: Checking health of destination Lambda."}},
		}), false},
		{"stray log lines", encode(events.CloudwatchLogsData{
			MessageType: cwlogs.MessageTypeData, Owner: "111122223333", LogGroup: "g", LogStream: "s",
			LogEvents: []events.CloudwatchLogsLogEvent{{ID: "1", Timestamp: 1714550400000, Message: "not a CloudTrail record"}},
		}), false},
		{"not base64", events.CloudwatchLogsEvent{AWSLogs: events.CloudwatchLogsRawData{Data: "@@@"}}, true},
		{"empty event", events.CloudwatchLogsEvent{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := handler.Handle(context.Background(), tt.ev)
			if (err != nil) != tt.wantErr {
				t.Errorf("Handle = %v, want error %v", err, tt.wantErr)
			}
		})
	}
	if got := filePairs(t, alertFile); len(got) > 0 {
		t.Errorf("alerts sent: %q, want none", got)
	}
}

func TestNewHandlerRejectsBadEnvironment(t *testing.T) {
	t.Setenv("ALERT_FILE", filepath.Join(t.TempDir(), "alerts.jsonl"))
	t.Setenv("WEBHOOK_URL", "http://127.0.0.1:1/hook")
	bundle := "testdata/bundle/config.yaml"
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no config", map[string]string{}, "TRAILWATCH_CONFIG is not set"},
		{"missing config file", map[string]string{"TRAILWATCH_CONFIG": "testdata/nope.yaml"}, "load config"},
		{"bad lease", map[string]string{"TRAILWATCH_CONFIG": bundle, "TRAILWATCH_LEASE": "soon"}, "TRAILWATCH_LEASE must be a positive duration"},
		{"lease too short for a send", map[string]string{"TRAILWATCH_CONFIG": bundle, "TRAILWATCH_LEASE": "20s", "TRAILWATCH_SEND_TIMEOUT": "15s"}, "must exceed TRAILWATCH_SEND_TIMEOUT"},
		{"ttl shorter than lease", map[string]string{"TRAILWATCH_CONFIG": bundle, "TRAILWATCH_DELIVERY_TABLE": "t", "TRAILWATCH_DELIVERY_TTL": "30s"}, "ttl must not be shorter than the lease"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testservers.SetFakeAWSEnv(t)
			_, err := newHandler(context.Background(), env(tt.env), slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("newHandler error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestExampleBundleLoads builds a handler from the deployable example in
// examples/deploy/lambda, so the example cannot go stale.
func TestExampleBundleLoads(t *testing.T) {
	testservers.SetFakeAWSEnv(t)
	t.Setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T000/B000/XXXX")
	h, err := newHandler(context.Background(), env(map[string]string{
		"TRAILWATCH_CONFIG":         "../../examples/deploy/lambda/bundle/config.yaml",
		"TRAILWATCH_DELIVERY_TABLE": "trailwatch-deliveries",
	}), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if h.Ledger == nil {
		t.Error("the example runs without a delivery ledger")
	}
	if h.Decider.Evaluator().Rules().Len() == 0 {
		t.Error("the example loads no rules")
	}
}
