package email

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/internal/testservers"
	"github.com/trailwatch/trailwatch/notifiers"
)

const testPassword = "hunter2-s3cret-Pa55"

func TestSMTPMailpit(t *testing.T) {
	c := makeCerts(t)
	plain := testservers.StartMailpit(t, testservers.MailpitOptions{})
	starttls := testservers.StartMailpit(t, testservers.MailpitOptions{TLSCert: c.CertFile, TLSKey: c.KeyFile})
	implicit := testservers.StartMailpit(t, testservers.MailpitOptions{})
	implicitPort := tlsProxy(t, c.Leaf, fmt.Sprintf("%s:%d", implicit.SMTPHost, implicit.SMTPPort))

	tests := []struct {
		name string
		mp   *testservers.Mailpit
		port int
		cfg  Config
	}{
		{"plain", plain, plain.SMTPPort, Config{TLS: TLSNone}},
		{"plain with auth on loopback", plain, plain.SMTPPort, Config{TLS: TLSNone, Username: "trailwatch", Password: testPassword}},
		{"starttls with CA file and auth", starttls, starttls.SMTPPort,
			Config{TLS: TLSStartTLS, TLSCAFile: c.CAFile, Username: "trailwatch", Password: testPassword, AuthMechanism: "login"}},
		{"starttls without verification", starttls, starttls.SMTPPort, Config{TLSInsecureSkipVerify: true}},
		{"implicit tls with auth", implicit, implicitPort,
			Config{TLS: TLSImplicit, TLSCAFile: c.CAFile, Username: "trailwatch", Password: testPassword}},
	}
	sent := map[*testservers.Mailpit]int{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.SMTPHost = tt.mp.SMTPHost
			cfg.SMTPPort = tt.port
			cfg.From = "Trailwatch <trailwatch@example.com>"
			cfg.To = []string{"secops@example.com", "oncall@example.com"}
			n, err := New(testContext(t), cfg, WithClock(func() time.Time { return fixedNow }))
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			a := sampleAlert(t)
			a.EventID = tt.name // a distinct Message-ID per case
			if err := n.Notify(testContext(t), a); err != nil {
				t.Fatalf("Notify: %v", err)
			}
			sent[tt.mp]++
			ids := waitMessages(t, tt.mp.API, sent[tt.mp])
			got, headers := getMessage(t, tt.mp.API, ids[0])

			if want := "[trailwatch] HIGH: Root account console login"; got.Subject != want {
				t.Errorf("subject = %q, want %q", got.Subject, want)
			}
			if got.From.Address != "trailwatch@example.com" {
				t.Errorf("from = %q, want trailwatch@example.com", got.From.Address)
			}
			if len(got.To) != 2 {
				t.Errorf("to = %v, want two recipients", got.To)
			}
			wantID := render(&a, cfg.From, cfg.To, fixedNow).MessageID
			if got.MessageID != wantID {
				t.Errorf("Message-ID = %q, want %q", got.MessageID, wantID)
			}
			if !strings.Contains(got.Text, "Who:        arn:aws:iam::111122223333:root") {
				t.Errorf("text part lacks the principal:\n%s", got.Text)
			}
			if !strings.Contains(got.HTML, "Open in the CloudTrail console") {
				t.Errorf("HTML part lacks the console link:\n%s", got.HTML)
			}
			if h := headers["X-Trailwatch-Rule"]; len(h) != 1 || h[0] != "aws-root-console-login" {
				t.Errorf("X-Trailwatch-Rule = %q, want aws-root-console-login", h)
			}
			if h := headers["References"]; len(h) != 1 || !strings.HasSuffix(h[0], ".thread@example.com>") {
				t.Errorf("References = %q, want the thread id", h)
			}
		})
	}
}

