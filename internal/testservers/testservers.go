// Package testservers starts the real servers that trailwatch's tests talk
// to — moto (an AWS emulator) and Mailpit (an SMTP server with an HTTP API) —
// each on a free loopback port, and stops them when the test ends.
//
// A missing server is a test failure that says how to install it, never a
// silent skip: a skip would hide a broken CI.
package testservers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// lookPath finds a program on PATH or, for Go-installed tools, in GOBIN or
// GOPATH/bin, which a fresh shell may not have on its PATH.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	var dirs []string
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		dirs = append(dirs, gobin)
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, p := range filepath.SplitList(strings.TrimSpace(string(out))) {
			dirs = append(dirs, filepath.Join(p, "bin"))
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH, in GOBIN or in GOPATH/bin", name)
}

// server is a child process that a test started.
type server struct {
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	log  strings.Builder
}

func start(t testing.TB, name string, args ...string) *server {
	t.Helper()
	path, err := lookPath(name)
	if err != nil {
		t.Fatalf("%v: %s", err, installHint(name))
	}
	s := &server{cmd: exec.Command(path, args...), done: make(chan struct{})}
	s.cmd.Env = childEnv()
	dieWithTest(s.cmd)
	pr, pw := io.Pipe()
	s.cmd.Stdout = pw
	s.cmd.Stderr = pw
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			s.mu.Lock()
			if s.log.Len() < 64*1024 {
				s.log.WriteString(sc.Text())
				s.log.WriteByte('\n')
			}
			s.mu.Unlock()
		}
	}()
	go func() {
		_ = s.cmd.Wait()
		pw.Close()
		close(s.done)
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
	})
	return s
}

// childEnv is the test's environment for a server, without the AWS_*
// variables that SetFakeAWSEnv blanked: the Go SDK reads an empty value as
// unset, but Python's botocore (inside moto) takes AWS_PROFILE="" as a
// profile named "" and fails every request with ProfileNotFound.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") && v == "" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (s *server) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

func installHint(name string) string {
	switch name {
	case "moto_server":
		return "moto_server is the AWS emulator the tests run against; it ships with this machine image's Python (moto 5.2.1); elsewhere install it with `pip install 'moto[server]==5.2.1'`"
	case "mailpit":
		return "Mailpit is the SMTP server the email tests run against; install it with `go install github.com/axllent/mailpit@v1.33.1` (.ci/run does this)"
	}
	return ""
}

// waitHTTP polls url until it answers with any HTTP status, the server
// exits, or the deadline passes.
func waitHTTP(t testing.TB, s *server, name, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			return
		}
		select {
		case <-s.done:
			t.Fatalf("%s exited before it was ready:\n%s", name, s.output())
		case <-ctx.Done():
			t.Fatalf("%s did not answer on %s within 60s:\n%s", name, url, s.output())
		case <-tick.C:
		}
	}
}

// Moto is a running moto server.
type Moto struct {
	// Endpoint is the base URL to give the AWS SDK (BaseEndpoint or
	// AWS_ENDPOINT_URL), e.g. http://127.0.0.1:41234.
	Endpoint string
	// Direct is moto itself, without the proxy that serialises requests
	// (see serialProxy): for benchmarks of concurrent reads, where no
	// conditional write can race.
	Direct string
}

