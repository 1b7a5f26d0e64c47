package email

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/notifiers"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// fixedNow is the fake clock for every test message.
var fixedNow = time.Date(2024, 5, 2, 9, 15, 0, 0, time.UTC)

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return b
}

// sampleAlert is a plain root console login alert.
func sampleAlert(t *testing.T) notifiers.Alert {
	t.Helper()
	return notifiers.Alert{
		RuleID:      "aws-root-console-login",
		Title:       "Root account console login",
		Severity:    "high",
		Summary:     "The root user signed in to the console without MFA from 198.51.100.23.",
		Description: "The root user should never be used for day-to-day work.\nConfirm with the account owner.",
		Tags:        []string{"cis-1.7", "identity"},
		Runbook:     "https://runbooks.example.com/aws/root-login",
		References:  []string{"https://docs.aws.amazon.com/IAM/latest/UserGuide/id_root-user.html"},
		DedupKey:    "aws-root-console-login/111122223333",
		EventID:     "3f0b7c4e-2a61-4c1e-9d55-0f1e2a3b4c5d",
		EventTime:   time.Date(2024, 5, 2, 9, 14, 7, 0, time.UTC),
		EventName:   "ConsoleLogin",
		EventSource: "signin.amazonaws.com",
		Principal:   "arn:aws:iam::111122223333:root",
		SourceIP:    "198.51.100.23",
		UserAgent:   "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
		AWSRegion:   "us-east-1",
		AccountID:   "111122223333",
		Count:       1,
		Event:       readFile(t, "testdata/root-console-login.json"),
	}
}

// hostileAlert carries markup, header-injection and bidi tricks in every
// field that comes from the event.
func hostileAlert(t *testing.T) notifiers.Alert {
	t.Helper()
	a := sampleAlert(t)
	a.Title = "Login\r\nBcc: victim@evil.example\r\nX-Injected: yes"
	a.Summary = `<script>alert("x")</script> by <img src=x onerror=alert(1)>`
	a.Principal = "arn:aws:iam::111122223333:user/<b>mallory</b>\r\nX-Injected: yes"
	a.UserName = "mallory\u202egnp.exe"
	a.UserAgent = "curl/8.0\nSubject: pwned"
	a.SourceIP = `"><a href="javascript:alert(1)">click</a>`
	a.ErrorCode = "AccessDenied"
	a.ErrorMessage = "User: <i>x</i> is not authorized"
	a.Runbook = "javascript:alert(document.cookie)"
	a.Event = json.RawMessage(`{"eventName":"ConsoleLogin","userAgent":"<script>alert(1)</script>","note":"\u003c/pre\u003e\r\nBcc: x@evil.example"}`)
	return a
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatalf("update %s: %v", path, err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (run go test -update and review the diff)\ngot:\n%s", path, got)
	}
}

// certs is a throwaway CA and a leaf for 127.0.0.1 and localhost, as files.
type certs struct {
	CAFile, CertFile, KeyFile string
	Leaf                      tls.Certificate
}

func makeCerts(t *testing.T) certs {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "trailwatch test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	c := certs{
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "cert.pem"),
		KeyFile:  filepath.Join(dir, "key.pem"),
	}
	write := func(path, typ string, der []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(c.CAFile, "CERTIFICATE", caDER)
	write(c.CertFile, "CERTIFICATE", leafDER)
	write(c.KeyFile, "PRIVATE KEY", keyDER)
	c.Leaf, err = tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tlsProxy accepts implicit-TLS connections on loopback and relays them in
// clear text to target, standing in for an SMTPS relay in front of Mailpit.
func tlsProxy(t *testing.T, leaf tls.Certificate, target string) int {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("listen for the TLS proxy: %v", err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer in.Close()
				out, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer out.Close()
				done := make(chan struct{})
				go func() {
					_, _ = io.Copy(out, in)
					out.(*net.TCPConn).CloseWrite()
					close(done)
				}()
				_, _ = io.Copy(in, out)
				in.Close()
				<-done
			})
		}
	})
	return l.Addr().(*net.TCPAddr).Port
}

// mailpitMessage is the part of Mailpit's /api/v1/message/{ID} we check.
type mailpitMessage struct {
	ID        string `json:"ID"`
	MessageID string `json:"MessageID"`
	Subject   string `json:"Subject"`
	Text      string `json:"Text"`
	HTML      string `json:"HTML"`
	From      struct {
		Address string `json:"Address"`
	} `json:"From"`
	To []struct {
		Address string `json:"Address"`
	} `json:"To"`
	Bcc []struct {
		Address string `json:"Address"`
	} `json:"Bcc"`
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", u, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("decode %s: %v", u, err)
	}
}

// waitMessages polls Mailpit until it holds want messages and returns
// their summaries' IDs, newest first.
func waitMessages(t *testing.T, api string, want int) []string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		var list struct {
			Total    int `json:"total"`
			Messages []struct {
				ID string `json:"ID"`
			} `json:"messages"`
		}
		getJSON(t, api+"/api/v1/messages", &list)
		if list.Total >= want {
			ids := make([]string, 0, len(list.Messages))
			for _, m := range list.Messages {
				ids = append(ids, m.ID)
			}
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("mailpit holds %d messages, want %d", list.Total, want)
		}
		<-tick.C
	}
}

func getMessage(t *testing.T, api, id string) (mailpitMessage, map[string][]string) {
	t.Helper()
	var m mailpitMessage
	getJSON(t, api+"/api/v1/message/"+url.PathEscape(id), &m)
	var h map[string][]string
	getJSON(t, api+"/api/v1/message/"+url.PathEscape(id)+"/headers", &h)
	return m, h
}

// fakeSMTP is a scripted SMTP server: replies maps a command verb (EHLO,
// AUTH, MAIL, RCPT, DATA, and "." for the end of data) to the reply line.
type fakeSMTP struct {
	Greeting string
	Replies  map[string]string
}

func (f fakeSMTP) start(t *testing.T, host string) (string, int) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("listen for the fake SMTP server: %v", err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { f.serve(c) })
		}
	})
	return host, l.Addr().(*net.TCPAddr).Port
}

func (f fakeSMTP) reply(verb, def string) string {
	if r, ok := f.Replies[verb]; ok {
		return r
	}
	return def
}

func (f fakeSMTP) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	greeting := f.Greeting
	if greeting == "" {
		greeting = "220 fake.test ESMTP"
	}
	fmt.Fprintf(c, "%s\r\n", greeting)
	if !strings.HasPrefix(greeting, "220") {
		return
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch verb {
		case "EHLO", "HELO":
			fmt.Fprintf(c, "%s\r\n", f.reply("EHLO", "250-fake.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME"))
		case "AUTH":
			fmt.Fprintf(c, "%s\r\n", f.reply("AUTH", "235 2.7.0 ok"))
		case "MAIL":
			fmt.Fprintf(c, "%s\r\n", f.reply("MAIL", "250 ok"))
		case "RCPT":
			fmt.Fprintf(c, "%s\r\n", f.reply("RCPT", "250 ok"))
		case "DATA":
			d := f.reply("DATA", "354 go ahead")
			fmt.Fprintf(c, "%s\r\n", d)
			if !strings.HasPrefix(d, "354") {
				continue
			}
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" || l == ".\n" {
					break
				}
			}
			fmt.Fprintf(c, "%s\r\n", f.reply(".", "250 queued"))
		case "QUIT":
			fmt.Fprintf(c, "221 bye\r\n")
			return
		default: // NOOP, RSET
			fmt.Fprintf(c, "250 ok\r\n")
		}
	}
}

// testContext is a context bounded well inside the test timeout.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
