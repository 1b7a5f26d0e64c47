package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack/slacktest"

	"github.com/trailwatch/trailwatch/notifiers"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the current output")

const (
	webhookPath = "/services/T0000/B0000/XXXXSECRETXXXX"
	secretToken = "xoxb-1111-2222-SECRETTOKEN"
)

func testAlert() notifiers.Alert {
	return notifiers.Alert{
		RuleID:      "aws-iam-access-key-created",
		Title:       "IAM access key created",
		Severity:    "high",
		Summary:     "alice created an access key for bob",
		Description: "A new long-lived credential was issued.",
		Tags:        []string{"iam", "persistence"},
		Runbook:     "https://runbooks.example.com/iam-access-key",
		DedupKey:    "aws-iam-access-key-created/3b1c2d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d",
		EventID:     "3b1c2d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d",
		EventTime:   time.Date(2024, 5, 1, 12, 34, 56, 0, time.UTC),
		EventName:   "CreateAccessKey",
		EventSource: "iam.amazonaws.com",
		Principal:   "arn:aws:iam::123456789012:user/alice",
		UserName:    "alice",
		AccessKeyID: "AKIAIOSFODNN7EXAMPLE",
		SourceIP:    "198.51.100.23",
		UserAgent:   "aws-cli/2.15.0 Python/3.11.6 Linux/6.5.0 exe/x86_64.ubuntu.22",
		AWSRegion:   "us-east-1",
		AccountID:   "123456789012",
		Count:       1,
		Event:       json.RawMessage(`{"eventID":"3b1c2d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d"}`),
	}
}

func aggregateAlert() notifiers.Alert {
	a := testAlert()
	a.RuleID = "aws-console-login-failures"
	a.Title = "Repeated console login failures"
	a.Summary = "12 failed console logins for alice in 5 minutes"
	a.Count = 12
	a.Suppressed = 9
	a.FirstTime = time.Date(2024, 5, 1, 12, 30, 0, 0, time.UTC)
	a.LastTime = time.Date(2024, 5, 1, 12, 34, 56, 0, time.UTC)
	a.Group = []string{"alice", "<!channel>"}
	for i := range 12 {
		a.Samples = append(a.Samples, notifiers.EventSample{
			EventID:   fmt.Sprintf("evt-%02d", i),
			EventTime: a.FirstTime.Add(time.Duration(i) * 20 * time.Second),
			EventName: "ConsoleLogin",
			Principal: "arn:aws:iam::123456789012:user/alice",
			SourceIP:  "<https://evil|203.0.113.5>",
			ErrorCode: "Failed authentication",
		})
	}
	return a
}

const hostile = "<!channel> <@U123> <https://evil|click> *bold* _it_ `code` ~s~ & stuff"

// hostileAlert fills every event-derived field with markup that must stay
// inert, and optionally pads the long ones to pad characters.
func hostileAlert(pad int) notifiers.Alert {
	a := testAlert()
	long := func(s string) string { return s + strings.Repeat("A&<", pad/3) }
	a.UserAgent = long(hostile + "\nOutcome\nsuccess")
	a.Summary = long("<!here> " + hostile)
	a.Principal = long("arn:aws:iam::123456789012:user/" + hostile + "\nWho\nroot")
	a.UserName = hostile
	a.EventName = "<!everyone>"
	a.EventSource = "<https://evil.example|iam.amazonaws.com>"
	a.SourceIP = "<https://evil.example|198.51.100.23>"
	a.ErrorCode = "AccessDenied<!subteam^S123>"
	a.ErrorMessage = long("User: " + hostile + " is not authorized\r\n\x00\x1b[31m")
	a.EventID = "<!channel>|x"
	a.AWSRegion = "us-east-1<@U1>"
	a.Tags = []string{"<!here>", "*x*"}
	a.Runbook = "javascript:alert(1)"
	a.Count = 3
	return a
}

// fakeSlack is a slacktest server with scripted chat.postMessage and
// incoming-webhook handlers that keep what they were sent.
type fakeSlack struct {
	srv *slacktest.Server

	mu      sync.Mutex
	forms   []map[string][]string
	auth    []string
	bodies  [][]byte
	answers []fakeAnswer
}

type fakeAnswer struct {
	code       int
	retryAfter string
	body       string
}

