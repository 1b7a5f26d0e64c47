package slack

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	slackgo "github.com/slack-go/slack"

	"github.com/trailwatch/trailwatch/notifiers"
)

// Slack's documented size limits, in characters. Text is cut to fit with an
// ellipsis rather than letting Slack reject the whole message.
const (
	maxHeaderText  = 150
	maxSectionText = 3000
	maxFieldText   = 2000
	maxFields      = 10
	maxContextElts = 10
	maxBlocks      = 50
	maxMessageText = 40000
	maxButtonText  = 75
	maxButtonURL   = 3000

	// maxSamples bounds the sample events listed for an aggregated alert.
	maxSamples = 10

	// maxFallbackText keeps the notification text short; Slack allows
	// maxMessageText but a notification shows only the first line or so.
	maxFallbackText = 1000
)

const ellipsis = "…"

// timeLayout renders times in messages, always in UTC.
const timeLayout = "2006-01-02 15:04:05 UTC"

// severityIcons gives each severity a glyph so the header is scannable.
var severityIcons = map[string]string{
	"critical": "🔴",
	"high":     "🟠",
	"medium":   "🟡",
	"low":      "🔵",
	"info":     "⚪",
}

// payload is the JSON body sent to an incoming webhook. mrkdwn and parse
// are set so that Slack treats the fallback text literally too.
type payload struct {
	Text        string         `json:"text"`
	Blocks      slackgo.Blocks `json:"blocks"`
	Mrkdwn      bool           `json:"mrkdwn"`
	Parse       string         `json:"parse"`
	UnfurlLinks bool           `json:"unfurl_links"`
	UnfurlMedia bool           `json:"unfurl_media"`
}

// buildMessage renders a as a plain-text fallback and Block Kit blocks.
//
// Every string from the event goes into a plain_text object (so *bold*,
// _italic_, `code` and ~strike~ stay literal), with &, < and > escaped (so
// <!channel>, <@U123> and <url|text> stay literal), line breaks made visible
// in single-line values (so a value cannot forge the next label), and is
// cut to Slack's limits.
func buildMessage(a notifiers.Alert) (string, []slackgo.Block) {
	sev := strings.ToLower(strings.TrimSpace(a.Severity))
	if sev == "" {
		sev = "unknown"
	}
	icon, ok := severityIcons[sev]
	if !ok {
		icon = "⚠️"
	}
	test := ""
	if a.Test {
		test = "[TEST] "
	}
	title := oneLine(a.Title)
	if title == "" {
		title = a.RuleID
	}

	header := fmt.Sprintf("%s %s%s: %s", icon, test, strings.ToUpper(sev), title)
	summary := a.Summary
	if strings.TrimSpace(summary) == "" {
		summary = title
	}
	fallback := fmt.Sprintf("%s%s: %s: %s", test, strings.ToUpper(sev), title, oneLine(summary))

	blocks := []slackgo.Block{
		slackgo.NewHeaderBlock(plain(header, maxHeaderText)),
		slackgo.NewSectionBlock(plain(summary, maxSectionText), nil, nil),
	}

	outcome := "success"
	if a.ErrorCode != "" {
		outcome = a.ErrorCode
	}
	facts := []struct{ label, value string }{
		{"Who", a.Principal},
		{"User", a.UserName},
		{"Access key", a.AccessKeyID},
		{"Event", a.EventName},
		{"Service", a.EventSource},
		{"Outcome", outcome},
		{"Account", a.AccountID},
		{"Region", a.AWSRegion},
		{"Source IP", a.SourceIP},
		{"When", formatTime(a)},
	}
	var fields []*slackgo.TextBlockObject
	for _, f := range facts {
		// Who, Event, Outcome and When are always shown, even if empty, so
		// that their absence is visible; the rest only when present.
		if f.value == "" && f.label != "Who" && f.label != "Event" && f.label != "When" {
			continue
		}
		if len(fields) == maxFields {
			break
		}
		fields = append(fields, labelled(f.label, f.value, maxFieldText))
	}
	blocks = append(blocks, slackgo.NewSectionBlock(nil, fields, nil))

	if a.UserAgent != "" {
		blocks = append(blocks, slackgo.NewSectionBlock(labelled("User agent", a.UserAgent, maxSectionText), nil, nil))
	}
	if a.ErrorMessage != "" {
		blocks = append(blocks, slackgo.NewSectionBlock(labelled("Error message", a.ErrorMessage, maxSectionText), nil, nil))
	}
	if len(a.Samples) > 0 {
		lines := []string{"Sample events"}
		for i, e := range a.Samples {
			if i == maxSamples {
				lines = append(lines, fmt.Sprintf("and %d more", len(a.Samples)-maxSamples))
				break
			}
			when := ""
			if !e.EventTime.IsZero() {
				when = e.EventTime.UTC().Format(timeLayout)
			}
			parts := []string{when, e.EventName, e.Principal, e.SourceIP, e.ErrorCode}
			lines = append(lines, oneLine(strings.Join(slices.DeleteFunc(parts, func(p string) bool { return p == "" }), "  ")))
		}
		blocks = append(blocks, slackgo.NewSectionBlock(plain(strings.Join(lines, "\n"), maxSectionText), nil, nil))
	}
	if a.Description != "" {
		blocks = append(blocks, slackgo.NewSectionBlock(plain(a.Description, maxSectionText), nil, nil))
	}

	var context []slackgo.MixedElement
	context = append(context, plain("Rule: "+oneLine(a.RuleID), maxSectionText))
	if a.EventID != "" {
		context = append(context, plain("Event ID: "+oneLine(a.EventID), maxSectionText))
	}
	if a.Count > 1 {
		c := strconv.Itoa(a.Count) + " matching events"
		if a.Suppressed > 0 {
			c += " (" + strconv.Itoa(a.Suppressed) + " repeats held back)"
		}
		if !a.FirstTime.IsZero() && !a.LastTime.IsZero() {
			c += ", " + a.FirstTime.UTC().Format(timeLayout) + " to " + a.LastTime.UTC().Format(timeLayout)
		}
		context = append(context, plain(c, maxSectionText))
	}
	if len(a.Group) > 0 {
		context = append(context, plain("Group: "+oneLine(strings.Join(a.Group, ", ")), maxSectionText))
	}
	if len(a.Tags) > 0 {
		context = append(context, plain("Tags: "+oneLine(strings.Join(a.Tags, ", ")), maxSectionText))
	}
	blocks = append(blocks, slackgo.NewContextBlock("", context[:min(len(context), maxContextElts)]...))

	var buttons []slackgo.BlockElement
	if u := notifiers.LinkURL(a.ConsoleURL()); u != "" && len(u) <= maxButtonURL {
		buttons = append(buttons, slackgo.NewButtonBlockElement("cloudtrail_console", "", plain("View in CloudTrail", maxButtonText)).WithURL(u))
	}
	if u := runbookURL(a.Runbook); u != "" {
		buttons = append(buttons, slackgo.NewButtonBlockElement("runbook", "", plain("Runbook", maxButtonText)).WithURL(u))
	}
	if len(buttons) > 0 {
		blocks = append(blocks, slackgo.NewActionBlock("", buttons...))
	}

	if len(blocks) > maxBlocks {
		blocks = blocks[:maxBlocks]
	}
	return escapeTruncate(fallback, min(maxFallbackText, maxMessageText)), blocks
}

