package notifiers

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRedactURL(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"slack webhook path is hidden", "https://hooks.slack.com/services/T000/B000/XXXXSECRET", "https://hooks.slack.com/<redacted>"},
		{"query token is hidden", "https://example.com/hook?token=s3cr3t", "https://example.com/<redacted>"},
		{"bare host is kept", "https://events.pagerduty.com", "https://events.pagerduty.com"},
		{"root path is kept", "https://example.com/", "https://example.com"},
		{"port is kept", "http://127.0.0.1:8080/x/y", "http://127.0.0.1:8080/<redacted>"},
		{"user info is hidden", "https://user:pass@example.com/", "https://<redacted>@example.com/<redacted>"},
		{"unparsable is hidden", "https://exa mple.com/%zz", "<redacted>"},
		{"relative is hidden", "services/T000/B000/XXXX", "<redacted>"},
		{"empty is hidden", "", "<redacted>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RedactURL(tt.in); got != tt.want {
				t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestCheckURL(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"https", "https://hooks.slack.com/services/T/B/X", true},
		{"http loopback v4", "http://127.0.0.1:9999/hook", true},
		{"http loopback v6", "http://[::1]:9999/hook", true},
		{"http localhost", "http://localhost:9999/hook", true},
		{"http remote", "http://example.com/hook", false},
		{"ftp", "ftp://example.com/hook", false},
		{"relative", "/hook", false},
		{"garbage", "://", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckURL(tt.in)
			if got := err == nil; got != tt.ok {
				t.Fatalf("CheckURL(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil && strings.Contains(err.Error(), "example.com/hook") {
				t.Errorf("error %q quotes the URL", err)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"seconds", "17", 17 * time.Second, true},
		{"seconds with spaces", " 3 ", 3 * time.Second, true},
		{"zero", "0", 0, true},
		{"http date in future", "Wed, 01 May 2024 12:01:30 GMT", 90 * time.Second, true},
		{"http date in past", "Wed, 01 May 2024 11:00:00 GMT", 0, true},
		{"huge seconds are capped", "99999999999999", MaxRetryAfter, true},
		{"a day is capped", "99999", MaxRetryAfter, true},
		{"http date a day ahead is capped", "Thu, 02 May 2024 12:00:00 GMT", MaxRetryAfter, true},
		{"negative", "-5", 0, false},
		{"garbage", "soon", 0, false},
		{"empty", "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseRetryAfter(tt.in, now)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestStatusError(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	type want int
	const (
		ok want = iota
		retry
		retryAfter
		permanent
	)
	tests := []struct {
		name       string
		code       int
		retryAfter string
		want       want
		wantAfter  time.Duration
	}{
		{"200 ok", 200, "", ok, 0},
		{"202 accepted", 202, "", ok, 0},
		{"204 no content", 204, "", ok, 0},
		{"301 redirect is permanent", 301, "", permanent, 0},
		{"400 bad request is permanent", 400, "", permanent, 0},
		{"403 forbidden is permanent", 403, "", permanent, 0},
		{"404 not found is permanent", 404, "", permanent, 0},
		{"408 request timeout retries", 408, "", retry, 0},
		{"429 with seconds", 429, "7", retryAfter, 7 * time.Second},
		{"429 with http date", 429, "Wed, 01 May 2024 12:00:42 GMT", retryAfter, 42 * time.Second},
		{"429 without header uses default", 429, "", retryAfter, DefaultRetryAfter},
		{"429 with garbage uses default", 429, "later", retryAfter, DefaultRetryAfter},
		{"500 retries", 500, "", retry, 0},
		{"503 retries", 503, "120", retry, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.retryAfter != "" {
				h.Set("Retry-After", tt.retryAfter)
			}
			err := StatusError("post alert", tt.code, h, nil, now)
			after, hasAfter := RetryAfter(err)
			var got want
			switch {
			case err == nil:
				got = ok
			case IsPermanent(err):
				got = permanent
			case hasAfter:
				got = retryAfter
			default:
				got = retry
			}
			if got != tt.want {
				t.Fatalf("StatusError(%d) = %v (class %d), want class %d", tt.code, err, got, tt.want)
			}
			if tt.want == retryAfter && after != tt.wantAfter {
				t.Errorf("retry after = %v, want %v", after, tt.wantAfter)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "post alert: ") {
				t.Errorf("error %q does not name the operation", err)
			}
		})
	}
}

func TestStatusErrorBodyIsShortAndRedacted(t *testing.T) {
	const secret = "xoxb-very-secret"
	body := []byte("invalid_token for " + secret + "\n" + strings.Repeat("x", 5000))
	err := StatusError("post message", 403, nil, body, time.Now(), secret)
	msg := err.Error()
	if strings.Contains(msg, secret) {
		t.Errorf("error %q contains the secret", msg)
	}
	if !strings.Contains(msg, "invalid_token") {
		t.Errorf("error %q does not quote the body", msg)
	}
	if len(msg) > 400 {
		t.Errorf("error is %d bytes long, want the body shortened", len(msg))
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error %q spans lines", msg)
	}
}

// TestCheckResponseSequence drives a real loopback server through the
// answers a rate-limited, flaky endpoint gives, and checks each
// classification in order.
func TestCheckResponseSequence(t *testing.T) {
	const secret = "s3cr3t-path-token"
	answers := []struct {
		code       int
		retryAfter string
	}{
		{500, ""},
		{429, "12"},
		{200, ""},
	}
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := answers[calls]
		calls++
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		w.WriteHeader(a.code)
		_, _ = w.Write([]byte("oops " + r.URL.Path))
	}))
	defer srv.Close()

	client := DefaultHTTPClient()
	hook := srv.URL + "/hooks/" + secret
	var got []string
	for range answers {
		resp, err := client.Post(hook, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatalf("post: %v", err)
		}
		err = CheckResponse("post webhook", resp, nil, secret)
		_ = resp.Body.Close()
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error %q contains the secret", err)
		}
		switch after, ok := RetryAfter(err); {
		case err == nil:
			got = append(got, "ok")
		case IsPermanent(err):
			got = append(got, "permanent")
		case ok:
			got = append(got, "retry after "+after.String())
		default:
			got = append(got, "retry")
		}
	}
	want := []string{"retry", "retry after 12s", "ok"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("classifications = %q, want %q", got, want)
	}
}

