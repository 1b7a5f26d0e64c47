package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"

	"github.com/trailwatch/trailwatch/internal/testservers"
	"github.com/trailwatch/trailwatch/notifiers"
)

// syncBuffer is a bytes.Buffer safe for the service's log writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runEnv is one trailwatch configuration against moto: a log group with
// one stream, a rules file, a file notifier and a metrics address.
type runEnv struct {
	t        *testing.T
	dir      string
	cfgPath  string
	rules    string
	alerts   string
	listen   string
	client   *cloudwatchlogs.Client
	group    string
	stream   string
	seq      int
	lastTime time.Time
	// env is added to the environment of the process startRunProcess
	// starts (e.g. an endpoint of its own).
	env []string
}

const runRootLoginRule = `rules:
  - id: e2e-root-login
    title: Root console sign-in
    severity: critical
    when: eventName == "ConsoleLogin" && userIdentity.type == "Root"
    summary: 'Root sign-in from {{ sourceIPAddress }}'
`

const runStopLoggingRule = `  - id: e2e-stop-logging
    title: CloudTrail logging stopped
    severity: high
    when: eventName == "StopLogging"
`

// newRunEnv starts moto and writes the configuration, with extra
// top-level settings appended.
func newRunEnv(t *testing.T, extra string) *runEnv {
	t.Helper()
	moto := testservers.StartMoto(t)
	t.Setenv("AWS_ENDPOINT_URL", moto.Endpoint)
	dir := t.TempDir()
	e := &runEnv{
		t: t, dir: dir,
		cfgPath: filepath.Join(dir, "config.yaml"),
		rules:   filepath.Join(dir, "rules.yaml"),
		alerts:  filepath.Join(dir, "alerts.jsonl"),
		listen:  fmt.Sprintf("127.0.0.1:%d", testservers.FreePort(t)),
		group:   "aws-cloudtrail-logs-111122223333",
		stream:  "111122223333_CloudTrail_us-east-1",
	}
	awsCfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion("us-east-1"))
	if err != nil {
		t.Fatal(err)
	}
	e.client = cloudwatchlogs.NewFromConfig(awsCfg, func(o *cloudwatchlogs.Options) { o.BaseEndpoint = aws.String(moto.Endpoint) })
	ctx := context.Background()
	if _, err := e.client.CreateLogGroup(ctx, &cloudwatchlogs.CreateLogGroupInput{LogGroupName: &e.group}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.CreateLogStream(ctx, &cloudwatchlogs.CreateLogStreamInput{LogGroupName: &e.group, LogStreamName: &e.stream}); err != nil {
		t.Fatal(err)
	}
	e.writeFile(e.rules, runRootLoginRule)
	e.writeFile(e.cfgPath, fmt.Sprintf(`source:
  cloudwatch:
    log_groups: [%s]
    region: us-east-1
    poll_interval: 200ms
    lookback: 1m
    start: -5m
state_dir: %s
listen: %s
rules: [rules.yaml]
notifiers:
  - name: out
    type: file
    path: %s
%s`, e.group, filepath.Join(dir, "state"), e.listen, e.alerts, extra))
	return e
}

func (e *runEnv) writeFile(path, data string) {
	e.t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// record is one log event to write: a CloudTrail record, or any text.
type record struct {
	id, msg string
}

// rootLogin is a successful root console sign-in.
func rootLogin(id string) record {
	return record{id, `{"eventVersion":"1.08","userIdentity":{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333"},` +
		`"eventTime":"%s","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.10",` +
		`"userAgent":"Mozilla/5.0","requestParameters":null,"responseElements":{"ConsoleLogin":"Success"},"additionalEventData":{"MFAUsed":"No"},` +
		`"eventID":"` + id + `","eventType":"AwsConsoleSignIn","recipientAccountId":"111122223333"}`}
}

// apiCall is an ordinary API call by an IAM user: noise for the rules.
func apiCall(id, eventName string) record {
	return record{id, `{"eventVersion":"1.09","userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333","userName":"alice"},` +
		`"eventTime":"%s","eventSource":"ec2.amazonaws.com","eventName":"` + eventName + `","awsRegion":"us-east-1","sourceIPAddress":"192.0.2.9",` +
		`"userAgent":"aws-cli/2.15","requestParameters":{},"responseElements":null,"eventID":"` + id + `","readOnly":true,"eventType":"AwsApiCall","recipientAccountId":"111122223333"}`}
}

// put writes records to the log group, stamped a few seconds ago, in
// order.
func (e *runEnv) put(recs ...record) {
	e.t.Helper()
	ts := time.Now().Add(-5 * time.Second).Truncate(time.Millisecond)
	if !ts.After(e.lastTime) {
		ts = e.lastTime.Add(time.Millisecond)
	}
	in := &cloudwatchlogs.PutLogEventsInput{LogGroupName: &e.group, LogStreamName: &e.stream}
	for _, r := range recs {
		msg := r.msg
		if strings.Contains(msg, "%s") {
			msg = fmt.Sprintf(msg, ts.UTC().Format(time.RFC3339))
		}
		in.LogEvents = append(in.LogEvents, types.InputLogEvent{Timestamp: aws.Int64(ts.UnixMilli()), Message: aws.String(msg)})
		e.lastTime = ts
		ts = ts.Add(time.Millisecond)
	}
	if _, err := e.client.PutLogEvents(context.Background(), in); err != nil {
		e.t.Fatalf("put log events: %v", err)
	}
}

// running is one in-process `trailwatch run`.
type running struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when Main returned, with code set
	code   int
	stderr *syncBuffer
	reload chan struct{}
}

