package notifiers

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// DefaultRetryAfter is the wait suggested for a 429 response that carries no
// usable Retry-After header.
const DefaultRetryAfter = 30 * time.Second

// DefaultHTTPTimeout bounds one request made by the default HTTP client.
const DefaultHTTPTimeout = 30 * time.Second

// maxErrorBody is how much of a failed response's body an error quotes.
const maxErrorBody = 256

// readErrorBody is how much of a failed response's body is read to quote
// from it: more than is quoted, so that a secret straddling the cut is
// recognised (and redacted) whole.
const readErrorBody = 4096

// redacted replaces secrets wherever they would otherwise be shown.
const redacted = "<redacted>"

// DefaultHTTPClient returns the client integrations use when none is given:
// it gives up on a request after DefaultHTTPTimeout and does not follow
// redirects, so a secret-bearing POST is never replayed to another host and
// a 3xx answer is reported rather than silently turned into a GET.
func DefaultHTTPClient() *http.Client {
	return NoRedirects(&http.Client{Timeout: DefaultHTTPTimeout})
}

// NoRedirects returns a shallow copy of c (sharing its Transport) that does
// not follow redirects, leaving c itself untouched. A nil c yields
// DefaultHTTPClient().
func NoRedirects(c *http.Client) *http.Client {
	if c == nil {
		return DefaultHTTPClient()
	}
	cp := *c
	cp.CheckRedirect = func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}
	return &cp
}

// RedactURL keeps the scheme and host of u and hides the rest: webhook URLs
// carry their secret in the path or query. A URL that does not parse is
// hidden entirely.
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Scheme == "" || p.Host == "" {
		return redacted
	}
	if p.User != nil {
		// Credentials in the authority are secrets too.
		return p.Scheme + "://" + redacted + "@" + p.Host + "/" + redacted
	}
	out := p.Scheme + "://" + p.Host
	if (p.Path != "" && p.Path != "/") || p.RawQuery != "" || p.Fragment != "" {
		out += "/" + redacted
	}
	return out
}

// CheckURL reports whether raw is an absolute URL fit to receive a secret:
// https, or plain http to a loopback host (for tests and local relays). The
// error never quotes the URL.
func CheckURL(raw string) error {
	p, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URL")
	}
	if p.Host == "" {
		return errors.New("not an absolute URL")
	}
	switch p.Scheme {
	case "https":
		return nil
	case "http":
		host := p.Hostname()
		if host == "localhost" {
			return nil
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return nil
		}
		return errors.New("must use https (plain http is allowed only for loopback hosts)")
	default:
		return errors.New("must use https")
	}
}

// ReadSecretFile reads a secret (token, webhook URL, routing key) from path
// and trims surrounding white space, so files written by editors or secret
// mounts with a trailing newline work. The error names the file but never
// its content.
func ReadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("read secret file %s: file is empty", path)
	}
	return s, nil
}

// ParseRetryAfter parses a Retry-After header value, either delay-seconds or
// an HTTP date, relative to now, capped at MaxRetryAfter. A date in the
// past yields zero. It reports false when the value is absent or malformed.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		const maxSecs = int64(MaxRetryAfter / time.Second)
		return time.Duration(min(secs, maxSecs)) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), MaxRetryAfter), true
}

// StatusError classifies an HTTP status for a delivery named by op:
//
//   - 2xx: nil, delivered;
//   - 429: a *RetryAfterError with the delay from header's Retry-After
//     (seconds or HTTP date, relative to now), DefaultRetryAfter if absent;
//   - 408 and 5xx: a plain, retryable error;
//   - anything else (other 4xx, 3xx, 1xx): a Permanent error.
//
// body, if given, is quoted to help the operator: shortened, with every
// secret and whatever looks like one replaced (see RedactBody), since an
// endpoint may echo the request's URL ("Cannot POST /hooks/T0/B0/XyZ").
func StatusError(op string, code int, header http.Header, body []byte, now time.Time, secrets ...string) error {
	if code >= 200 && code <= 299 {
		return nil
	}
	msg := fmt.Sprintf("%s: unexpected HTTP status %d %s", op, code, http.StatusText(code))
	if snippet := bodySnippet(body, secrets); snippet != "" {
		msg += ": " + snippet
	}
	err := &sanitizedError{msg: Redact(msg, secrets...)}
	switch {
	case code == http.StatusTooManyRequests:
		after, ok := ParseRetryAfter(header.Get("Retry-After"), now)
		if !ok {
			after = DefaultRetryAfter
		}
		return &RetryAfterError{Err: err, After: after}
	case code == http.StatusRequestTimeout, code >= 500 && code <= 599:
		return err
	default:
		return Permanent(err)
	}
}

// CheckResponse classifies resp with StatusError, quoting up to a few
// hundred bytes of its body. It reads from but does not close resp.Body.
// A nil now means time.Now.
func CheckResponse(op string, resp *http.Response, now func() time.Time, secrets ...string) error {
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, readErrorBody))
	return StatusError(op, resp.StatusCode, resp.Header, body, now(), secrets...)
}

// RequestError wraps a failure to send a request (dial, TLS, timeout,
// cancelled context) for the delivery named by op. It drops the URL that
// net/http puts in *url.Error and replaces every secret in the message, yet
// still unwraps to the underlying cause (context.DeadlineExceeded, a
// *net.OpError, ...). The result is retryable. A nil err stays nil.
func RequestError(op string, err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	cause := err
	var ue *url.Error
	if errors.As(err, &ue) {
		cause = ue.Err
	}
	return &sanitizedError{
		msg: Redact(fmt.Sprintf("%s: %v", op, stripURLErrors(cause)), secrets...),
		err: cause,
	}
}