func startFakeSlack(t *testing.T, answers ...fakeAnswer) *fakeSlack {
	t.Helper()
	f := &fakeSlack{answers: answers}
	f.srv = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", f.postMessage)
		c.Handle("/services/", f.webhook)
	})
	f.srv.Start()
	t.Cleanup(f.srv.Stop)
	return f
}

func (f *fakeSlack) next(def fakeAnswer) fakeAnswer {
	if len(f.answers) == 0 {
		return def
	}
	a := f.answers[0]
	f.answers = f.answers[1:]
	return a
}

func (f *fakeSlack) write(w http.ResponseWriter, a fakeAnswer) {
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	w.WriteHeader(a.code)
	_, _ = io.WriteString(w, a.body)
}

func (f *fakeSlack) postMessage(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.forms = append(f.forms, r.PostForm)
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	a := f.next(fakeAnswer{code: 200, body: `{"ok":true,"channel":"C0123","ts":"1714566896.000100"}`})
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	f.write(w, a)
}

func (f *fakeSlack) webhook(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.URL.Path != webhookPath {
		http.Error(w, "no_service", http.StatusNotFound)
		return
	}
	f.mu.Lock()
	f.bodies = append(f.bodies, body)
	a := f.next(fakeAnswer{code: 200, body: "ok"})
	f.mu.Unlock()
	f.write(w, a)
}

func (f *fakeSlack) webhookURL() string {
	return strings.TrimSuffix(f.srv.GetAPIURL(), "/") + webhookPath
}

