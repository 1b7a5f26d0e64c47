package cli

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trailwatch/trailwatch/engine/outbox"
)

// secretHookPath is a webhook path that carries its secret, Slack-style.
const secretHookPath = "/services/T0AAAA1111/B0BBBB2222/XyZsecretToken123abc"

// secretParts are the pieces of secretHookPath that must appear nowhere.
var secretParts = []string{"T0AAAA1111", "B0BBBB2222", "XyZsecret", "Token123abc", "services/T0"}

func assertNoSecret(t *testing.T, where, text string) {
	t.Helper()
	for _, p := range secretParts {
		if strings.Contains(text, p) {
			t.Errorf("%s holds %q (part of the webhook URL):\n%.3000s", where, p, text)
		}
	}
}

// echoServer answers every request 404 "Cannot POST <path>", as Express
// and many frameworks do, quoting the secret-bearing path back.
func echoServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, "<pre>Cannot POST %s</pre>", r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestSecretsStayOutOfQuotedBodies sends alerts to a webhook whose endpoint
// quotes the secret URL path in its 404 answer, and checks every place the
// error reaches: notify-test's output, run's log, the outbox's last_error,
// and `outbox --json` and its table.
func TestSecretsStayOutOfQuotedBodies(t *testing.T) {
	srv := echoServer(t)
	e := newRunEnv(t, fmt.Sprintf(`  - name: hook
    type: webhook
    url: %s%s
`, srv.URL, secretHookPath))

	code, out, errOut := runArgs(t, "notify-test", "--config", e.cfgPath, "hook")
	if code != 1 || !strings.Contains(out, "404") || !strings.Contains(out, "Cannot POST") {
		t.Errorf("notify-test: exit %d, want 1 with the quoted 404; output:\n%s%s", code, out, errOut)
	}
	assertNoSecret(t, "notify-test's output", out+errOut)

	r := e.start()
	e.put(rootLogin("secret-1"))
	e.eventually(r, "the webhook's dead letter", func() bool {
		return e.scrape()[`trailwatch_alerts_total{notifier="hook",outcome="dead"}`] == 1
	})
	if code := r.stop(t); code != 0 {
		t.Fatalf("run exit %d", code)
	}
	assertNoSecret(t, "run's log", r.stderr.String())
	if !strings.Contains(r.stderr.String(), "Cannot POST") {
		t.Errorf("run's log does not quote the answer at all:\n%s", r.stderr)
	}

	ob, err := outbox.Open(filepath.Join(e.dir, "state", outbox.FileName), outbox.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	dead, err := ob.List(outbox.Dead)
	ob.Close()
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead letters = %v, %v; want one", dead, err)
	}
	assertNoSecret(t, "the outbox's last_error", dead[0].LastError)
	raw, err := os.ReadFile(filepath.Join(e.dir, "state", outbox.FileName))
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, "outbox.db", string(raw))

	for _, args := range [][]string{{"--json"}, {}} {
		code, out, errOut := runArgs(t, append([]string{"outbox", "--config", e.cfgPath, "--state", "dead"}, args...)...)
		if code != 0 || !strings.Contains(out, "Cannot POST") {
			t.Errorf("outbox %v: exit %d; output:\n%s%s", args, code, out, errOut)
		}
		assertNoSecret(t, fmt.Sprintf("outbox %v", args), out+errOut)
	}
}
