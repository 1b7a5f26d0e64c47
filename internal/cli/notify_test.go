package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/outbox"
	"github.com/trailwatch/trailwatch/internal/app"
	"github.com/trailwatch/trailwatch/notifiers"
)

func runArgs(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, Stdio{In: strings.NewReader(""), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

func TestNotifyTest(t *testing.T) {
	dir := t.TempDir()
	var got []notifiers.Alert
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a notifiers.Alert
		json.NewDecoder(r.Body).Decode(&a)
		got = append(got, a)
		if r.URL.Path == "/gone" {
			w.WriteHeader(http.StatusGone)
		}
	}))
	defer hook.Close()
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, []byte(`notifiers:
  - name: out
    type: file
    path: `+filepath.Join(dir, "alerts.jsonl")+`
  - name: hook
    type: webhook
    url: `+hook.URL+`/ok
  - name: gone
    type: webhook
    url: `+hook.URL+`/gone
`), 0o644)

	code, out, errs := runArgs(t, "notify-test", "--config", cfg, "out", "hook")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(out, "out (file): delivered") || !strings.Contains(out, "hook (webhook): delivered") {
		t.Errorf("output:\n%s", out)
	}
	if len(got) != 1 || !got[0].Test || !strings.HasPrefix(got[0].Title, "TEST") {
		t.Errorf("webhook got %+v, want one alert marked test", got)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "alerts.jsonl"))
	if !strings.Contains(string(data), `"test":true`) {
		t.Errorf("file notifier wrote %s", data)
	}

	code, out, _ = runArgs(t, "notify-test", "--config", cfg, "gone", "nosuch")
	if code != 1 || !strings.Contains(out, "gone (webhook): refused, a retry will not help") || !strings.Contains(out, "nosuch: not defined") {
		t.Errorf("exit %d, output:\n%s", code, out)
	}
	if strings.Contains(out, hook.URL+"/gone") {
		t.Errorf("the webhook URL (a secret) reached the output:\n%s", out)
	}
}

func TestOutboxCommand(t *testing.T) {
	dir := t.TempDir()
	ob, err := outbox.Open(filepath.Join(dir, outbox.FileName), outbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := app.TestAlert(time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC))
	a.RuleID = "aws-root-console-login"
	if _, err := ob.Enqueue(context.Background(), outbox.Item{Key: "k1", Notifier: "secfeed", Alert: a}); err != nil {
		t.Fatal(err)
	}
	ob.Close()

	code, out, errs := runArgs(t, "outbox", "--state-dir", dir)
	if code != 0 || !strings.Contains(out, "secfeed") || !strings.Contains(out, "aws-root-console-login") || !strings.Contains(out, "1 entries") {
		t.Errorf("exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = runArgs(t, "outbox", "--state-dir", dir, "--state", "dead")
	if code != 0 || !strings.Contains(out, "0 entries") {
		t.Errorf("dead: exit %d\n%s", code, out)
	}
	code, _, errs = runArgs(t, "outbox", "--state-dir", dir, "--requeue", "k1/secfeed")
	if code != 1 || !strings.Contains(errs, "not") {
		t.Errorf("requeue of a pending entry: exit %d, %s", code, errs)
	}
	if code, _, _ := runArgs(t, "outbox"); code != 2 {
		t.Errorf("outbox without a state dir: exit %d, want 2", code)
	}
}

func TestReplayNotify(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	var got []notifiers.Alert
	calls := 0
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			// The first attempt fails: the outbox retries.
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var a notifiers.Alert
		json.NewDecoder(r.Body).Decode(&a)
		got = append(got, a)
	}))
	defer hook.Close()
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, []byte(`rules: [builtin:aws]
notifiers:
  - name: page
    type: webhook
    url: `+hook.URL+`/page
routes:
  - severity: [critical]
    notify: [page]
`), 0o644)
	code, _, errs := runArgs(t, "replay", "--config", cfg, "--notify", "--output", "json", "../../examples/events/sample-trail.jsonl")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	mu.Lock()
	defer mu.Unlock()
	// The sample holds two root sign-ins (one failed): the critical alerts.
	if len(got) != 2 {
		t.Fatalf("webhook received %d alerts, want the 2 critical ones\n%s", len(got), errs)
	}
	for _, a := range got {
		if a.Severity != "critical" {
			t.Errorf("routed a %s alert to the critical route", a.Severity)
		}
	}
	if !strings.Contains(errs, "2 deliveries sent, 0 refused") {
		t.Errorf("stderr: %s", errs)
	}
	if code, _, _ := runArgs(t, "replay", "--notify", "../../examples/events/sample-trail.jsonl"); code != 2 {
		t.Errorf("--notify without --config: exit %d, want 2", code)
	}
}