func newWebhookNotifier(t *testing.T, f *fakeSlack, now func() time.Time) *Notifier {
	t.Helper()
	opts := []Option{}
	if now != nil {
		opts = append(opts, WithClock(now))
	}
	n, err := New(Config{WebhookURL: f.webhookURL()}, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n
}

func newTokenNotifier(t *testing.T, f *fakeSlack) *Notifier {
	t.Helper()
	n, err := New(Config{Token: secretToken, Channel: "#security-alerts"}, WithAPIURL(f.srv.GetAPIURL()))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n
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

// formJSON turns a chat.postMessage form into a JSON object for a golden
// file, leaving out the token.
func formJSON(t *testing.T, form map[string][]string) []byte {
	t.Helper()
	out := map[string]any{}
	for k, v := range form {
		switch k {
		case "token":
		case "blocks":
			out[k] = json.RawMessage(v[0])
		default:
			out[k] = v[0]
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWebhookPayload(t *testing.T) {
	tests := []struct {
		name   string
		golden string
		alert  notifiers.Alert
	}{
		{"plain alert", "webhook.golden.json", testAlert()},
		{"hostile fields stay inert", "webhook-hostile.golden.json", hostileAlert(0)},
		{"aggregated alert", "webhook-aggregate.golden.json", aggregateAlert()},
		{"test alert without optional fields", "webhook-minimal.golden.json", notifiers.Alert{
			RuleID: "notify-test", Title: "trailwatch notification test", Severity: "info", Test: true,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFakeSlack(t)
			n := newWebhookNotifier(t, f, nil)
			if err := n.Notify(context.Background(), tt.alert); err != nil {
				t.Fatalf("Notify: %v", err)
			}
			if len(f.bodies) != 1 {
				t.Fatalf("webhook saw %d posts, want 1", len(f.bodies))
			}
			checkGolden(t, tt.golden, f.bodies[0])
			checkInert(t, f.bodies[0])
		})
	}
}

func TestPostMessagePayload(t *testing.T) {
	f := startFakeSlack(t)
	n := newTokenNotifier(t, f)
	if err := n.Notify(context.Background(), testAlert()); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	if len(f.forms) != 1 {
		t.Fatalf("chat.postMessage saw %d calls, want 1", len(f.forms))
	}
	form := f.forms[0]
	if got := form["token"]; !(len(got) == 1 && got[0] == secretToken) && f.auth[0] != "Bearer "+secretToken {
		t.Errorf("token not sent: form token %q, Authorization %q", got, f.auth[0])
	}
	checkGolden(t, "postmessage.golden.json", formJSON(t, form))

	var blocks []any
	if err := json.Unmarshal([]byte(form["blocks"][0]), &blocks); err != nil {
		t.Fatalf("blocks: %v", err)
	}
	checkInert(t, formJSON(t, form))
}

// TestHostileOversizedFields sends 10 KB hostile strings and checks the
// message is inert and within every Slack limit, for both modes.
func TestHostileOversizedFields(t *testing.T) {
	a := hostileAlert(10 << 10)
	a.Title = strings.Repeat("T", 400)
	a.Tags = nil
	for range 30 {
		a.Tags = append(a.Tags, strings.Repeat("t", 200))
	}

	f := startFakeSlack(t)
	for _, mode := range []string{"webhook", "token"} {
		t.Run(mode, func(t *testing.T) {
			var body []byte
			if mode == "webhook" {
				if err := newWebhookNotifier(t, f, nil).Notify(context.Background(), a); err != nil {
					t.Fatalf("Notify: %v", err)
				}
				body = f.bodies[len(f.bodies)-1]
			} else {
				if err := newTokenNotifier(t, f).Notify(context.Background(), a); err != nil {
					t.Fatalf("Notify: %v", err)
				}
				body = formJSON(t, f.forms[len(f.forms)-1])
			}
			checkInert(t, body)
			if !strings.Contains(string(body), ellipsis) {
				t.Error("no text was cut with an ellipsis")
			}
		})
	}
}

// checkInert walks a message and fails on anything Slack would turn into
// a mention, a link or formatting, or on any size limit exceeded.
func checkInert(t *testing.T, body []byte) {
	t.Helper()
	var msg struct {
		Text   string           `json:"text"`
		Blocks []map[string]any `json:"blocks"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatalf("message is not JSON: %v", err)
	}
	checkText(t, "text", msg.Text, maxFallbackText)
	if len(msg.Blocks) > maxBlocks {
		t.Errorf("%d blocks, want at most %d", len(msg.Blocks), maxBlocks)
	}
	for i, b := range msg.Blocks {
		typ, _ := b["type"].(string)
		switch typ {
		case "header":
			checkTextObject(t, "header", b["text"], maxHeaderText)
		case "section":
			if b["text"] != nil {
				checkTextObject(t, "section text", b["text"], maxSectionText)
			}
			fields, _ := b["fields"].([]any)
			if len(fields) > maxFields {
				t.Errorf("block %d has %d fields, want at most %d", i, len(fields), maxFields)
			}
			for _, f := range fields {
				checkTextObject(t, "section field", f, maxFieldText)
			}
		case "context":
			elts, _ := b["elements"].([]any)
			if len(elts) > maxContextElts {
				t.Errorf("context block has %d elements, want at most %d", len(elts), maxContextElts)
			}
			for _, e := range elts {
				checkTextObject(t, "context element", e, maxSectionText)
			}
		case "actions":
			elts, _ := b["elements"].([]any)
			for _, e := range elts {
				btn := e.(map[string]any)
				u, _ := btn["url"].(string)
				if !strings.HasPrefix(u, "https://") || strings.Contains(u, "<") || strings.Contains(u, "|") {
					t.Errorf("button URL %q is not a plain https URL", u)
				}
				checkTextObject(t, "button", btn["text"], maxButtonText)
			}
		default:
			t.Errorf("unexpected block type %q", typ)
		}
	}
}

func checkTextObject(t *testing.T, what string, obj any, limit int) {
	t.Helper()
	m, ok := obj.(map[string]any)
	if !ok {
		t.Errorf("%s: not a text object: %v", what, obj)
		return
	}
	if m["type"] != "plain_text" {
		t.Errorf("%s: type %v, want plain_text so event data is never parsed as mrkdwn", what, m["type"])
	}
	s, _ := m["text"].(string)
	if s == "" {
		t.Errorf("%s: empty text", what)
	}
	checkText(t, what, s, limit)
}

func checkText(t *testing.T, what, s string, limit int) {
	t.Helper()
	if n := utf8.RuneCountInString(s); n > limit {
		t.Errorf("%s: %d characters, want at most %d", what, n, limit)
	}
	if strings.ContainsAny(s, "<>") {
		t.Errorf("%s: contains a raw < or >: %.200q", what, s)
	}
	rest := s
	for {
		i := strings.IndexByte(rest, '&')
		if i < 0 {
			break
		}
		rest = rest[i:]
		if !strings.HasPrefix(rest, "&amp;") && !strings.HasPrefix(rest, "&lt;") && !strings.HasPrefix(rest, "&gt;") {
			t.Errorf("%s: unescaped &: %.40q", what, rest)
			break
		}
		rest = rest[1:]
	}
	if strings.ContainsAny(s, "\x00\x1b\r") {
		t.Errorf("%s: contains control characters: %.200q", what, s)
	}
}

func TestWebhookClassifiesAnswers(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	f := startFakeSlack(t,
		fakeAnswer{code: 500, body: "rollup_error"},
		fakeAnswer{code: 429, retryAfter: "3"},
		fakeAnswer{code: 429, retryAfter: "Wed, 01 May 2024 12:00:20 GMT"},
		fakeAnswer{code: 403, body: "invalid_token"},
		fakeAnswer{code: 404, body: "channel_not_found"},
		fakeAnswer{code: 410, body: "channel_is_archived"},
		fakeAnswer{code: 200, body: "ok"},
	)
	n := newWebhookNotifier(t, f, func() time.Time { return now })
	for i, want := range []string{"retry", "retry after 3s", "retry after 20s", "permanent", "permanent", "permanent", "ok"} {
		err := n.Notify(context.Background(), testAlert())
		if got := classify(err); got != want {
			t.Errorf("answer %d: got %s (%v), want %s", i, got, err, want)
		}
		assertNoSecret(t, err)
	}
}

func TestPostMessageClassifiesAnswers(t *testing.T) {
	tests := []struct {
		name   string
		answer fakeAnswer
		want   string
	}{
		{"server error retries", fakeAnswer{code: 500, body: "<html>oops</html>"}, "retry"},
		{"rate limit carries retry-after", fakeAnswer{code: 429, retryAfter: "7"}, "retry after 7s"},
		{"rate limit without header uses default", fakeAnswer{code: 429}, "retry after " + notifiers.DefaultRetryAfter.String()},
		{"invalid_auth is permanent", fakeAnswer{code: 200, body: `{"ok":false,"error":"invalid_auth"}`}, "permanent"},
		{"channel_not_found is permanent", fakeAnswer{code: 200, body: `{"ok":false,"error":"channel_not_found"}`}, "permanent"},
		{"not_in_channel is permanent", fakeAnswer{code: 200, body: `{"ok":false,"error":"not_in_channel"}`}, "permanent"},
		{"internal_error retries", fakeAnswer{code: 200, body: `{"ok":false,"error":"internal_error"}`}, "retry"},
		{"garbled answer retries", fakeAnswer{code: 200, body: `<html>proxy</html>`}, "retry"},
		{"ok", fakeAnswer{code: 200, body: `{"ok":true,"channel":"C1","ts":"1.2"}`}, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFakeSlack(t, tt.answer)
			err := newTokenNotifier(t, f).Notify(context.Background(), testAlert())
			if got := classify(err); got != tt.want {
				t.Errorf("got %s (%v), want %s", got, err, tt.want)
			}
			assertNoSecret(t, err)
		})
	}
}

func TestTransportErrorsHideSecrets(t *testing.T) {
	f := startFakeSlack(t)
	webhook := f.webhookURL()
	api := f.srv.GetAPIURL()
	f.srv.Stop()

	wn, err := New(Config{WebhookURL: webhook})
	if err != nil {
		t.Fatal(err)
	}
	tn, err := New(Config{Token: secretToken, Channel: "C1"}, WithAPIURL(api))
	if err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]*Notifier{"webhook": wn, "token": tn} {
		t.Run(name, func(t *testing.T) {
			err := n.Notify(context.Background(), testAlert())
			if err == nil {
				t.Fatal("Notify to a stopped server succeeded")
			}
			if notifiers.IsPermanent(err) {
				t.Errorf("transport error %v is permanent, want retryable", err)
			}
			assertNoSecret(t, err)
		})
	}
}

func TestSecretFiles(t *testing.T) {
	f := startFakeSlack(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"webhook_url_file", Config{WebhookURLFile: write("url", f.webhookURL()+"\n")}},
		{"token_file", Config{TokenFile: write("token", secretToken+"\n"), Channel: "C1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := New(tt.cfg, WithAPIURL(f.srv.GetAPIURL()))
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if err := n.Notify(context.Background(), testAlert()); err != nil {
				t.Fatalf("Notify: %v", err)
			}
		})
	}
	if len(f.bodies) != 1 || len(f.forms) != 1 {
		t.Errorf("saw %d webhook posts and %d API calls, want 1 and 1", len(f.bodies), len(f.forms))
	}
	if got := url.Values(f.forms[0]).Get("token"); got != secretToken && f.auth[0] != "Bearer "+secretToken {
		t.Errorf("token file not used: got %q", got)
	}

	_, err := New(Config{WebhookURLFile: write("remote", "http://hooks.example.com"+webhookPath)})
	if err == nil {
		t.Fatal("New accepted a plain http remote URL from webhook_url_file")
	}
	assertNoSecret(t, err)
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string
	}{
		{"webhook url", Config{WebhookURL: "https://hooks.slack.com" + webhookPath}, nil},
		{"webhook url file", Config{WebhookURLFile: "/run/secrets/slack"}, nil},
		{"token and channel", Config{Token: secretToken, Channel: "C0123"}, nil},
		{"token file and channel", Config{TokenFile: "/run/secrets/token", Channel: "#sec"}, nil},
		{"nothing", Config{}, []string{"one of webhook_url, webhook_url_file, token or token_file is required"}},
		{"webhook and token", Config{WebhookURL: "https://hooks.slack.com" + webhookPath, Token: secretToken, Channel: "C1"}, []string{"mutually exclusive"}},
		{"url and url file", Config{WebhookURL: "https://hooks.slack.com" + webhookPath, WebhookURLFile: "/f"}, []string{"mutually exclusive"}},
		{"token without channel", Config{Token: secretToken}, []string{"channel is required"}},
		{"webhook with channel", Config{WebhookURL: "https://hooks.slack.com" + webhookPath, Channel: "C1"}, []string{"channel is only used with token"}},
		{"plain http webhook", Config{WebhookURL: "http://hooks.slack.com" + webhookPath}, []string{"must use https"}},
		{"token with newline", Config{Token: secretToken + "\n", Channel: "C1"}, []string{"white space"}},
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

func TestEscapeTruncate(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		limit int
		want  string
	}{
		{"short is kept", "abc", 10, "abc"},
		{"specials are escaped", "<!here> & <@U1>", 100, "&lt;!here&gt; &amp; &lt;@U1&gt;"},
		{"exact fit is not cut", "a<b", 6, "a&lt;b"},
		{"cut ends in ellipsis", "abcdefghij", 5, "abcd…"},
		{"entity is never split", "abc<def", 6, "abc…"},
		{"runes not bytes", "ééééé", 3, "éé…"},
		{"controls are replaced", "a\x00b\x1bc", 10, "a�b�c"},
		{"newlines are kept", "a\nb", 10, "a\nb"},
		{"invalid utf8 is replaced", "a\xffb", 10, "a�b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := escapeTruncate(tt.in, tt.limit)
			if got != tt.want {
				t.Errorf("escapeTruncate(%q, %d) = %q, want %q", tt.in, tt.limit, got, tt.want)
			}
			if n := utf8.RuneCountInString(got); n > tt.limit {
				t.Errorf("result has %d characters, limit %d", n, tt.limit)
			}
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
	for _, s := range []string{webhookPath, "XXXXSECRETXXXX", secretToken, "SECRETTOKEN"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains a secret (%q)", err, s)
		}
	}
}

func TestLogsHideSecrets(t *testing.T) {
	f := startFakeSlack(t, fakeAnswer{code: 200, body: "ok"}, fakeAnswer{code: 403, body: "invalid_token"})
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	wn, err := New(Config{WebhookURL: f.webhookURL()}, WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	tn, err := New(Config{Token: secretToken, Channel: "C1"}, WithAPIURL(f.srv.GetAPIURL()), WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Notifier{wn, wn, tn} {
		_ = n.Notify(context.Background(), testAlert())
	}
	if !strings.Contains(logs.String(), "delivered") {
		t.Fatalf("nothing was logged: %q", logs.String())
	}
	for _, s := range []string{"XXXXSECRETXXXX", "SECRETTOKEN"} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("logs contain a secret (%q):\n%s", s, logs.String())
		}
	}
}

func FuzzEscapeTruncate(f *testing.F) {
	f.Add(hostile, 40)
	f.Add("&&&<<<>>>", 5)
	f.Add("ééé\x00\n", 2)
	f.Fuzz(func(t *testing.T, s string, limit int) {
		if limit < 1 || limit > 5000 {
			t.Skip()
		}
		got := escapeTruncate(s, limit)
		if n := utf8.RuneCountInString(got); n > limit {
			t.Errorf("escapeTruncate(%q, %d) has %d characters", s, limit, n)
		}
		if strings.ContainsAny(got, "<>") {
			t.Errorf("escapeTruncate(%q, %d) = %q keeps a raw < or >", s, limit, got)
		}
		if !utf8.ValidString(got) {
			t.Errorf("escapeTruncate(%q, %d) = %q is not valid UTF-8", s, limit, got)
		}
	})
}