// StartMoto starts moto_server on a free loopback port and returns once it
// answers. It also sets fake AWS credentials and a region in the test's
// environment (t.Setenv), so the SDK's default chain never reaches for a
// real account.
func StartMoto(t testing.TB) *Moto {
	t.Helper()
	SetFakeAWSEnv(t)
	port := FreePort(t)
	s := start(t, "moto_server", "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	direct := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTP(t, s, "moto_server", direct+"/moto-api/")
	return &Moto{Endpoint: serialProxy(t, direct), Direct: direct}
}

// serialProxy fronts moto with a reverse proxy that forwards one request
// at a time. moto evaluates a DynamoDB conditional write in several steps,
// so two racing requests can both pass the condition, which DynamoDB never
// allows; serialising makes moto's answers those of an atomic service.
// Tests that race claims or leases then test trailwatch, not moto.
//
// A client that gives up on a request (its context cancelled) does not
// release the lock early: the request goes on to moto, which applies it
// anyway, and the next request waits for that. Otherwise a cancelled write
// and the next one would race inside moto, as they never could in DynamoDB.
//
// An SQS long poll (ReceiveMessage with WaitTimeSeconds) is answered by
// short polls, each serialised, with the lock free between them (see
// longPoll): held for the whole wait, it would stall every other request.
func serialProxy(t testing.TB, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Amz-Target") == "AmazonSQS.ReceiveMessage" && longPoll(w, r, rp, &mu) {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		// plainWriter hides http.CloseNotifier, through which the proxy
		// would otherwise still cancel the upstream request.
		rp.ServeHTTP(plainWriter{w}, r.WithContext(context.WithoutCancel(r.Context())))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// longPoll answers an SQS ReceiveMessage as SQS does, returning as soon as
// messages are there or its WaitTimeSeconds ran out, by asking moto again
// every 50ms without waiting (each ask under mu). It reports false, having
// answered nothing, for a request it cannot read: the caller forwards it
// as it is.
func longPoll(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy, mu *sync.Mutex) bool {
	body, err := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	var in map[string]any
	if err != nil || json.Unmarshal(body, &in) != nil {
		return false
	}
	wait, _ := in["WaitTimeSeconds"].(float64)
	in["WaitTimeSeconds"] = 0
	short, err := json.Marshal(in)
	if err != nil {
		return false
	}
	deadline := time.Now().Add(time.Duration(wait * float64(time.Second)))
	for {
		req := r.Clone(context.WithoutCancel(r.Context()))
		req.Body = io.NopCloser(bytes.NewReader(short))
		req.ContentLength = int64(len(short))
		req.Header.Set("Content-Length", strconv.Itoa(len(short)))
		rec := httptest.NewRecorder()
		mu.Lock()
		rp.ServeHTTP(rec, req)
		mu.Unlock()
		var out struct{ Messages []json.RawMessage }
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		if rec.Code != http.StatusOK || len(out.Messages) > 0 || !time.Now().Before(deadline) || r.Context().Err() != nil {
			for k, vs := range rec.Header() {
				w.Header()[k] = vs
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return true
		}
		select {
		case <-r.Context().Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// plainWriter is an http.ResponseWriter with nothing else: no
// CloseNotifier, no Hijacker.
type plainWriter struct{ w http.ResponseWriter }

func (p plainWriter) Header() http.Header         { return p.w.Header() }
func (p plainWriter) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p plainWriter) WriteHeader(code int)        { p.w.WriteHeader(code) }

// SetFakeAWSEnv points the AWS SDK's default configuration chain at fake
// static credentials and region us-east-1, and away from any shared config
// or instance metadata.
func SetFakeAWSEnv(t testing.TB) {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_DEFAULT_REGION", "us-east-1")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_ENDPOINT_URL", "")
}

// Mailpit is a running Mailpit server.
type Mailpit struct {
	// SMTPHost and SMTPPort are where to send mail.
	SMTPHost string
	SMTPPort int
	// API is the base URL of Mailpit's web UI and HTTP API, e.g.
	// http://127.0.0.1:41235 (messages at API+"/api/v1/messages").
	API string
}

// MailpitOptions adjusts how Mailpit is started.
type MailpitOptions struct {
	// TLSCert and TLSKey, when set, make Mailpit offer STARTTLS with this
	// certificate (PEM files).
	TLSCert, TLSKey string
	// RequireTLS refuses mail on connections that did not start TLS.
	RequireTLS bool
	// SMTPPort, when set, is the SMTP port to listen on (a test that
	// points a client at a port before the server is up); else a free one.
	SMTPPort int
}

// StartMailpit starts Mailpit on two free loopback ports (SMTP and HTTP),
// accepting any SMTP credentials, and returns once its API answers.
func StartMailpit(t *testing.T, opts MailpitOptions) *Mailpit {
	t.Helper()
	smtpPort, httpPort := opts.SMTPPort, FreePort(t)
	if smtpPort == 0 {
		smtpPort = FreePort(t)
	}
	args := []string{
		"--smtp", fmt.Sprintf("127.0.0.1:%d", smtpPort),
		"--listen", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--disable-version-check",
		"--smtp-auth-accept-any",
		"--smtp-auth-allow-insecure",
		"--database", filepath.Join(t.TempDir(), "mailpit.db"),
	}
	if opts.TLSCert != "" {
		args = append(args, "--smtp-tls-cert", opts.TLSCert, "--smtp-tls-key", opts.TLSKey)
		if opts.RequireTLS {
			args = append(args, "--smtp-require-starttls")
		}
	}
	s := start(t, "mailpit", args...)
	m := &Mailpit{SMTPHost: "127.0.0.1", SMTPPort: smtpPort, API: fmt.Sprintf("http://127.0.0.1:%d", httpPort)}
	waitHTTP(t, s, "mailpit", m.API+"/api/v1/info")
	return m
}
