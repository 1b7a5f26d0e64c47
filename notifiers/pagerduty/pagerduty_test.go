package pagerduty

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/trailwatch/trailwatch/notifiers"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the current output")

const routingKey = "R0UT1NGKEYSECRET0123456789abcdef"

func testAlert() notifiers.Alert {
	return notifiers.Alert{
		RuleID:      "aws-cloudtrail-stopped",
		Title:       "CloudTrail logging stopped",
		Severity:    "critical",
		Summary:     "mallory stopped trail org-trail",
		Description: "Stopping a trail blinds detection.",
		Tags:        []string{"cis-3.5", "defense-evasion"},
		Runbook:     "https://runbooks.example.com/cloudtrail-stopped",
		References:  []string{"https://attack.mitre.org/techniques/T1562/008/"},
		DedupKey:    "aws-cloudtrail-stopped/6a7b8c9d-0e1f-4a2b-9c3d-4e5f6a7b8c9d",
		EventID:     "6a7b8c9d-0e1f-4a2b-9c3d-4e5f6a7b8c9d",
		EventTime:   time.Date(2024, 5, 1, 12, 34, 56, 0, time.UTC),
		EventName:   "StopLogging",
		EventSource: "cloudtrail.amazonaws.com",
		Principal:   "arn:aws:iam::123456789012:user/mallory",
		UserName:    "mallory",
		AccessKeyID: "AKIAIOSFODNN7EXAMPLE",
		SourceIP:    "192.0.2.10",
		UserAgent:   "aws-cli/2.15.0",
		AWSRegion:   "eu-west-1",
		AccountID:   "123456789012",
		Count:       1,
		Event:       json.RawMessage(`{"eventID":"6a7b8c9d-0e1f-4a2b-9c3d-4e5f6a7b8c9d","eventName":"StopLogging"}`),
	}
}

// fakePagerDuty is a loopback Events API that answers from a script.
type fakePagerDuty struct {
	mu      sync.Mutex
	bodies  [][]byte
	answers []answer
}

type answer struct {
	code       int
	retryAfter string
	body       string
}

func (f *fakePagerDuty) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.bodies = append(f.bodies, body)
	a := answer{code: http.StatusAccepted, body: `{"status":"success","message":"Event processed","dedup_key":"x"}`}
	if len(f.answers) > 0 {
		a, f.answers = f.answers[0], f.answers[1:]
	}
	f.mu.Unlock()
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.code)
	_, _ = io.WriteString(w, a.body)
}

func start(t *testing.T, answers ...answer) (*fakePagerDuty, string) {
	t.Helper()
	f := &fakePagerDuty{answers: answers}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL + "/v2/enqueue"
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, got, "", "  "); err != nil {
		t.Fatalf("payload is not JSON: %v\n%s", err, got)
	}
	buf.WriteByte('\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("payload differs from %s (run with -update if intended)\ngot:\n%s\nwant:\n%s", path, buf.Bytes(), want)
	}
}

func TestNotifyPayload(t *testing.T) {
	f, u := start(t)
	n, err := New(Config{RoutingKey: routingKey, URL: u})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := n.Notify(context.Background(), testAlert()); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	if len(f.bodies) != 1 {
		t.Fatalf("server saw %d requests, want 1", len(f.bodies))
	}
	checkGolden(t, "event.golden.json", f.bodies[0])
}

func TestPayloadFields(t *testing.T) {
	long := testAlert()
	long.Summary = strings.Repeat("é<", 2000)
	long.DedupKey = strings.Repeat("k", 300)
	long.Runbook = "javascript:alert(1)"
	long.Severity = "High"

	ev := buildEvent(routingKey, long)
	if n := utf8.RuneCountInString(ev.Payload.Summary); n > maxSummary {
		t.Errorf("summary has %d characters, want at most %d", n, maxSummary)
	}
	if !strings.HasSuffix(ev.Payload.Summary, "…") {
		t.Errorf("cut summary does not end in an ellipsis: %q", ev.Payload.Summary[len(ev.Payload.Summary)-10:])
	}
	if len(ev.DedupKey) > maxDedupKey || ev.DedupKey != buildEvent(routingKey, long).DedupKey {
		t.Errorf("long dedup key %q is not a stable short key", ev.DedupKey)
	}
	if ev.Payload.Severity != "error" {
		t.Errorf("severity = %q, want error", ev.Payload.Severity)
	}
	for _, l := range ev.Links {
		if l.Text == "Runbook" {
			t.Errorf("a javascript: runbook became a link: %+v", l)
		}
	}

	hostile := testAlert()
	hostile.Summary = "line one\nline two\r\n\tthree"
	if got, want := buildEvent(routingKey, hostile).Payload.Summary,
		"[CRITICAL] CloudTrail logging stopped: line one line two three"; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}

	huge := testAlert()
	huge.Event = json.RawMessage(`{"x":"` + strings.Repeat("a", maxRawEvent) + `"}`)
	d := buildEvent(routingKey, huge).Payload.CustomDetails
	if _, ok := d["event"]; ok {
		t.Error("a record over the size limit was copied into custom_details")
	}
	if _, ok := d["event_omitted"]; !ok {
		t.Error("custom_details does not say the record was omitted")
	}
}