func TestRequestErrorHidesURL(t *testing.T) {
	const secret = "T000/B000/XXXXSECRET"

	// A port that was free a moment ago and now has nobody listening.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()

	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer slow.Close()
	defer close(release)

	tests := []struct {
		name    string
		url     string
		ctx     func() (context.Context, context.CancelFunc)
		wantIs  error
		wantMsg string
	}{
		{
			name:    "connection refused",
			url:     "http://" + addr + "/services/" + secret,
			ctx:     func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			wantMsg: "refused",
		},
		{
			name: "deadline exceeded",
			url:  slow.URL + "/services/" + secret,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 50*time.Millisecond)
			},
			wantIs:  context.DeadlineExceeded,
			wantMsg: "deadline",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, tt.url, strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = DefaultHTTPClient().Do(req)
			if err == nil {
				t.Fatal("request succeeded, want an error")
			}
			got := RequestError("post webhook", err, tt.url)
			msg := got.Error()
			if strings.Contains(msg, "XXXXSECRET") || strings.Contains(msg, "/services/") {
				t.Errorf("error %q leaks the URL", msg)
			}
			if !strings.HasPrefix(msg, "post webhook: ") || !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("error %q, want it to name the operation and say %q", msg, tt.wantMsg)
			}
			if tt.wantIs != nil && !errors.Is(got, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", got, tt.wantIs)
			}
			if IsPermanent(got) {
				t.Errorf("transport error %v is permanent, want retryable", got)
			}
		})
	}
	if RequestError("x", nil) != nil {
		t.Error("RequestError(nil) != nil")
	}
}

func TestRedact(t *testing.T) {
	got := Redact("a=s3 cr/t b=s3+cr%2Ft c=s3%20cr%2Ft d=s3 cr/t", "s3 cr/t", "")
	want := "a=<redacted> b=<redacted> c=<redacted> d=<redacted>"
	if got != want {
		t.Errorf("Redact = %q, want %q", got, want)
	}
}

