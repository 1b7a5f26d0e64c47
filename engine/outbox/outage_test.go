package outbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack/slacktest"

	"github.com/trailwatch/trailwatch/engine/outbox"
	"github.com/trailwatch/trailwatch/internal/testservers"
	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/notifiers/email"
	"github.com/trailwatch/trailwatch/notifiers/slack"
)

// These tests put the real outbox in front of real integrations during an
// outage — Slack answering 500 and then 429 with Retry-After, a mail relay
// refusing connections — and check that every alert arrives once the
// server recovers, and none twice.

func outageAlert(i int) notifiers.Alert {
	return notifiers.Alert{
		RuleID: "aws-root-console-login", Title: "Root user console sign-in", Severity: "critical",
		Summary: fmt.Sprintf("Root console sign-in %d", i), DedupKey: fmt.Sprintf("outage-%d", i),
		EventID: fmt.Sprintf("event-%d", i), EventTime: time.Date(2024, 5, 1, 8, 0, i, 0, time.UTC),
		EventName: "ConsoleLogin", EventSource: "signin.amazonaws.com", AWSRegion: "us-east-1",
		AccountID: "111122223333", Principal: "arn:aws:iam::111122223333:root", SourceIP: "203.0.113.10",
		Count: 1, Event: json.RawMessage(`{"eventVersion":"1.08"}`),
	}
}

// drain runs the outbox until every queue is empty (or fails the test).
func drain(t *testing.T, ob *outbox.Outbox, targets map[string]notifiers.Notifier, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ob.Run(ctx, targets) }()
	defer func() { cancel(); <-done }()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		empty := true
		for name := range targets {
			empty = empty && ob.Depth(name) == 0
		}
		if empty {
			return
		}
		select {
		case <-deadline.C:
			entries, _ := ob.List(outbox.Pending)
			t.Fatalf("the outbox did not drain within %s; pending: %+v", within, entries)
		case <-tick.C:
		}
	}
}

func TestSlackOutage(t *testing.T) {
	var mu sync.Mutex
	answers := []int{500, 500, 429, 429}
	got := map[string]int{}
	srv := slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/services/", func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			defer mu.Unlock()
			if len(answers) > 0 {
				code := answers[0]
				answers = answers[1:]
				if code == 429 {
					w.Header().Set("Retry-After", "1")
				}
				w.WriteHeader(code)
				return
			}
			var msg struct {
				Text string `json:"text"`
			}
			json.Unmarshal(body, &msg)
			got[msg.Text]++
			io.WriteString(w, "ok")
		})
	})
	srv.Start()
	defer srv.Stop()

	n, err := slack.New(slack.Config{WebhookURL: "http://" + srv.ServerAddr + "/services/T000/B000/XXXX"})
	if err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.Open(filepath.Join(t.TempDir(), outbox.FileName), outbox.Options{InitialBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	const alerts = 5
	for i := range alerts {
		if _, err := ob.Enqueue(context.Background(), outbox.Item{Key: fmt.Sprint(i), Notifier: "secfeed", Alert: outageAlert(i)}); err != nil {
			t.Fatal(err)
		}
	}
	drain(t, ob, map[string]notifiers.Notifier{"secfeed": n}, 30*time.Second)

	mu.Lock()
	defer mu.Unlock()
	if len(got) != alerts {
		t.Fatalf("Slack received %d distinct alerts, want %d: %v", len(got), alerts, got)
	}
	for text, c := range got {
		if c != 1 {
			t.Errorf("alert %q delivered %d times", text, c)
		}
	}
	if len(answers) != 0 {
		t.Errorf("the outage answers were not all used: %v left", answers)
	}
}

func TestMailRelayOutage(t *testing.T) {
	port := testservers.FreePort(t)
	n, err := email.New(context.Background(), email.Config{
		SMTPHost: "127.0.0.1", SMTPPort: port, TLS: email.TLSNone,
		From: "trailwatch@example.com", To: []string{"secops@example.com"}, Timeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.Open(filepath.Join(t.TempDir(), outbox.FileName), outbox.Options{InitialBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	const alerts = 3
	for i := range alerts {
		if _, err := ob.Enqueue(context.Background(), outbox.Item{Key: fmt.Sprint(i), Notifier: "mail", Alert: outageAlert(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// The relay is down: deliveries fail and stay pending.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ob.Run(ctx, map[string]notifiers.Notifier{"mail": n}) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		entries, _ := ob.List(outbox.Pending)
		if len(entries) == alerts && entries[0].Attempts >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries did not fail and stay pending while the relay was down: %+v", entries)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	<-done

	// The relay comes back on the same port.
	mp := testservers.StartMailpit(t, testservers.MailpitOptions{SMTPPort: port})
	drain(t, ob, map[string]notifiers.Notifier{"mail": n}, 30*time.Second)

	resp, err := http.Get(mp.API + "/api/v1/messages")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Messages []struct {
			Subject string `json:"Subject"`
		} `json:"messages"`
		Total int `json:"total"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if list.Total != alerts {
		t.Errorf("Mailpit holds %d messages, want %d (every alert once)", list.Total, alerts)
	}
}