func (e *runEnv) start() *running {
	e.t.Helper()
	return e.startArgs()
}

// startArgs is start with more arguments for `run`.
func (e *runEnv) startArgs(args ...string) *running {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan struct{}), stderr: &syncBuffer{}, reload: make(chan struct{})}
	ctx = WithReload(ctx, func() <-chan struct{} { return r.reload })
	go func() {
		defer close(r.done)
		r.code = Main(ctx, append([]string{"run", "--config", e.cfgPath, "--log-level", "debug"}, args...),
			Stdio{In: strings.NewReader(""), Out: io.Discard, Err: r.stderr})
	}()
	e.t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(15 * time.Second):
		}
	})
	// Ready once the first read of the source succeeded.
	e.eventually(r, "the service to be ready", func() bool { return e.get("/readyz") == http.StatusOK })
	return r
}

// stop cancels the run (what SIGTERM does) and returns its exit code.
func (r *running) stop(t *testing.T) int {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.code
	case <-time.After(10 * time.Second):
		t.Fatalf("run did not stop within 10s of cancellation; log:\n%s", r.stderr)
		return -1
	}
}

func (e *runEnv) get(path string) int {
	resp, err := http.Get("http://" + e.listen + path)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// eventually polls cond until it holds, failing the test (with the run's
// log) after a deadline.
func (e *runEnv) eventually(r *running, what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		select {
		case <-r.done:
			e.t.Fatalf("waiting for %s: run exited with %d; log:\n%s", what, r.code, r.stderr)
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s; log:\n%s", what, r.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readAlerts returns the alerts in the alert file.
func (e *runEnv) readAlerts() []notifiers.Alert {
	e.t.Helper()
	f, err := os.Open(e.alerts)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []notifiers.Alert
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var a notifiers.Alert
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			e.t.Fatalf("alert file line %q: %v", sc.Text(), err)
		}
		out = append(out, a)
	}
	return out
}

func alertEventIDs(alerts []notifiers.Alert) []string {
	var ids []string
	for _, a := range alerts {
		ids = append(ids, a.RuleID+"/"+a.EventID)
	}
	return ids
}

// scrape returns the metrics as name{labels} -> value.
func (e *runEnv) scrape() map[string]float64 {
	e.t.Helper()
	resp, err := http.Get("http://" + e.listen + "/metrics")
	if err != nil {
		e.t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("scrape: status %d", resp.StatusCode)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			e.t.Fatalf("scrape: line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

// TestRunEndToEnd runs `trailwatch run` against moto: alerts reach the
// alert file, metrics and health answer, cancellation exits 0, and a
// restart alerts on what was written while it was down, and on nothing
// twice.
func TestRunEndToEnd(t *testing.T) {
	e := newRunEnv(t, "quiet_after: 30m\n")
	r := e.start()

	t.Run("health endpoints answer", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz"} {
			if got := e.get(path); got != http.StatusOK {
				t.Errorf("GET %s = %d, want 200", path, got)
			}
		}
	})

	before := e.scrape()
	e.put(apiCall("noise-1", "DescribeInstances"), rootLogin("root-1"), record{"", "not a CloudTrail record"},
		apiCall("noise-2", "DescribeVolumes"), rootLogin("root-2"), apiCall("noise-3", "ListBuckets"))
	e.eventually(r, "two alerts in the alert file", func() bool { return len(e.readAlerts()) >= 2 })

	t.Run("alerts reach the file notifier", func(t *testing.T) {
		got := strings.Join(alertEventIDs(e.readAlerts()), ",")
		if want := "e2e-root-login/root-1,e2e-root-login/root-2"; got != want {
			t.Errorf("alerts = %s, want %s", got, want)
		}
		// Issue 15 item 8: run logs each alert it hands to the outbox, at info.
		for _, id := range []string{"root-1", "root-2"} {
			re := regexp.MustCompile(`level=INFO msg="alert queued for delivery" .*rule=e2e-root-login severity=critical event_id=` + id + ` .*notifiers=\[out\]`)
			if !re.MatchString(r.stderr.String()) {
				t.Errorf("run's log does not say the alert of %s was queued:\n%s", id, r.stderr)
			}
		}
	})

	t.Run("metrics move as records are written", func(t *testing.T) {
		var after map[string]float64
		// The alert file is written before the outbox records the
		// delivery: wait for the counter, not just the file.
		e.eventually(r, "the sent counter", func() bool {
			after = e.scrape()
			return after[`trailwatch_alerts_total{notifier="out",outcome="sent"}`] == 2
		})
		tests := []struct {
			name        string
			metric      string
			wantAtLeast float64
			wantExactly float64 // -1: only a lower bound
		}{
			{"records read", "trailwatch_records_read_total", 5, 5},
			{"records skipped", "trailwatch_records_skipped_total", 1, 1},
			{"rule matches", `trailwatch_rule_matches_total{rule="e2e-root-login"}`, 2, 2},
			{"rule errors", `trailwatch_rule_errors_total{rule="e2e-root-login"}`, 0, 0},
			{"alerts raised", `trailwatch_alerts_raised_total{rule="e2e-root-login",severity="critical"}`, 2, 2},
			{"outbox depth", `trailwatch_outbox_depth{notifier="out"}`, 0, 0},
			{"FilterLogEvents calls", `trailwatch_filterlogevents_calls_total{log_group="` + e.group + `"}`, 2, -1},
			{"throttles", `trailwatch_filterlogevents_throttles_total{log_group="` + e.group + `"}`, 0, 0},
			{"delivery delay observed", `trailwatch_alert_delivery_delay_seconds_count{notifier="out"}`, 2, 2},
			{"event lag set", "trailwatch_event_lag_seconds", 1, -1},
			{"last successful read", `trailwatch_source_last_poll_success_timestamp_seconds{log_group="` + e.group + `"}`, 1, -1},
			{"reload time", "trailwatch_reload_success_timestamp_seconds", 1, -1},
			{"go collector", "go_goroutines", 1, -1},
			{"log group not quiet", `trailwatch_log_group_quiet{log_group="` + e.group + `"}`, 0, 0},
			{"log group records time", `trailwatch_log_group_last_records_timestamp_seconds{log_group="` + e.group + `"}`, 1, -1},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, ok := after[tt.metric]
				// A labelled counter appears once it moved.
				if !ok && tt.wantExactly != 0 {
					t.Fatalf("%s is not exported", tt.metric)
				}
				if tt.wantExactly >= 0 && got != tt.wantExactly {
					t.Errorf("%s = %v, want %v", tt.metric, got, tt.wantExactly)
				}
				if got < tt.wantAtLeast {
					t.Errorf("%s = %v, want at least %v", tt.metric, got, tt.wantAtLeast)
				}
			})
		}
		if b := before["trailwatch_records_read_total"]; b != 0 {
			t.Errorf("trailwatch_records_read_total before writing = %v, want 0", b)
		}
	})

	if code := r.stop(t); code != 0 {
		t.Fatalf("exit code after cancellation = %d, want 0; log:\n%s", code, r.stderr)
	}

	// Written while trailwatch is down.
	e.put(apiCall("noise-4", "DescribeInstances"), rootLogin("root-3"), apiCall("noise-5", "GetObject"))
	r = e.start()
	e.eventually(r, "the third alert, and the restart's re-read of the lookback", func() bool {
		m := e.scrape()
		return m[`trailwatch_alerts_total{notifier="out",outcome="sent"}`] == 1 &&
			m[`trailwatch_source_rereads_total{log_group="`+e.group+`"}`] >= 6
	})

	t.Run("restart alerts on the new records only, none twice", func(t *testing.T) {
		got := strings.Join(alertEventIDs(e.readAlerts()), ",")
		if want := "e2e-root-login/root-1,e2e-root-login/root-2,e2e-root-login/root-3"; got != want {
			t.Errorf("alerts = %s, want %s", got, want)
		}
		if got := e.scrape()["trailwatch_records_read_total"]; got != 3 {
			t.Errorf("records read after restart = %v, want 3 (only those written while down)", got)
		}
	})
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit code after cancellation = %d, want 0; log:\n%s", code, r.stderr)
	}
}

