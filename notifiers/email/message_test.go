package email

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/trailwatch/trailwatch/notifiers"

	"github.com/trailwatch/trailwatch/internal/corpus"
)

func TestRenderGolden(t *testing.T) {
	tests := []struct {
		name  string
		alert func(*testing.T) notifiers.Alert
	}{
		{"alert", sampleAlert},
		{"hostile", hostileAlert},
		{"test-threshold", func(t *testing.T) notifiers.Alert {
			a := sampleAlert(t)
			a.Test = true
			a.Count = 7
			a.ErrorMessage = "Failed authentication"
			a.Event = nil
			return a
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.alert(t)
			m := render(&a, "Trailwatch <trailwatch@example.com>", []string{"secops@example.com"}, fixedNow)
			golden(t, tt.name+".golden.txt", m.Text)
			golden(t, tt.name+".golden.html", m.HTML)
			golden(t, tt.name+".golden.subject", m.Subject+"\n")
		})
	}
}

func TestRenderEscapesHostileFields(t *testing.T) {
	a := hostileAlert(t)
	m := render(&a, "trailwatch@example.com", []string{"secops@example.com"}, fixedNow)

	for _, bad := range []string{"<script", "<img", "<b>mallory", "<i>x", `href="javascript:`, "\u202e", "<a href=\"javascript"} {
		if strings.Contains(m.HTML, bad) {
			t.Errorf("HTML part holds %q unescaped", bad)
		}
	}
	for _, want := range []string{"&lt;script&gt;", "&lt;b&gt;mallory&lt;/b&gt;"} {
		if !strings.Contains(m.HTML, want) {
			t.Errorf("HTML part lacks the escaped form %q", want)
		}
	}
	if strings.ContainsAny(m.Subject, "\r\n") || hasControl(m.Subject) {
		t.Errorf("subject %q holds control characters", m.Subject)
	}
	for _, h := range m.Headers {
		if hasControl(h[0]) || hasControl(h[1]) {
			t.Errorf("header %q: %q holds control characters", h[0], h[1])
		}
	}
	for line := range strings.SplitSeq(m.Text, "\n") {
		if strings.HasPrefix(line, "Subject:") || strings.HasPrefix(line, "Bcc:") || strings.HasPrefix(line, "X-Injected:") {
			t.Errorf("text part starts a line with an event-supplied header: %q", line)
		}
	}
}

func TestSubject(t *testing.T) {
	tests := []struct {
		name  string
		alert notifiers.Alert
		want  string
	}{
		{"plain", notifiers.Alert{Severity: "high", Title: "Root login"}, "[trailwatch] HIGH: Root login"},
		{"no severity", notifiers.Alert{Title: "Root login"}, "[trailwatch] ALERT: Root login"},
		{"title falls back to rule id", notifiers.Alert{Severity: "low", RuleID: "r1"}, "[trailwatch] LOW: r1"},
		{"test alert", notifiers.Alert{Severity: "low", Title: "x", Test: true}, "[trailwatch] TEST LOW: x"},
		{"count", notifiers.Alert{Severity: "low", Title: "x", Count: 3}, "[trailwatch] LOW: x (3 events)"},
		{"CR LF folded", notifiers.Alert{Severity: "high", Title: "a\r\nBcc: x@evil.example"}, "[trailwatch] HIGH: a Bcc: x@evil.example"},
		{"controls and bidi removed", notifiers.Alert{Severity: "hi\x00gh", Title: "a\u202eb\tc\u2028d"}, "[trailwatch] HI GH: a b c d"},
		{"long title trimmed", notifiers.Alert{Severity: "low", Title: strings.Repeat("é", 300)},
			"[trailwatch] LOW: " + strings.Repeat("é", MaxSubjectRunes-len("[trailwatch] LOW: ")-1) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := render(&tt.alert, "a@example.com", nil, fixedNow).Subject
			if got != tt.want {
				t.Errorf("subject = %q, want %q", got, tt.want)
			}
			if n := utf8.RuneCountInString(got); n > MaxSubjectRunes {
				t.Errorf("subject has %d runes, want at most %d", n, MaxSubjectRunes)
			}
		})
	}
}

func TestMessageIDs(t *testing.T) {
	a := sampleAlert(t)
	first := render(&a, "Trailwatch <tw@example.com>", nil, fixedNow)
	again := render(&a, "Trailwatch <tw@example.com>", nil, fixedNow.Add(time.Hour))
	b := a
	b.EventID = "another-event"
	next := render(&b, "Trailwatch <tw@example.com>", nil, fixedNow)

	if first.MessageID != again.MessageID {
		t.Errorf("a retried alert got a new Message-ID: %q then %q", first.MessageID, again.MessageID)
	}
	if first.MessageID == next.MessageID {
		t.Errorf("two events share Message-ID %q", first.MessageID)
	}
	if first.ThreadID != next.ThreadID {
		t.Errorf("two alerts with one dedup key are in different threads: %q and %q", first.ThreadID, next.ThreadID)
	}
	if !strings.HasSuffix(first.MessageID, "@example.com") {
		t.Errorf("Message-ID %q does not use the sender's domain", first.MessageID)
	}
}

func TestEventTextCut(t *testing.T) {
	big := `{"requestParameters":{"policy":"` + strings.Repeat("é", maxEventBytes) + `"}}`
	got := eventText(json.RawMessage(big))
	if !utf8.ValidString(got) {
		t.Error("cut record is not valid UTF-8")
	}
	if !strings.Contains(got, "record cut at") {
		t.Error("cut record does not say it was cut")
	}
	if len(got) > maxEventBytes+100 {
		t.Errorf("cut record is %d bytes, want about %d", len(got), maxEventBytes)
	}
}

// TestRenderCorpus renders an alert for every real CloudTrail record in the
// shared corpus and checks that each part is well formed.
func TestRenderCorpus(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(corpus.Dir(), "*.jsonl"))
	if len(files) == 0 {
		t.Skip("no CloudTrail corpus at ../../../shared/corpus: skipping the corpus render test")
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			n := 0
			for sc.Scan() {
				var rec struct {
					EventID, EventName, EventSource, AWSRegion, SourceIPAddress, UserAgent, ErrorCode, ErrorMessage string
					UserIdentity                                                                                    struct{ Arn, UserName string }
				}
				raw := append([]byte(nil), sc.Bytes()...)
				if err := json.Unmarshal(raw, &rec); err != nil {
					t.Fatalf("record %d: %v", n, err)
				}
				a := notifiers.Alert{
					RuleID: "corpus", Title: rec.EventName, Severity: "info", EventID: rec.EventID,
					EventName: rec.EventName, EventSource: rec.EventSource, AWSRegion: rec.AWSRegion,
					SourceIP: rec.SourceIPAddress, UserAgent: rec.UserAgent, Principal: rec.UserIdentity.Arn,
					UserName: rec.UserIdentity.UserName, ErrorCode: rec.ErrorCode, ErrorMessage: rec.ErrorMessage,
					Event: raw,
				}
				m := render(&a, "tw@example.com", []string{"secops@example.com"}, fixedNow)
				if hasControl(m.Subject) || !utf8.ValidString(m.Text) || !utf8.ValidString(m.HTML) {
					t.Fatalf("record %d (%s): malformed message", n, rec.EventID)
				}
				if !strings.Contains(m.HTML, "</html>") {
					t.Fatalf("record %d (%s): HTML part is incomplete", n, rec.EventID)
				}
				n++
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
