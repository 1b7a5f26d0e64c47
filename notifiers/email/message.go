package email

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	htmltemplate "html/template"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	texttemplate "text/template"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/trailwatch/trailwatch/notifiers"
)

// MaxSubjectRunes bounds the subject line; longer subjects are cut with an
// ellipsis.
const MaxSubjectRunes = 120

// maxEventBytes bounds the indented CloudTrail record shown in the body.
const maxEventBytes = 16 << 10

//go:embed templates/alert.txt.tmpl
var textSource string

//go:embed templates/alert.html.tmpl
var htmlSource string

// The templates are parsed on first use, not in every command's start-up.
var (
	textTmpl = sync.OnceValue(func() *texttemplate.Template {
		return texttemplate.Must(texttemplate.New("text").Parse(textSource))
	})
	htmlTmpl = sync.OnceValue(func() *htmltemplate.Template {
		return htmltemplate.Must(htmltemplate.New("html").Funcs(htmltemplate.FuncMap{
			"severityColor": severityColor,
		}).Parse(htmlSource))
	})
)

// message is one rendered alert, ready for any transport.
type message struct {
	From    string
	To      []string
	Subject string
	Text    string
	HTML    string
	Date    time.Time
	// MessageID and ThreadID are bare ids, without angle brackets.
	MessageID string
	ThreadID  string
	// Headers are extra X- headers, already single-line.
	Headers [][2]string
}

// field is one labelled fact in the body.
type field struct {
	Label, Value string
}

// view is what both templates see. Every string in it is single-line and
// free of control characters, except Description and Event, which keep
// their newlines.
type view struct {
	Subject     string
	Title       string
	Severity    string
	Summary     string
	Description string
	RuleID      string
	Test        bool
	Count       int
	Fields      []field
	ConsoleURL  string
	Runbook     string
	References  []string
	Tags        string
	Event       string
	DedupKey    string
}

// render builds the message for a. It never fails: a template error is a
// programming error caught by the tests, and a malformed event is shown as
// text.
func render(a *notifiers.Alert, from string, to []string, now time.Time) *message {
	v := newView(a)
	var text, html bytes.Buffer
	if err := textTmpl().Execute(&text, v); err != nil {
		panic("email: text template: " + err.Error())
	}
	if err := htmlTmpl().Execute(&html, v); err != nil {
		panic("email: html template: " + err.Error())
	}
	domain := "trailwatch.invalid"
	if addr, err := mail.ParseAddress(from); err == nil {
		// An internationalised domain would need encoding in a msg-id:
		// keep the placeholder then.
		if at := strings.LastIndexByte(addr.Address, '@'); at >= 0 && at < len(addr.Address)-1 &&
			toASCII(addr.Address[at+1:]) == addr.Address[at+1:] {
			domain = addr.Address[at+1:]
		}
	}
	key := a.DedupKey
	if key == "" {
		key = a.RuleID + "\x00" + a.EventID
	}
	m := &message{
		From:      from,
		To:        to,
		Subject:   v.Subject,
		Text:      text.String(),
		HTML:      html.String(),
		Date:      now,
		MessageID: a.DeliveryID()[:32] + "@" + domain,
		ThreadID:  hashID(key) + ".thread@" + domain,
	}
	if r := oneLine(a.RuleID); r != "" {
		m.Headers = append(m.Headers, [2]string{"X-Trailwatch-Rule", truncate(toASCII(r), 200)})
	}
	if s := oneLine(a.Severity); s != "" {
		m.Headers = append(m.Headers, [2]string{"X-Trailwatch-Severity", truncate(toASCII(s), 40)})
	}
	return m
}