func TestSMTPHostileFieldsStayInTheBody(t *testing.T) {
	mp := testservers.StartMailpit(t, testservers.MailpitOptions{})
	n, err := New(testContext(t), Config{
		SMTPHost: mp.SMTPHost, SMTPPort: mp.SMTPPort, TLS: TLSNone,
		From: "trailwatch@example.com", To: []string{"secops@example.com"},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := n.Notify(testContext(t), hostileAlert(t)); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	ids := waitMessages(t, mp.API, 1)
	got, headers := getMessage(t, mp.API, ids[0])

	for _, name := range []string{"X-Injected", "Bcc", "Subject "} {
		if h, ok := headers[name]; ok {
			t.Errorf("event data injected a %s header: %q", name, h)
		}
	}
	if len(headers["Subject"]) != 1 {
		t.Errorf("Subject headers = %q, want exactly one", headers["Subject"])
	}
	if len(got.Bcc) != 0 || len(got.To) != 1 {
		t.Errorf("recipients changed by event data: to %v, bcc %v", got.To, got.Bcc)
	}
	if strings.Contains(got.HTML, "<script") || strings.Contains(got.HTML, "<img") {
		t.Errorf("HTML part holds event markup unescaped:\n%s", got.HTML)
	}
	if !strings.Contains(got.HTML, "&lt;script&gt;") {
		t.Errorf("HTML part lacks the escaped script tag:\n%s", got.HTML)
	}
}

func TestSMTPErrors(t *testing.T) {
	refused := testservers.FreePort(t) // nothing listens here
	tests := []struct {
		name      string
		server    *fakeSMTP
		host      string
		port      int
		cfg       Config
		permanent bool
	}{
		{name: "connection refused", host: "127.0.0.1", port: refused, permanent: false},
		{name: "421 greeting", server: &fakeSMTP{Greeting: "421 4.3.2 try later"}, permanent: false},
		{name: "554 greeting", server: &fakeSMTP{Greeting: "554 5.7.1 go away"}, permanent: true},
		{name: "auth refused", server: &fakeSMTP{Replies: map[string]string{"AUTH": "535 5.7.8 bad credentials"}},
			cfg: Config{Username: "tw", Password: testPassword}, permanent: true},
		{name: "auth temporarily unavailable", server: &fakeSMTP{Replies: map[string]string{"AUTH": "454 4.7.0 try later"}},
			cfg: Config{Username: "tw", Password: testPassword}, permanent: false},
		{name: "auth unsupported", server: &fakeSMTP{Replies: map[string]string{"EHLO": "250 fake.test"}},
			cfg: Config{Username: "tw", Password: testPassword}, permanent: true},
		{name: "mailbox unavailable", server: &fakeSMTP{Replies: map[string]string{"RCPT": "550 5.1.1 no such user"}}, permanent: true},
		{name: "mailbox busy", server: &fakeSMTP{Replies: map[string]string{"RCPT": "452 4.2.2 mailbox full"}}, permanent: false},
		{name: "sender refused", server: &fakeSMTP{Replies: map[string]string{"MAIL": "553 5.7.1 sender not allowed"}}, permanent: true},
		{name: "data rejected", server: &fakeSMTP{Replies: map[string]string{".": "554 5.6.0 spam"}}, permanent: true},
		{name: "data deferred", server: &fakeSMTP{Replies: map[string]string{".": "451 4.3.0 local error"}}, permanent: false},
		{name: "starttls not offered", server: &fakeSMTP{}, cfg: Config{TLS: TLSStartTLS}, permanent: true},
		{name: "password over clear text to a remote relay", server: &fakeSMTP{}, host: "127.0.0.2",
			cfg: Config{Username: "tw", Password: testPassword}, permanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if cfg.TLS == "" {
				cfg.TLS = TLSNone
			}
			cfg.SMTPHost, cfg.SMTPPort = tt.host, tt.port
			if tt.server != nil {
				host := tt.host
				if host == "" {
					host = "127.0.0.1"
				}
				cfg.SMTPHost, cfg.SMTPPort = tt.server.start(t, host)
			}
			cfg.From, cfg.To = "tw@example.com", []string{"secops@example.com"}
			var logs bytes.Buffer
			n, err := New(testContext(t), cfg, WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			err = n.Notify(testContext(t), sampleAlert(t))
			if err == nil {
				t.Fatal("Notify succeeded, want an error")
			}
			t.Logf("error: %v", err)
			if got := notifiers.IsPermanent(err); got != tt.permanent {
				t.Errorf("IsPermanent = %v, want %v (error: %v)", got, tt.permanent, err)
			}
			if strings.Contains(err.Error(), testPassword) || strings.Contains(logs.String(), testPassword) {
				t.Errorf("the password leaked into the error or the logs: %v\n%s", err, logs.String())
			}
		})
	}
}

func TestSMTPSecretEchoedByServerIsRedacted(t *testing.T) {
	srv := &fakeSMTP{Replies: map[string]string{"AUTH": "535 5.7.8 bad password " + testPassword}}
	host, port := srv.start(t, "127.0.0.1")
	n, err := New(testContext(t), Config{
		SMTPHost: host, SMTPPort: port, TLS: TLSNone, Username: "tw", Password: testPassword,
		From: "tw@example.com", To: []string{"secops@example.com"},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	err = n.Notify(testContext(t), sampleAlert(t))
	if err == nil {
		t.Fatal("Notify succeeded, want an error")
	}
	if strings.Contains(err.Error(), testPassword) {
		t.Errorf("error holds the password: %v", err)
	}
	if !strings.Contains(err.Error(), "<redacted>") || !notifiers.IsPermanent(err) {
		t.Errorf("error = %v (permanent %v), want a redacted permanent error", err, notifiers.IsPermanent(err))
	}
}

func TestSMTPContextCancelled(t *testing.T) {
	// A server that greets and then says nothing: only ctx can end the wait.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	n, err := New(testContext(t), Config{
		SMTPHost: "127.0.0.1", SMTPPort: l.Addr().(*net.TCPAddr).Port, TLS: TLSNone,
		From: "tw@example.com", To: []string{"secops@example.com"},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(testContext(t))
	go func() {
		c := <-accepted
		defer c.Close()
		cancel()
	}()
	err = n.Notify(ctx, sampleAlert(t))
	if err == nil {
		t.Fatal("Notify succeeded, want an error")
	}
	if notifiers.IsPermanent(err) {
		t.Errorf("a cancelled delivery is permanent: %v", err)
	}
}

func TestSMTPUntrustedCertificateIsPermanent(t *testing.T) {
	c := makeCerts(t)
	mp := testservers.StartMailpit(t, testservers.MailpitOptions{TLSCert: c.CertFile, TLSKey: c.KeyFile})
	n, err := New(testContext(t), Config{
		SMTPHost: mp.SMTPHost, SMTPPort: mp.SMTPPort, TLS: TLSStartTLS, // system roots only
		From: "tw@example.com", To: []string{"secops@example.com"},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	err = n.Notify(testContext(t), sampleAlert(t))
	if err == nil || !notifiers.IsPermanent(err) {
		t.Fatalf("Notify error = %v, want a permanent certificate error", err)
	}
}
