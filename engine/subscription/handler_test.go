package subscription_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/trailwatch/trailwatch/engine/cwlogs"
	"github.com/trailwatch/trailwatch/engine/decide"
	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/engine/subscription"
	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// record returns a CloudTrail record as CloudTrail writes it to
// CloudWatch Logs (one JSON object per log event).
func record(id, name, user string, at time.Time) string {
	r := map[string]any{
		"eventVersion": "1.08",
		"userIdentity": map[string]any{
			"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/" + user,
			"accountId": "111122223333", "userName": user,
		},
		"eventTime":          at.UTC().Format(time.RFC3339),
		"eventSource":        "signin.amazonaws.com",
		"eventName":          name,
		"awsRegion":          "us-east-1",
		"sourceIPAddress":    "203.0.113.7",
		"userAgent":          "Mozilla/5.0",
		"requestID":          "req-" + id,
		"eventID":            id,
		"eventType":          "AwsApiCall",
		"recipientAccountId": "111122223333",
	}
	b, _ := json.Marshal(r)
	return string(b)
}

var t0 = time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC)

// payload builds a subscription event the way CloudWatch Logs does.
func payload(t *testing.T, messageType string, messages ...string) events.CloudwatchLogsEvent {
	t.Helper()
	d := events.CloudwatchLogsData{
		MessageType: messageType, Owner: "111122223333",
		LogGroup: "aws-cloudtrail-logs", LogStream: "111122223333_CloudTrail_us-east-1",
		SubscriptionFilters: []string{"trailwatch"},
		LogEvents:           []events.CloudwatchLogsLogEvent{},
	}
	for i, m := range messages {
		d.LogEvents = append(d.LogEvents, events.CloudwatchLogsLogEvent{
			ID: fmt.Sprintf("3718%052d", i), Timestamp: t0.Add(time.Duration(i) * time.Second).UnixMilli(), Message: m,
		})
	}
	data, err := cwlogs.Encode(d)
	if err != nil {
		t.Fatal(err)
	}
	return events.CloudwatchLogsEvent{AWSLogs: events.CloudwatchLogsRawData{Data: data}}
}

// recorder is a notifier that remembers what it sent and fails when told.
type recorder struct {
	mu   sync.Mutex
	sent []string // "rule/event"
	fail func(a notifiers.Alert) error
}

func (r *recorder) Notify(_ context.Context, a notifiers.Alert) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		if err := r.fail(a); err != nil {
			return err
		}
	}
	r.sent = append(r.sent, a.RuleID+"/"+a.EventID)
	return nil
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(slices.Values(r.sent))
}

// memLedger is an in-memory Ledger with the store's semantics (no
// leases: a claim is held until marked or released).
type memLedger struct {
	mu    sync.Mutex
	state map[string]dynamostate.Status
}

func newLedger() *memLedger { return &memLedger{state: map[string]dynamostate.Status{}} }

func (l *memLedger) Claim(_ context.Context, key, notifier, _ string) (dynamostate.Claim, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := dynamostate.Claim{Key: key, Notifier: notifier}
	id := notifier + "#" + key
	switch st, ok := l.state[id]; {
	case !ok:
		l.state[id] = dynamostate.Claimed
		c.Status = dynamostate.Claimed
	case st == dynamostate.Claimed:
		c.Status = dynamostate.Busy
	default:
		c.Status = dynamostate.AlreadyDelivered
	}
	return c, nil
}

func (l *memLedger) Delivered(_ context.Context, c dynamostate.Claim) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.state[c.Notifier+"#"+c.Key] = dynamostate.AlreadyDelivered
	return nil
}

func (l *memLedger) Release(_ context.Context, c dynamostate.Claim) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.state, c.Notifier+"#"+c.Key)
	return nil
}

// held lists the deliveries still claimed.
func (l *memLedger) held() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for k, st := range l.state {
		if st == dynamostate.Claimed {
			out = append(out, k)
		}
	}
	return out
}

type fixture struct {
	h      *subscription.Handler
	slack  *recorder
	email  *recorder
	ledger *memLedger
}