// Redact replaces every non-empty secret in s, and every query-escaped or
// path-escaped form of it, with a marker. A secret that is a URL is also
// replaced piecewise — its path, query, query values, long path segments
// and password — since a server may quote any of them alone.
func Redact(s string, secrets ...string) string {
	for _, form := range secretForms(secrets) {
		s = strings.ReplaceAll(s, form, redacted)
	}
	return s
}

// secretForms lists what to replace for secrets, longest first so that a
// whole secret goes before its parts.
func secretForms(secrets []string) []string {
	var forms []string
	add := func(v string, min int) {
		if len(v) < min {
			return
		}
		forms = append(forms, v, url.QueryEscape(v), url.PathEscape(v))
	}
	for _, sec := range secrets {
		add(sec, 1)
		u, err := url.Parse(sec)
		if err != nil || u.Host == "" {
			continue
		}
		if u.Path != "" && u.Path != "/" {
			add(u.Path, 2)
			add(u.EscapedPath(), 2)
			add(strings.Trim(u.Path, "/"), 2)
			for _, seg := range strings.Split(u.Path, "/") {
				add(seg, minSecretSegment)
			}
		}
		add(u.RawQuery, 1)
		for _, vs := range u.Query() {
			for _, v := range vs {
				add(v, 4)
			}
		}
		if pw, ok := u.User.Password(); ok {
			add(pw, 1)
		}
		add(u.User.Username(), 4)
	}
	slices.SortStableFunc(forms, func(a, b string) int { return len(b) - len(a) })
	return slices.Compact(forms)
}

// minSecretSegment is the shortest path segment of a secret URL replaced
// on its own: shorter ones ("api", "v2", "hooks") are words, not secrets.
const minSecretSegment = 8

var (
	// bodyURL is a URL in a quoted body; it keeps its scheme and host.
	bodyURL = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>\\]+`) })
	// bodyPath is an absolute path (possibly JSON-escaped, \/) that does not
	// continue a word, as in "Cannot POST /hooks/T0/B0/XyZ".
	bodyPath = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(^|[^A-Za-z0-9_.~%<>:/\\-])((?:\\?/)+[^\s"'<>]+)`) })
	// bodyQuery is a query string.
	bodyQuery = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\?[^\s"'<>]+`) })
	// bodyToken is a run of token characters; one of 16 or more with both
	// letters and digits is taken for a token or key.
	bodyToken = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[A-Za-z0-9_+/=~.%\\-]{16,}`) })
)

// RedactBody replaces, in text a server sent back (an error body, an
// error code), what may be a secret: the given secrets and their parts (as
// Redact does), then every URL's path and query (RedactURL), every
// absolute path and query string, and every run of 16 or more token
// characters that mixes letters and digits (API keys, routing keys,
// webhook tokens). Words, codes and messages stay readable.
func RedactBody(s string, secrets ...string) string {
	s = Redact(s, secrets...)
	s = bodyURL().ReplaceAllStringFunc(s, RedactURL)
	s = replaceGroup(bodyPath(), s, 2, "/"+redacted)
	s = bodyQuery().ReplaceAllString(s, "?"+redacted)
	return bodyToken().ReplaceAllStringFunc(s, func(tok string) string {
		if strings.ContainsAny(tok, "0123456789") && strings.IndexFunc(tok, unicode.IsLetter) >= 0 &&
			!strings.Contains(tok, redacted) {
			return redacted
		}
		return tok
	})
}

// replaceGroup replaces submatch group g of every match of re in s.
func replaceGroup(re *regexp.Regexp, s string, g int, with string) string {
	idx := re.FindAllStringSubmatchIndex(s, -1)
	if idx == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, m := range idx {
		lo, hi := m[2*g], m[2*g+1]
		if strings.HasPrefix(s[lo:hi], "/"+redacted) || strings.HasPrefix(s[lo:hi], "/"+url.PathEscape(redacted)) {
			continue // already redacted (a URL's path)
		}
		b.WriteString(s[last:lo])
		b.WriteString(with)
		last = hi
	}
	b.WriteString(s[last:])
	return b.String()
}

// stripURLErrors renders err with the URL of any nested *url.Error removed.
func stripURLErrors(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + " " + RedactURL(ue.URL) + ": " + stripURLErrors(ue.Err)
	}
	return err.Error()
}

// sanitizedError is an error whose message was built without secrets but
// which still unwraps to its cause.
type sanitizedError struct {
	msg string
	err error
}

func (e *sanitizedError) Error() string { return e.msg }
func (e *sanitizedError) Unwrap() error { return e.err }

// bodySnippet makes a short, single-line, printable quote of a response
// body, with secrets and what looks like them redacted (RedactBody) before
// it is shortened, so that no part of a secret survives the cut.
func bodySnippet(body []byte, secrets []string) string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(body), ""))
	if s == "" {
		return ""
	}
	s = RedactBody(s, secrets...)
	truncated := false
	if len(s) > maxErrorBody {
		cut := maxErrorBody
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
		truncated = true
	}
	s = strconv.Quote(s)
	if truncated {
		s += "…"
	}
	return s
}

// LinkURL returns raw if it is fit to be shown as a link: an absolute http
// or https URL with a host and no user information (which could disguise
// the real host, as in https://aws.amazon.com@evil.example/). Otherwise it
// returns "".
func LinkURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return ""
	}
	if strings.ContainsAny(raw, " <>|\"\\\x00\r\n\t") {
		return ""
	}
	return raw
}