func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		path    string
		want    string
		wantErr bool
	}{
		{"trailing newline is trimmed", write("a", "xoxb-123\n"), "xoxb-123", false},
		{"empty file is an error", write("b", " \n"), "", true},
		{"missing file is an error", filepath.Join(dir, "missing"), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadSecretFile(tt.path)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ReadSecretFile = %q, %v; want %q, err=%v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestLinkURL(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"https", "https://runbooks.example.com/iam#step-2", true},
		{"http", "http://wiki.internal/runbook", true},
		{"javascript", "javascript:alert(1)", false},
		{"relative", "/runbook", false},
		{"user info disguises host", "https://us-east-1%3C@evil.example/x", false},
		{"slack link syntax", "https://a.example/<x|y>", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := LinkURL(tt.in)
			if (got != "") != tt.ok || (tt.ok && got != tt.in) {
				t.Errorf("LinkURL(%q) = %q, want ok=%v", tt.in, got, tt.ok)
			}
		})
	}
}

func TestRedactBody(t *testing.T) {
	const hook = "https://hooks.slack.com/services/T0AAAA1111/B0BBBB2222/XyZsecretToken123abc"
	tests := []struct {
		name, body string
		secrets    []string
		want       string
	}{
		{"echoed path", "Cannot POST /services/T0AAAA1111/B0BBBB2222/XyZsecretToken123abc", []string{hook},
			"Cannot POST <redacted>"},
		{"echoed path of an unknown secret", `Cannot POST /hooks/abc`, nil, "Cannot POST /<redacted>"},
		{"JSON-escaped path", `{"error":"no route for \/hooks\/abc"}`, nil, `{"error":"no route for /<redacted>"}`},
		{"a path segment alone", "unknown team T0AAAA1111", []string{hook}, "unknown team <redacted>"},
		{"url in the body", "see https://api.example.com/v1/keys/abc?token=1 for details", nil,
			"see https://api.example.com/<redacted> for details"},
		{"query alone", "bad request ?routing_key=abc&x=1", nil, "bad request ?<redacted>"},
		{"token-like run", `{"message":"invalid routing key R0123456789abcdef0123456789abcd"}`, nil,
			`{"message":"invalid routing key <redacted>"}`},
		{"query value of a secret URL", "key sk_live_1 refused", []string{"https://x.example/hook?key=sk_live_1"},
			"key <redacted> refused"},
		{"words, codes and content types stay", "invalid_payload: unsupported application/json; retry at 2024-05-01T08:00:00Z", nil,
			"invalid_payload: unsupported application/json; retry at 2024-05-01T08:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RedactBody(tt.body, tt.secrets...); got != tt.want {
				t.Errorf("RedactBody(%q) =\n %q, want\n %q", tt.body, got, tt.want)
			}
		})
	}
}

// TestStatusErrorQuotesNoPartOfTheURL is the adversarial case: an endpoint
// that answers 404 quoting the path it was asked for, which holds the
// webhook's secret, with the secret straddling the quoted length.
func TestStatusErrorQuotesNoPartOfTheURL(t *testing.T) {
	const secretURL = "https://hooks.example.com/hooks/T0AAAA1111/B0BBBB2222/XyZsecretToken123abc"
	for _, pad := range []int{0, 200, 230, 250} {
		body := strings.Repeat("x", pad) + " Cannot POST /hooks/T0AAAA1111/B0BBBB2222/XyZsecretToken123abc"
		err := StatusError("post", 404, nil, []byte(body), time.Now(), secretURL)
		for _, part := range []string{"hooks/T0", "T0AAAA1111", "B0BBBB2222", "XyZsecret", "Token123abc"} {
			if strings.Contains(err.Error(), part) {
				t.Errorf("pad %d: error %q quotes %q", pad, err, part)
			}
		}
	}
}

// FuzzRedactBody checks that no secret survives RedactBody whatever
// surrounds it, in any of its escaped forms.
func FuzzRedactBody(f *testing.F) {
	f.Add("Cannot POST %s", "https://hooks.example.com/hooks/T0AAAA1111/B0BBBB2222/XyZsecret")
	f.Add(`{"e":"%s"}`, "xoxb-1234-5678-abcdef")
	f.Fuzz(func(t *testing.T, format, secret string) {
		if len(secret) < 8 || strings.Count(format, "%s") != 1 || strings.Contains(format, "%!") {
			return
		}
		body := strings.Replace(format, "%s", secret, 1)
		got := RedactBody(body, secret)
		if strings.Contains(got, secret) {
			t.Fatalf("RedactBody(%q, %q) = %q keeps the secret", body, secret, got)
		}
	})
}