// formatTime renders the event time in UTC, or an empty string if unset.
func formatTime(a notifiers.Alert) string {
	if a.EventTime.IsZero() {
		return ""
	}
	return a.EventTime.UTC().Format(timeLayout)
}

// runbookURL returns the rule's runbook link if it is an absolute http(s)
// URL that fits in a button, and "" otherwise. The runbook comes from the
// rule (trusted configuration), never from the event.
func runbookURL(raw string) string {
	if len(raw) > maxButtonURL {
		return ""
	}
	return notifiers.LinkURL(raw)
}

// plain makes a plain_text object of s, escaped and cut to limit.
func plain(s string, limit int) *slackgo.TextBlockObject {
	t := escapeTruncate(s, limit)
	if strings.TrimSpace(t) == "" {
		// Slack rejects empty text objects.
		t = "-"
	}
	return slackgo.NewTextBlockObject(slackgo.PlainTextType, t, false, false)
}

// labelled makes a plain_text "Label" line followed by the value on one
// line, escaped and cut to limit.
func labelled(label, value string, limit int) *slackgo.TextBlockObject {
	v := oneLine(value)
	if strings.TrimSpace(v) == "" {
		v = "-"
	}
	prefix := label + "\n"
	return slackgo.NewTextBlockObject(slackgo.PlainTextType,
		prefix+escapeTruncate(v, limit-utf8.RuneCountInString(prefix)), false, false)
}

// oneLine makes line breaks and other control characters in s visible, so
// a single-line value stays on one line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\u2028' || r == '\u2029':
			return '⏎'
		case r == '\t':
			return ' '
		case unicode.IsControl(r):
			return '�'
		}
		return r
	}, s)
}

// escapeTruncate escapes &, < and > for Slack and cuts the result to at
// most limit characters, ending in an ellipsis when cut. An escape sequence
// is never split. Control characters other than newlines are replaced.
func escapeTruncate(s string, limit int) string {
	s = strings.ToValidUTF8(s, "�")
	var b strings.Builder
	n := 0
	budget := limit - utf8.RuneCountInString(ellipsis)
	for i, r := range s {
		var piece string
		switch {
		case r == '&':
			piece = "&amp;"
		case r == '<':
			piece = "&lt;"
		case r == '>':
			piece = "&gt;"
		case r == '\n':
			piece = "\n"
		case r == '\t':
			piece = " "
		case unicode.IsControl(r):
			piece = "�"
		default:
			piece = string(r)
		}
		w := utf8.RuneCountInString(piece)
		if n+w > budget {
			// Would the rest fit without an ellipsis?
			if n+escapedLen(s[i:]) <= limit {
				b.WriteString(escapeAll(s[i:]))
				return b.String()
			}
			b.WriteString(ellipsis)
			return b.String()
		}
		b.WriteString(piece)
		n += w
	}
	return b.String()
}

// escapedLen is the length in characters of escapeAll(s).
func escapedLen(s string) int {
	return utf8.RuneCountInString(escapeAll(s))
}

// escapeAll escapes s the way escapeTruncate does, without a limit.
func escapeAll(s string) string {
	return escapeTruncate(s, int(^uint(0)>>1))
}