// TestRunReload reloads a good rule set and refuses a broken one while the
// service keeps alerting.
func TestRunReload(t *testing.T) {
	e := newRunEnv(t, "")
	r := e.start()
	reload := func(wantSuccess bool) {
		t.Helper()
		m := e.scrape()
		okBefore, failBefore := m["trailwatch_reload_success_timestamp_seconds"], m["trailwatch_reload_failures_total"]
		r.reload <- struct{}{}
		e.eventually(r, "the reload", func() bool {
			m := e.scrape()
			if wantSuccess {
				return m["trailwatch_reload_success_timestamp_seconds"] > okBefore
			}
			return m["trailwatch_reload_failures_total"] > failBefore
		})
	}
	waitAlerts := func(want ...string) {
		t.Helper()
		e.eventually(r, "alerts "+strings.Join(want, ","), func() bool { return len(e.readAlerts()) >= len(want) })
		if got := strings.Join(alertEventIDs(e.readAlerts()), ","); got != strings.Join(want, ",") {
			t.Fatalf("alerts = %s, want %s", got, strings.Join(want, ","))
		}
	}

	e.put(rootLogin("root-1"), apiCall("noise-1", "StopLogging"))
	waitAlerts("e2e-root-login/root-1")

	t.Run("a good rule set is swapped in", func(t *testing.T) {
		e.writeFile(e.rules, runRootLoginRule+runStopLoggingRule)
		reload(true)
		e.put(apiCall("stop-1", "StopLogging"))
		waitAlerts("e2e-root-login/root-1", "e2e-stop-logging/stop-1")
	})

	t.Run("a broken rule set is refused and the running one keeps alerting", func(t *testing.T) {
		e.writeFile(e.rules, `rules:
  - id: e2e-root-login
    title: Root console sign-in
    severity: critical
    when: eventName == "ConsoleLogin" &&
  - id: e2e-new
    title: no severity
    when: eventName == "X"
`)
		reload(false)
		logs := r.stderr.String()
		for _, want := range []string{"rules.yaml:5:", "rules.yaml:6:", "reload refused"} {
			if !strings.Contains(logs, want) {
				t.Errorf("log lacks %q:\n%s", want, logs)
			}
		}
		e.put(rootLogin("root-2"), apiCall("stop-2", "StopLogging"))
		waitAlerts("e2e-root-login/root-1", "e2e-stop-logging/stop-1", "e2e-root-login/root-2", "e2e-stop-logging/stop-2")
	})

	t.Run("file notifier reopens its file on reload", func(t *testing.T) {
		rotated := e.alerts + ".1"
		if err := os.Rename(e.alerts, rotated); err != nil {
			t.Fatal(err)
		}
		e.writeFile(e.rules, runRootLoginRule)
		reload(true)
		e.put(rootLogin("root-3"), apiCall("stop-3", "StopLogging"))
		waitAlerts("e2e-root-login/root-3")
	})

	cfg, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("routes are swapped", func(t *testing.T) {
		e.writeFile(e.rules, runRootLoginRule+runStopLoggingRule)
		e.writeFile(e.cfgPath, string(cfg)+"routes:\n  - severity: [critical]\n    notify: [out]\n")
		reload(true)
		e.put(apiCall("stop-4", "StopLogging"), rootLogin("root-4"))
		waitAlerts("e2e-root-login/root-3", "e2e-root-login/root-4")
		if !strings.Contains(r.stderr.String(), `msg="alert matches no route`) {
			t.Errorf("the unrouted alert was not logged:\n%s", r.stderr)
		}
	})

	t.Run("a new notifier is refused until restart", func(t *testing.T) {
		e.writeFile(e.cfgPath, string(cfg)+"  - name: more\n    type: file\n    path: "+filepath.Join(e.dir, "more.jsonl")+"\n")
		reload(false)
		if !strings.Contains(r.stderr.String(), "restart trailwatch to add notifiers") {
			t.Errorf("the refusal does not say why:\n%s", r.stderr)
		}
		e.put(rootLogin("root-5"))
		waitAlerts("e2e-root-login/root-3", "e2e-root-login/root-4", "e2e-root-login/root-5")
	})

	if code := r.stop(t); code != 0 {
		t.Fatalf("exit code = %d, want 0; log:\n%s", code, r.stderr)
	}
}

// TestRunDeadMansSwitch runs the service with a quiet_after short enough
// to watch: the quiet alert, then the resumed one, reach the alert file.
// (engine's TestServiceDeadMansSwitch covers the timing with a fake clock.)
func TestRunDeadMansSwitch(t *testing.T) {
	e := newRunEnv(t, "quiet_after: 1s\n")
	r := e.start()
	e.eventually(r, "the quiet alert", func() bool { return len(e.readAlerts()) >= 1 })
	e.put(apiCall("noise-1", "DescribeInstances"))
	e.eventually(r, "the resumed alert", func() bool { return len(e.readAlerts()) >= 2 })
	got := e.readAlerts()
	for i, want := range []string{"trailwatch-log-group-quiet", "trailwatch-log-group-resumed"} {
		if got[i].RuleID != want || !strings.Contains(got[i].Summary, e.group) || got[i].Severity != "high" {
			t.Errorf("alert %d = %s %s %q, want %s, high, naming the log group", i, got[i].RuleID, got[i].Severity, got[i].Summary, want)
		}
	}
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit code = %d, want 0; log:\n%s", code, r.stderr)
	}
}
