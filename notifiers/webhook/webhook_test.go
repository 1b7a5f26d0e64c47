package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/notifiers"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the current output")

const (
	secretPath   = "/hooks/8f14e45fceea167a5a36dedd4bea2543"
	secretHeader = "Bearer sk-live-0123456789abcdef"
)

func testAlert() notifiers.Alert {
	return notifiers.Alert{
		RuleID:      "aws-root-console-login",
		Title:       "Root account console login",
		Severity:    "critical",
		Summary:     "Root user signed in to the console from 203.0.113.7",
		Description: "The root user should never be used for day-to-day work.",
		Tags:        []string{"cis-3.3", "iam"},
		Runbook:     "https://runbooks.example.com/root-login",
		DedupKey:    "aws-root-console-login/0f5b6c2e-1d0a-4f0e-9d7c-7e2b7d9c1a11",
		EventID:     "0f5b6c2e-1d0a-4f0e-9d7c-7e2b7d9c1a11",
		EventTime:   time.Date(2024, 5, 1, 12, 34, 56, 0, time.UTC),
		EventName:   "ConsoleLogin",
		EventSource: "signin.amazonaws.com",
		Principal:   "arn:aws:iam::123456789012:root",
		SourceIP:    "203.0.113.7",
		UserAgent:   "Mozilla/5.0 (X11; Linux x86_64) <!channel>",
		AWSRegion:   "us-east-1",
		AccountID:   "123456789012",
		Count:       1,
		Event:       json.RawMessage(`{"eventVersion":"1.08","eventID":"0f5b6c2e-1d0a-4f0e-9d7c-7e2b7d9c1a11","eventName":"ConsoleLogin"}`),
	}
}

// recorder is a loopback endpoint that answers from a script and keeps
// what it was sent.
type recorder struct {
	mu      sync.Mutex
	bodies  [][]byte
	headers []http.Header
	answers []answer
}

type answer struct {
	code   int
	header map[string]string
	body   string
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.bodies = append(rec.bodies, body)
	rec.headers = append(rec.headers, r.Header.Clone())
	a := answer{code: http.StatusOK}
	if len(rec.answers) > 0 {
		a, rec.answers = rec.answers[0], rec.answers[1:]
	}
	rec.mu.Unlock()
	if r.URL.Path != secretPath {
		a = answer{code: http.StatusNotFound}
	}
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(a.code)
	_, _ = io.WriteString(w, a.body)
}

func newTestNotifier(t *testing.T, rec *recorder, now func() time.Time) (*Notifier, string) {
	t.Helper()
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	u := srv.URL + secretPath
	opts := []Option{WithHTTPClient(srv.Client())}
	if now != nil {
		opts = append(opts, WithClock(now))
	}
	n, err := New(Config{URL: u, Headers: map[string]string{"Authorization": secretHeader, "X-Team": "sec"}}, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n, u
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
	rec := &recorder{}
	n, _ := newTestNotifier(t, rec, nil)
	if err := n.Notify(context.Background(), testAlert()); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	if len(rec.bodies) != 1 {
		t.Fatalf("server saw %d requests, want 1", len(rec.bodies))
	}
	checkGolden(t, "alert.golden.json", rec.bodies[0])

	// The body is exactly the public alert form.
	var got notifiers.Alert
	if err := json.Unmarshal(rec.bodies[0], &got); err != nil {
		t.Fatal(err)
	}
	if got.DedupKey != testAlert().DedupKey || !bytes.Equal(got.Event, testAlert().Event) {
		t.Errorf("round trip lost data: %+v", got)
	}

	h := rec.headers[0]
	for name, want := range map[string]string{
		"Content-Type":  "application/json",
		"Authorization": secretHeader,
		"X-Team":        "sec",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
}

func TestNotifyClassifiesAnswers(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	rec := &recorder{answers: []answer{
		{code: 500, body: "upstream exploded"},
		{code: 429, header: map[string]string{"Retry-After": "5"}},
		{code: 429, header: map[string]string{"Retry-After": "Wed, 01 May 2024 12:01:00 GMT"}},
		{code: 429},
		{code: 400, body: "bad payload, you sent Authorization: " + secretHeader},
		{code: 302, header: map[string]string{"Location": "https://elsewhere.example.com/"}},
		{code: 200},
	}}
	n, _ := newTestNotifier(t, rec, func() time.Time { return now })

	want := []string{
		"retry",
		"retry after 5s",
		"retry after 1m0s",
		"retry after " + notifiers.DefaultRetryAfter.String(),
		"permanent",
		"permanent",
		"ok",
	}
	for i, w := range want {
		t.Run(w, func(t *testing.T) {
			err := n.Notify(context.Background(), testAlert())
			if got := classify(err); got != w {
				t.Errorf("answer %d: got %s (%v), want %s", i, got, err, w)
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
	if err == nil {
		return
	}
	for _, s := range []string{secretPath, strings.TrimPrefix(secretPath, "/hooks/"), secretHeader, "sk-live"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains a secret (%q)", err, s)
		}
	}
}

func TestNotifyTransportErrorHidesURL(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL + secretPath
	srv.Close()
	n, err := New(Config{URL: u, Headers: map[string]string{"Authorization": secretHeader}})
	if err != nil {
		t.Fatal(err)
	}
	err = n.Notify(context.Background(), testAlert())
	if err == nil {
		t.Fatal("Notify to a closed server succeeded")
	}
	if notifiers.IsPermanent(err) {
		t.Errorf("transport error %v is permanent, want retryable", err)
	}
	if !strings.Contains(err.Error(), strings.TrimPrefix(srv.URL, "http://")) {
		t.Errorf("error %q does not name the host", err)
	}
	assertNoSecret(t, err)
}

func TestURLFile(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "url")
	if err := os.WriteFile(path, []byte(srv.URL+secretPath+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := New(Config{URLFile: path})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := n.Notify(context.Background(), testAlert()); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	if len(rec.bodies) != 1 {
		t.Errorf("server saw %d requests, want 1", len(rec.bodies))
	}

	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("http://example.com"+secretPath), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{URLFile: bad})
	if err == nil {
		t.Fatal("New accepted a plain http remote URL from url_file")
	}
	assertNoSecret(t, err)
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string
	}{
		{"url", Config{URL: "https://example.com" + secretPath}, nil},
		{"url file", Config{URLFile: "/run/secrets/hook"}, nil},
		{"neither", Config{}, []string{"one of url or url_file is required"}},
		{"both", Config{URL: "https://example.com/x", URLFile: "/f"}, []string{"mutually exclusive"}},
		{"plain http remote", Config{URL: "http://example.com" + secretPath}, []string{"must use https"}},
		{"relative url", Config{URL: secretPath}, []string{"not an absolute URL"}},
		{
			"bad headers, all reported",
			Config{URL: "https://example.com/x", Headers: map[string]string{
				"Bad Name":      "v",
				"Authorization": secretHeader + "\r\nX-Injected: 1",
				"Host":          "evil.example.com",
			}},
			[]string{`"Bad Name" is not a valid header name`, `value of "Authorization" contains a line break`, `"Host" cannot be set`},
		},
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
				t.Fatalf("Validate() = nil, want errors %q", tt.wantErr)
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

func TestLogsHideSecrets(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	n, err := New(Config{URL: srv.URL + secretPath, Headers: map[string]string{"Authorization": secretHeader}}, WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(context.Background(), testAlert()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "delivered") {
		t.Fatalf("nothing was logged: %q", logs.String())
	}
	for _, s := range []string{secretPath, secretHeader} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("logs contain a secret (%q):\n%s", s, logs.String())
		}
	}
}