func newFixture(t *testing.T, withLifecycle bool) *fixture {
	t.Helper()
	set, err := rules.Load("testdata/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{slack: &recorder{}, email: &recorder{}, ledger: newLedger()}
	var opts decide.Options
	if withLifecycle {
		lc, err := lifecycle.Open(lifecycle.Config{}, lifecycle.Options{})
		if err != nil {
			t.Fatal(err)
		}
		opts.Lifecycle = lc
	}
	f.h = &subscription.Handler{
		Decider: decide.New(decide.NewEvaluator(set, decide.EvaluatorOptions{DedupWindow: -1}),
			func(*notifiers.Alert, *rules.Rule) []string { return []string{"slack", "email"} }, opts),
		Notifiers: map[string]notifiers.Notifier{"slack": f.slack, "email": f.email},
		Ledger:    f.ledger,
	}
	return f
}

func TestProcess(t *testing.T) {
	login := record("e-1", "ConsoleLogin", "alice", t0)
	keyPair := record("e-2", "DeleteKeyPair", "bob", t0.Add(time.Second))
	quiet := record("e-3", "DescribeInstances", "bob", t0.Add(2*time.Second))
	both := []string{"test-console-login/e-1", "test-key-pair-deleted/e-2"}

	tests := []struct {
		name      string
		lifecycle bool
		msgType   string
		messages  []string
		failSlack func(a notifiers.Alert) error
		setup     func(f *fixture)
		want      subscription.Result
		wantErr   string
		wantSlack []string
		wantEmail []string
	}{
		{
			name: "every match goes to every routed notifier", msgType: cwlogs.MessageTypeData,
			messages:  []string{login, keyPair, quiet},
			want:      subscription.Result{MessageType: "DATA_MESSAGE", LogEvents: 3, Records: 3, Deliveries: 4, Sent: 4},
			wantSlack: both, wantEmail: both,
		},
		{
			name: "a control message is ignored", msgType: cwlogs.MessageTypeControl,
			messages: []string{"CWL CONTROL MESSAGE: Checking health of destination Lambda."},
			want:     subscription.Result{MessageType: "CONTROL_MESSAGE", LogEvents: 1},
		},
		{
			name: "an unknown message type is ignored", msgType: "SOMETHING_NEW",
			messages: []string{login},
			want:     subscription.Result{MessageType: "SOMETHING_NEW", LogEvents: 1},
		},
		{
			name: "log events that are not CloudTrail records are skipped and counted", msgType: cwlogs.MessageTypeData,
			messages:  []string{"START RequestId: 1234", login, `{"not":"cloudtrail"`},
			want:      subscription.Result{MessageType: "DATA_MESSAGE", LogEvents: 3, Records: 1, Skipped: 2, Deliveries: 2, Sent: 2},
			wantSlack: both[:1], wantEmail: both[:1],
		},
		{
			name: "a record delivered twice in one batch is sent once", msgType: cwlogs.MessageTypeData,
			messages:  []string{login, login},
			want:      subscription.Result{MessageType: "DATA_MESSAGE", LogEvents: 2, Records: 2, Deliveries: 2, Sent: 2},
			wantSlack: both[:1], wantEmail: both[:1],
		},
		{
			name: "a failed notification fails the invocation and releases its claim", msgType: cwlogs.MessageTypeData,
			messages: []string{login, keyPair},
			failSlack: func(a notifiers.Alert) error {
				if a.EventID == "e-2" {
					return errors.New("slack: post message: status 503")
				}
				return nil
			},
			want:      subscription.Result{MessageType: "DATA_MESSAGE", LogEvents: 2, Records: 2, Deliveries: 4, Sent: 3, Failed: 1},
			wantErr:   `deliver alerts: 1 of 4 failed: notify "slack": rule "test-key-pair-deleted" event "e-2": slack: post message: status 503`,
			wantSlack: both[:1], wantEmail: both,
		},
		{
			name: "a delivery another process holds fails the invocation", msgType: cwlogs.MessageTypeData,
			messages: []string{login},
			setup: func(f *fixture) {
				// Another process claimed e-1's email delivery.
				if _, err := f.ledger.Claim(context.Background(), engineKey("test-console-login", login), "email", ""); err != nil {
					panic(err)
				}
			},
			want:      subscription.Result{MessageType: "DATA_MESSAGE", LogEvents: 1, Records: 1, Deliveries: 2, Sent: 1, Failed: 1},
			wantErr:   "another process holds the delivery",
			wantSlack: both[:1],
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.lifecycle)
			f.slack.fail = tt.failSlack
			if tt.setup != nil {
				tt.setup(f)
			}
			got, err := f.h.Process(context.Background(), payload(t, tt.msgType, tt.messages...))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Process: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Process error = %v, want one containing %q", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("Process = %+v, want %+v", got, tt.want)
			}
			if got, want := f.slack.got(), tt.wantSlack; !slices.Equal(got, want) {
				t.Errorf("slack got %q, want %q", got, want)
			}
			if got, want := f.email.got(), tt.wantEmail; !slices.Equal(got, want) {
				t.Errorf("email got %q, want %q", got, want)
			}
			if tt.setup == nil {
				if held := f.ledger.held(); len(held) > 0 {
					t.Errorf("claims left held after the invocation: %q", held)
				}
			}
		})
	}
}

// engineKey is the alert key the evaluator gives rule's match on raw.
func engineKey(rule, raw string) string {
	ev, err := cloudtrail.DecodeEvent([]byte(raw))
	if err != nil {
		panic(err)
	}
	return decide.AlertKey(rule, ev)
}