func TestSeverity(t *testing.T) {
	tests := []struct{ in, want string }{
		{"critical", "critical"},
		{"high", "error"},
		{"medium", "warning"},
		{"low", "info"},
		{"info", "info"},
		{"CRITICAL", "critical"},
		{"", "warning"},
		{"bogus", "warning"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := Severity(tt.in); got != tt.want {
				t.Errorf("Severity(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestNotifyClassifiesAnswers(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	f, u := start(t,
		answer{code: 500, body: "Internal Server Error"},
		answer{code: 429, retryAfter: "9"},
		answer{code: 429, body: `{"status":"throttle event","message":"Requests for this service are arriving too quickly."}`},
		answer{code: 400, body: `{"status":"invalid event","message":"Event object is invalid","errors":["routing_key ` + routingKey + ` is invalid"]}`},
		answer{code: 202, body: `{"status":"success"}`},
	)
	n, err := New(Config{RoutingKey: routingKey, URL: u}, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"retry", "retry after 9s", "retry after " + notifiers.DefaultRetryAfter.String(), "permanent", "ok"}
	for i, w := range want {
		err := n.Notify(context.Background(), testAlert())
		if got := classify(err); got != w {
			t.Errorf("answer %d: got %s (%v), want %s", i, got, err, w)
		}
		assertNoSecret(t, err)
	}
	if len(f.bodies) != len(want) {
		t.Errorf("server saw %d requests, want %d", len(f.bodies), len(want))
	}
}

func TestTransportErrorHidesKey(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL + "/v2/enqueue?key=" + routingKey
	srv.Close()
	n, err := New(Config{RoutingKey: routingKey, URL: u})
	if err != nil {
		t.Fatal(err)
	}
	err = n.Notify(context.Background(), testAlert())
	if err == nil || notifiers.IsPermanent(err) {
		t.Fatalf("Notify to a closed server = %v, want a retryable error", err)
	}
	assertNoSecret(t, err)
}

func TestRoutingKeyFile(t *testing.T) {
	f, u := start(t)
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, []byte(routingKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := New(Config{RoutingKeyFile: path, URL: u})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := n.Notify(context.Background(), testAlert()); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	var ev event
	if err := json.Unmarshal(f.bodies[0], &ev); err != nil {
		t.Fatal(err)
	}
	if ev.RoutingKey != routingKey {
		t.Errorf("routing_key = %q, want the file's content", ev.RoutingKey)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string
	}{
		{"routing key", Config{RoutingKey: routingKey}, nil},
		{"routing key file and url", Config{RoutingKeyFile: "/run/secrets/pd", URL: "https://events.eu.pagerduty.com/v2/enqueue"}, nil},
		{"nothing", Config{}, []string{"one of routing_key or routing_key_file is required"}},
		{"both", Config{RoutingKey: routingKey, RoutingKeyFile: "/f"}, []string{"mutually exclusive"}},
		{"key with newline", Config{RoutingKey: routingKey + "\n"}, []string{"white space"}},
		{"plain http url, all reported", Config{URL: "http://events.pagerduty.com/v2/enqueue"}, []string{"one of routing_key", "must use https"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
			assertNoSecret(t, err)
		})
	}
}

func classify(err error) string {
	after, ok := notifiers.RetryAfter(err)
	switch {
	case err == nil:
		return "ok"
	case notifiers.IsPermanent(err):
		return "permanent"
	case ok:
		return "retry after " + after.String()
	default:
		return "retry"
	}
}

func assertNoSecret(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), routingKey) {
		t.Errorf("error %q contains the routing key", err)
	}
}