func newView(a *notifiers.Alert) *view {
	v := &view{
		Title:       oneLine(a.Title),
		Severity:    strings.ToUpper(oneLine(a.Severity)),
		Summary:     oneLine(a.Summary),
		Description: multiLine(a.Description),
		RuleID:      oneLine(a.RuleID),
		Test:        a.Test,
		Count:       a.Count,
		ConsoleURL:  a.ConsoleURL(),
		Runbook:     oneLine(a.Runbook),
		DedupKey:    oneLine(a.DedupKey),
	}
	if v.Severity == "" {
		v.Severity = "ALERT"
	}
	if v.Title == "" {
		v.Title = v.RuleID
	}
	subject := "[trailwatch] "
	if a.Test {
		subject += "TEST "
	}
	subject += v.Severity + ": " + v.Title
	if a.Count > 1 {
		subject += " (" + strconv.Itoa(a.Count) + " events)"
	}
	v.Subject = truncate(subject, MaxSubjectRunes)

	who := oneLine(a.Principal)
	if u := oneLine(a.UserName); u != "" && !strings.Contains(who, u) {
		who = strings.TrimSpace(who + " (" + u + ")")
	}
	what := oneLine(a.EventName)
	if src := oneLine(a.EventSource); src != "" {
		what = strings.TrimSpace(what + " on " + src)
	}
	var where []string
	if acct := oneLine(a.AccountID); acct != "" {
		where = append(where, "account "+acct)
	}
	if r := oneLine(a.AWSRegion); r != "" {
		where = append(where, "region "+r)
	}
	when := ""
	if !a.EventTime.IsZero() {
		when = a.EventTime.UTC().Format(time.RFC3339)
	}
	outcome := "success"
	if a.ErrorCode != "" || a.ErrorMessage != "" {
		outcome = strings.TrimSpace(strings.Trim("failed: "+oneLine(a.ErrorCode)+": "+oneLine(a.ErrorMessage), ": "))
	}
	for _, f := range []field{
		{"Who", who},
		{"Access key", oneLine(a.AccessKeyID)},
		{"What", what},
		{"Where", strings.Join(where, ", ")},
		{"Source IP", oneLine(a.SourceIP)},
		{"When", when},
		{"How", oneLine(a.UserAgent)},
		{"Outcome", outcome},
		{"Event ID", oneLine(a.EventID)},
		{"Rule", v.RuleID},
	} {
		if f.Value != "" {
			v.Fields = append(v.Fields, f)
		}
	}
	for _, r := range a.References {
		if r = oneLine(r); r != "" {
			v.References = append(v.References, r)
		}
	}
	var tags []string
	for _, t := range a.Tags {
		if t = oneLine(t); t != "" {
			tags = append(tags, t)
		}
	}
	v.Tags = strings.Join(tags, ", ")
	v.Event = eventText(a.Event)
	return v
}

// eventText indents the raw record and cuts it at maxEventBytes.
func eventText(raw json.RawMessage) string {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		buf.Reset()
		buf.Write(raw)
	}
	s := buf.String()
	if len(s) > maxEventBytes {
		cut := maxEventBytes
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "\n… (record cut at " + strconv.Itoa(maxEventBytes) + " of " + strconv.Itoa(len(s)) + " bytes)"
	}
	return multiLine(s)
}

// hashID is a short, header-safe identifier derived from parts.
func hashID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// severityColor picks the HTML accent colour for a severity.
func severityColor(sev string) string {
	switch strings.ToLower(sev) {
	case "critical":
		return "#7b1fa2"
	case "high":
		return "#d32f2f"
	case "medium":
		return "#f57c00"
	case "low":
		return "#1976d2"
	}
	return "#616161"
}

// isUnsafe reports runes that must never reach a header or a one-line
// field: C0 and C1 controls, DEL, line and paragraph separators, and the
// bidirectional and zero-width formatting characters that can disguise text.
func isUnsafe(r rune) bool {
	return unicode.IsControl(r) || r == utf8.RuneError ||
		unicode.Is(unicode.Zl, r) || unicode.Is(unicode.Zp, r) || unicode.Is(unicode.Cf, r)
}

// hasControl reports whether s holds any rune isUnsafe rejects.
func hasControl(s string) bool {
	return strings.IndexFunc(s, isUnsafe) >= 0
}

// oneLine replaces unsafe runes with spaces, collapses runs of white space
// and trims, so s is fit for a header or a single line of text.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if isUnsafe(r) {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// multiLine keeps newlines and tabs but drops every other unsafe rune.
func multiLine(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return r
		}
		if isUnsafe(r) {
			return -1
		}
		return r
	}, s)
}

// toASCII replaces every rune outside printable ASCII with '?'.
func toASCII(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}

// truncate cuts s to at most n runes, ending with an ellipsis when cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	runes := []rune(s)
	return strings.TrimSpace(string(runes[:n-1])) + "…"
}