// TestRetryAfterFailure replays a batch after a failed notification, as
// Lambda does, with and without the in-memory lifecycle: the retry sends
// exactly what was not delivered, and nothing twice.
func TestRetryAfterFailure(t *testing.T) {
	for _, withLifecycle := range []bool{false, true} {
		t.Run(fmt.Sprintf("lifecycle=%v", withLifecycle), func(t *testing.T) {
			f := newFixture(t, withLifecycle)
			down := true
			f.slack.fail = func(a notifiers.Alert) error {
				if down && a.RuleID == "test-bucket-policy-deduped" {
					return errors.New("slack: status 500")
				}
				return nil
			}
			batch := payload(t, cwlogs.MessageTypeData,
				record("e-1", "ConsoleLogin", "alice", t0),
				record("e-2", "PutBucketPolicy", "bob", t0.Add(time.Second)),
				record("e-3", "DeleteKeyPair", "bob", t0.Add(2*time.Second)),
			)
			first, err := f.h.Process(context.Background(), batch)
			if err == nil {
				t.Fatal("first invocation succeeded, want the failed notification to fail it")
			}
			if first.Sent != 5 || first.Failed != 1 {
				t.Errorf("first invocation = %+v, want 5 sent and 1 failed", first)
			}
			down = false
			second, err := f.h.Process(context.Background(), batch)
			if err != nil {
				t.Fatalf("retry: %v", err)
			}
			if second.Sent != 1 || second.AlreadyDelivered != 5 {
				t.Errorf("retry = %+v, want 1 sent and 5 already delivered", second)
			}
			// A third delivery of the same batch (Lambda's queue may repeat
			// one) sends nothing.
			third, err := f.h.Process(context.Background(), batch)
			if err != nil {
				t.Fatalf("repeat: %v", err)
			}
			if third.Sent != 0 {
				t.Errorf("repeat sent %d, want 0", third.Sent)
			}
			want := []string{"test-bucket-policy-deduped/e-2", "test-console-login/e-1", "test-key-pair-deleted/e-3"}
			if got := f.slack.got(); !slices.Equal(got, want) {
				t.Errorf("slack got %q, want each alert once: %q", got, want)
			}
			if got := f.email.got(); !slices.Equal(got, want) {
				t.Errorf("email got %q, want each alert once: %q", got, want)
			}
		})
	}
}

// TestLifecycleDedupAcrossBatches checks that the in-memory lifecycle
// still folds repeats inside its window between invocations.
func TestLifecycleDedupAcrossBatches(t *testing.T) {
	f := newFixture(t, true)
	for i, id := range []string{"e-1", "e-2", "e-3"} {
		batch := payload(t, cwlogs.MessageTypeData, record(id, "PutBucketPolicy", "bob", t0.Add(time.Duration(i)*time.Minute)))
		if _, err := f.h.Process(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := f.slack.got(), []string{"test-bucket-policy-deduped/e-1"}; !slices.Equal(got, want) {
		t.Errorf("slack got %q, want only the first of the repeats %q", got, want)
	}
}

func TestHandleRejectsMalformedPayloads(t *testing.T) {
	valid := payload(t, cwlogs.MessageTypeData, record("e-1", "ConsoleLogin", "alice", t0)).AWSLogs.Data
	tests := []struct {
		name, data, want string
	}{
		{"empty", "", "gzip"},
		{"not base64", "%%%not base64%%%", "base64"},
		{"base64 but not gzip", "aGVsbG8gd29ybGQ=", "gzip"},
		{"truncated gzip", valid[:len(valid)/2], ""},
		{"gzip but not JSON", gzipBase64(t, []byte("not json")), "json"},
		{"JSON without messageType", gzipBase64(t, []byte(`{"logEvents":[]}`)), "no messageType"},
		{"a gzip bomb", gzipBomb(t), "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, false)
			err := f.h.Handle(context.Background(), events.CloudwatchLogsEvent{AWSLogs: events.CloudwatchLogsRawData{Data: tt.data}})
			if err == nil || !strings.Contains(err.Error(), "decode subscription payload") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Handle error = %v, want a decode error mentioning %q", err, tt.want)
			}
			if len(f.slack.got())+len(f.email.got()) > 0 {
				t.Error("a malformed payload sent alerts")
			}
		})
	}
}

func TestWithoutLedgerEveryInvocationSends(t *testing.T) {
	f := newFixture(t, false)
	f.h.Ledger = nil
	batch := payload(t, cwlogs.MessageTypeData, record("e-1", "ConsoleLogin", "alice", t0))
	for range 2 {
		if _, err := f.h.Process(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(f.slack.got()); got != 2 {
		t.Errorf("slack got %d alerts, want 2 (no ledger: at least once, repeats included)", got)
	}
}

// gzipBase64 compresses and encodes body as a subscription payload's data.
func gzipBase64(t *testing.T, body []byte) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b.Bytes())
}

// gzipBomb returns a payload that decompresses to more than
// MaxDecodedSize: one compressed MiB of zeros, repeated as gzip members
// (readers concatenate them), so building it is cheap.
func gzipBomb(t *testing.T) string {
	t.Helper()
	var member bytes.Buffer
	zw := gzip.NewWriter(&member)
	if _, err := zw.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat(member.Bytes(), cwlogs.MaxDecodedSize>>20+1)
	return base64.StdEncoding.EncodeToString(body)
}
