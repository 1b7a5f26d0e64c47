package cli

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"

	"github.com/trailwatch/trailwatch/engine/outbox"
	"github.com/trailwatch/trailwatch/notifiers"
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

// TestSecretsStayOutOfQuotedBodies sends alerts to a webhook and a Slack
// incoming webhook whose endpoint quotes the secret URL path in its 404
// answer, and checks every place the
// error reaches: notify-test's output, run's log, the outbox's last_error,
// and `outbox --json` and its table.
func TestSecretsStayOutOfQuotedBodies(t *testing.T) {
	srv := echoServer(t)
	e := newRunEnv(t, fmt.Sprintf(`  - name: hook
    type: webhook
    url: %s%s
  - name: chat
    type: slack
    webhook_url: %s%s
`, srv.URL, secretHookPath, srv.URL, secretHookPath))

	for _, name := range []string{"hook", "chat"} {
		code, out, errOut := runArgs(t, "notify-test", "--config", e.cfgPath, name)
		if code != 1 || !strings.Contains(out, "404") {
			t.Errorf("notify-test %s: exit %d, want 1 with the 404; output:\n%s%s", name, code, out, errOut)
		}
		assertNoSecret(t, "notify-test "+name+"'s output", out+errOut)
	}

	r := e.start()
	e.put(rootLogin("secret-1"))
	e.eventually(r, "the webhook's and Slack's dead letters", func() bool {
		m := e.scrape()
		return m[`trailwatch_alerts_total{notifier="hook",outcome="dead"}`] == 1 && m[`trailwatch_alerts_total{notifier="chat",outcome="dead"}`] == 1
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
	if err != nil || len(dead) != 2 {
		t.Fatalf("dead letters = %v, %v; want two", dead, err)
	}
	for _, d := range dead {
		assertNoSecret(t, "the outbox's last_error", d.LastError)
	}
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

// TestRunReportsParkedNotifier: an endpoint answering 429 with
// Retry-After: 99999 parks the webhook for notifiers.MaxRetryAfter, not a
// day, and /readyz and the metrics say so while the file notifier goes on.
func TestRunReportsParkedNotifier(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "99999")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	e := newRunEnv(t, fmt.Sprintf("  - name: hook\n    type: webhook\n    url: %s/hook\n", srv.URL))
	r := e.start()
	e.put(rootLogin("parked-1"))
	e.eventually(r, "the webhook to be parked", func() bool {
		return e.scrape()[`trailwatch_notifier_parked{notifier="hook"}`] == 1
	})
	if wait := e.scrape()[`trailwatch_notifier_parked_seconds{notifier="hook"}`]; wait <= 0 || wait > notifiers.MaxRetryAfter.Seconds() {
		t.Errorf("parked for %vs, want at most %v", wait, notifiers.MaxRetryAfter)
	}
	if got := e.get("/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d while the webhook is parked, want 503", got)
	}
	resp, err := http.Get("http://" + e.listen + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "delivery: notifiers parked: hook") {
		t.Errorf("/readyz says:\n%s", body)
	}
	// A parked webhook must not hold the file notifier back.
	e.eventually(r, "the file notifier's alert", func() bool { return len(e.readAlerts()) == 1 })
	if e.scrape()[`trailwatch_notifier_parked{notifier="out"}`] != 0 {
		t.Error("the file notifier is reported parked")
	}
}

// TestRunSurvivesHostileRule runs the real process with a rule that builds
// a string of terabytes on every root sign-in (it loads: on an empty record
// it stops at its first condition) beside a plain rule: the hostile rule
// counts an error per record, the plain one alerts, the process lives on.
func TestRunSurvivesHostileRule(t *testing.T) {
	e := newRunEnv(t, "")
	e.writeFile(e.rules, runRootLoginRule+`  - id: hostile
    title: Hostile
    severity: low
    when: 'eventName == "ConsoleLogin" && reduce(1..40, #acc + #acc, eventName) != ""'
  - id: hostile-replace
    title: Hostile too
    severity: low
    when: 'eventName == "ConsoleLogin" && len(reduce(1..40, replace(#acc, "o", #acc), eventName)) > 0'
`)
	var logs syncBuffer
	p := startRunProcess(t, &logs, e)
	e.put(rootLogin("hostile-1"), rootLogin("hostile-2"))
	waitFor(t, &logs, "both alerts of the plain rule", func() bool {
		return e.scrape()[`trailwatch_alerts_total{notifier="out",outcome="sent"}`] == 2
	})
	m := e.scrape()
	for _, rule := range []string{"hostile", "hostile-replace"} {
		if got := m[`trailwatch_rule_errors_total{rule="`+rule+`"}`]; got != 2 {
			t.Errorf("trailwatch_rule_errors_total{rule=%q} = %v, want 2", rule, got)
		}
	}
	if p.ProcessState != nil {
		t.Fatalf("the process exited: %v\n%s", p.ProcessState, logs.String())
	}
	if got := e.get("/readyz"); got != http.StatusOK {
		t.Errorf("/readyz = %d, want 200", got)
	}
	if !strings.Contains(logs.String(), "evaluation budget") {
		t.Errorf("the log does not say why the rule failed:\n%s", logs.String())
	}
}

// switchServer answers 500 until ok is set, then 200, and counts the
// alerts it accepted.
type switchServer struct {
	*httptest.Server
	mu       sync.Mutex
	ok       bool
	accepted int
}

func newSwitchServer(t *testing.T) *switchServer {
	s := &switchServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.ok {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		s.accepted++
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *switchServer) set(ok bool) { s.mu.Lock(); s.ok = ok; s.mu.Unlock() }
func (s *switchServer) count() int  { s.mu.Lock(); defer s.mu.Unlock(); return s.accepted }

// damageFreelist spoils the page type of the freelist page each of
// bbolt's two meta pages names (the damage that made bbolt panic with
// "invalid freelist page").
func damageFreelist(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := os.Getpagesize()
	for meta := 0; meta < 2; meta++ {
		fl := binary.LittleEndian.Uint64(data[meta*ps+48:]) // header 16 + magic, version, page size, flags, root bucket 32
		binary.LittleEndian.PutUint16(data[int(fl)*ps+8:], 0x02)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRunDamagedOutbox: with three alerts pending for a webhook that is
// down, outbox.db is damaged. run and outbox say so and what to do — no
// panic, no crash loop — `outbox --salvage` saves the three, and once the
// webhook is back the restarted service delivers them.
func TestRunDamagedOutbox(t *testing.T) {
	hook := newSwitchServer(t)
	e := newRunEnv(t, fmt.Sprintf("  - name: hook\n    type: webhook\n    url: %s/hook\n", hook.URL))
	r := e.start()
	e.put(rootLogin("dmg-1"), rootLogin("dmg-2"), rootLogin("dmg-3"))
	e.eventually(r, "three alerts pending for the webhook", func() bool {
		m := e.scrape()
		return m[`trailwatch_alerts_total{notifier="out",outcome="sent"}`] == 3 && m[`trailwatch_outbox_depth{notifier="hook"}`] == 3
	})
	if code := r.stop(t); code != 0 {
		t.Fatalf("run exit %d", code)
	}
	obPath := filepath.Join(e.dir, "state", outbox.FileName)
	damageFreelist(t, obPath)

	code, errOut := runProcessRefused(t, e)
	if code == 0 || strings.Contains(errOut, "panic") || !strings.Contains(errOut, "outbox file is damaged") || !strings.Contains(errOut, "trailwatch outbox --salvage") {
		t.Errorf("run on a damaged outbox: exit %d, stderr:\n%s", code, errOut)
	}
	code, out, errOut := runArgs(t, "outbox", "--config", e.cfgPath)
	if code == 0 || !strings.Contains(out+errOut, "outbox file is damaged") {
		t.Errorf("outbox on a damaged outbox: exit %d:\n%s%s", code, out, errOut)
	}
	code, out, errOut = runArgs(t, "outbox", "--config", e.cfgPath, "--salvage")
	if code != 0 || !strings.Contains(out, "saved 3 pending") {
		t.Fatalf("outbox --salvage: exit %d:\n%s%s", code, out, errOut)
	}

	hook.set(true)
	r = e.start()
	e.eventually(r, "the salvaged alerts delivered", func() bool { return hook.count() == 3 })
	if got := len(e.readAlerts()); got != 3 {
		t.Errorf("the file notifier has %d alerts, want the 3 from before, none again", got)
	}
}

// TestRunRefusesLostOutbox: 20 alerts wait for a webhook that is down when
// outbox.db is deleted (or emptied). run used to start with a new outbox,
// and the 20 were never sent, without a word; now the real binary refuses,
// saying why and creating nothing, until told --accept-empty-outbox; then
// it starts, warns, delivers what comes next, and the next start needs no
// flag (the new outbox is paired with the positions).
func TestRunRefusesLostOutbox(t *testing.T) {
	hook := newSwitchServer(t)
	e := newRunEnv(t, fmt.Sprintf("  - name: hook\n    type: webhook\n    url: %s/hook\n", hook.URL))
	r := e.start()
	var recs []record
	for i := range 20 {
		recs = append(recs, rootLogin(fmt.Sprintf("lost-%d", i)))
	}
	e.put(recs...)
	e.eventually(r, "20 alerts pending for the webhook", func() bool {
		return e.scrape()[`trailwatch_outbox_depth{notifier="hook"}`] == 20
	})
	if code := r.stop(t); code != 0 {
		t.Fatalf("run exit %d", code)
	}
	obPath := filepath.Join(e.dir, "state", outbox.FileName)
	for _, lose := range []func() error{
		func() error { return os.Remove(obPath) },
		func() error { return os.WriteFile(obPath, nil, 0o600) },
	} {
		if err := lose(); err != nil {
			t.Fatal(err)
		}
		code, errOut := runProcessRefused(t, e)
		if code == 0 || !strings.Contains(errOut, "outbox file is missing or empty") || !strings.Contains(errOut, "--accept-empty-outbox") {
			t.Errorf("run without its outbox: exit %d, stderr:\n%s", code, errOut)
		}
		if st, err := os.Stat(obPath); err == nil && st.Size() > 0 {
			t.Fatal("the refused run created a new outbox: the next start would not refuse")
		}
	}

	hook.set(true)
	var logs syncBuffer
	p := startRunProcess(t, &logs, e, "--accept-empty-outbox")
	if !strings.Contains(logs.String(), "starting with a new, empty outbox") {
		t.Errorf("no warning for the accepted loss:\n%s", logs.String())
	}
	e.put(rootLogin("after-accept"))
	waitFor(t, &logs, "the new alert at the webhook", func() bool { return hook.count() == 1 })
	if err := p.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("run --accept-empty-outbox after SIGTERM: %v\n%s", err, logs.String())
	}
	var again syncBuffer
	startRunProcess(t, &again, e)
	if strings.Contains(again.String(), "empty outbox") {
		t.Errorf("the restart without the flag speaks of an empty outbox:\n%s", again.String())
	}
}

// runProcessRefused runs `trailwatch run` on e's configuration as a real
// process, expecting it to refuse to start; if it starts after all, it is
// killed after a while.
func runProcessRefused(t *testing.T, e *runEnv, args ...string) (code int, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], append([]string{"-test.run=^$", "--", "run", "--config", e.cfgPath}, args...)...)
	cmd.Env = append(append(os.Environ(), "TRAILWATCH_TEST_MAIN=1"), e.env...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("run did not refuse within 30s:\n%s", errb.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), errb.String()
}

const denyBurstRule = `rules:
  - id: deny-burst
    title: Denied burst
    severity: medium
    when: errorCode == "AccessDenied"
    threshold: {count: 3, window: 10m, group_by: [sourceIPAddress]}
`

// denied is an AccessDenied call from the attacker's address, with its
// eventTime as given (a JSON value, or "%s" for put's timestamp).
func denied(id, eventTime string) record {
	return record{id, `{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/mallory","accountId":"111122223333"},` +
		`"eventTime":` + eventTime + `,"eventSource":"iam.amazonaws.com","eventName":"ListUsers","awsRegion":"us-east-1",` +
		`"sourceIPAddress":"203.0.113.66","errorCode":"AccessDenied","eventID":"` + id + `","recipientAccountId":"111122223333"}`}
}

// TestReplayUntrustedEventTime: a forged record stamped in 2099 first, and
// one with an unparseable eventTime, then a burst: the burst's threshold
// alert comes out (the forged record used to expire every window), and the
// two others come out on their own, flagged.
func TestReplayUntrustedEventTime(t *testing.T) {
	dir := t.TempDir()
	rulesPath := filepath.Join(dir, "rules.yaml")
	var lines []string
	for _, r := range []record{
		denied("forged", `"2099-01-01T00:00:00Z"`), denied("garbled", `"yesterday"`), denied("far", `"2300-01-01T00:00:00Z"`),
		denied("b1", `"2024-05-01T08:00:00Z"`), denied("b2", `"2024-05-01T08:01:00Z"`), denied("b3", `"2024-05-01T08:02:00Z"`),
	} {
		lines = append(lines, r.msg)
	}
	events := filepath.Join(dir, "events.jsonl")
	if err := os.WriteFile(events, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rulesPath, []byte(denyBurstRule), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runArgs(t, "replay", "--rules", rulesPath, "--output", "json", events)
	if code != 0 {
		t.Fatalf("replay: exit %d\n%s", code, errOut)
	}
	got := map[string]notifiers.Alert{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var a notifiers.Alert
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got[a.EventID] = a
	}
	if a, ok := got["b3"]; !ok || a.Count != 3 {
		t.Errorf("no threshold alert for the burst (count 3 at b3); alerts: %v", got)
	}
	for _, id := range []string{"forged", "far"} {
		if w := got[id].EventTimeWarning; !strings.Contains(w, "ahead of the clock") {
			t.Errorf("%s alert's warning = %q", id, w)
		}
	}
	if a := got["garbled"]; !strings.Contains(a.EventTimeWarning, "not a time") || a.EventTime.Year() < 2000 {
		t.Errorf("garbled alert: event_time %v, warning %q; want the read time and a warning", a.EventTime, a.EventTimeWarning)
	}
}

// TestRunUntrustedEventTime: the same in the live service — records
// written to the log group stamped 20 minutes ahead, past year 2262 and
// with no time at all, then a burst; after a restart (the watermark is
// saved in lifecycle.json) a second burst alerts too.
func TestRunUntrustedEventTime(t *testing.T) {
	e := newRunEnv(t, "")
	e.writeFile(e.rules, denyBurstRule)
	r := e.start()
	e.put(denied("forged", `"`+time.Now().Add(20*time.Minute).UTC().Format(time.RFC3339)+`"`),
		denied("far", `"2300-01-01T00:00:00Z"`), denied("garbled", `"yesterday"`))
	e.eventually(r, "the forged records' own alerts", func() bool { return len(e.readAlerts()) == 3 })
	e.put(denied("b1", `"%s"`), denied("b2", `"%s"`), denied("b3", `"%s"`))
	e.eventually(r, "the burst's threshold alert", func() bool { return len(e.readAlerts()) == 4 })
	alerts := e.readAlerts()
	if a := alerts[3]; a.EventID != "b3" || a.Count != 3 {
		t.Errorf("fourth alert %s count %d, want b3 count 3", a.EventID, a.Count)
	}
	for i, want := range []string{"ahead of the clock", "ahead of the clock", "not a time"} {
		if a := alerts[i]; !strings.Contains(a.EventTimeWarning, want) || a.EventTime.Year() < 2000 {
			t.Errorf("alert %s: event_time %v, warning %q; want a warning saying %q", a.EventID, a.EventTime, a.EventTimeWarning, want)
		}
	}
	m := e.scrape()
	if m[`trailwatch_event_time_untrusted_total{reason="future"}`] != 2 || m[`trailwatch_event_time_untrusted_total{reason="invalid"}`] != 1 {
		t.Errorf("trailwatch_event_time_untrusted_total: future %v, invalid %v; want 2 and 1",
			m[`trailwatch_event_time_untrusted_total{reason="future"}`], m[`trailwatch_event_time_untrusted_total{reason="invalid"}`])
	}
	if code := r.stop(t); code != 0 {
		t.Fatalf("run exit %d", code)
	}
	r = e.start()
	e.put(denied("c1", `"%s"`), denied("c2", `"%s"`), denied("c3", `"%s"`))
	e.eventually(r, "the second burst's threshold alert after a restart", func() bool { return len(e.readAlerts()) == 5 })
	if a := e.readAlerts()[4]; a.EventID != "c3" || a.Count != 3 {
		t.Errorf("fifth alert %s count %d, want c3 count 3", a.EventID, a.Count)
	}
}

// TestHostileTextInOutputs: a record whose fields hold invalid UTF-8, a
// lone surrogate escape, a bidi override and a zero-width space. replay's
// JSON lines and the file notifier's lines are UTF-8 with no lone
// surrogate (jq used to reject them), and the terminal output shows the
// invisible characters instead of acting on them.
func TestHostileTextInOutputs(t *testing.T) {
	dir := t.TempDir()
	rec := "{\"eventVersion\":\"1.08\",\"eventID\":\"text-1\",\"eventTime\":\"2024-05-01T08:00:00Z\",\"eventSource\":\"signin.amazonaws.com\"," +
		"\"eventName\":\"ConsoleLogin\",\"awsRegion\":\"us-east-1\",\"sourceIPAddress\":\"203.0.113.9\",\"userAgent\":\"bad\xff\xfe \\ud800 agent\"," +
		"\"userIdentity\":{\"type\":\"Root\",\"arn\":\"arn:aws:iam::111122223333:root\\u202Etxt.exe\\u200B\",\"accountId\":\"111122223333\"}," +
		"\"responseElements\":{\"ConsoleLogin\":\"Success\"},\"recipientAccountId\":\"111122223333\"}\n"
	events := filepath.Join(dir, "events.jsonl")
	if err := os.WriteFile(events, []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	clean := func(where string, out string) {
		t.Helper()
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if !utf8.ValidString(line) || string(notifiers.CleanJSON([]byte(line))) != line {
				t.Errorf("%s: line is not clean UTF-8 JSON: %q", where, line)
			}
			if !json.Valid([]byte(line)) {
				t.Errorf("%s: not JSON: %q", where, line)
			}
		}
	}
	code, out, errOut := runArgs(t, "replay", "--rules", "builtin:aws", "--output", "json", events)
	if code != 0 || !strings.Contains(out, `"event_id":"text-1"`) {
		t.Fatalf("replay --output json: exit %d\n%s%s", code, out, errOut)
	}
	clean("replay --output json", out)

	code, out, _ = runArgs(t, "replay", "--rules", "builtin:aws", events)
	if code != 0 || strings.ContainsAny(out, "\u202E\u200B") || !strings.Contains(out, `\u{202e}`) {
		t.Errorf("replay's text output acts on invisible characters:\n%q", out)
	}

	alerts := filepath.Join(dir, "alerts.jsonl")
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("state_dir: "+filepath.Join(dir, "state")+"\nrules: [builtin:aws]\nnotifiers:\n  - name: out\n    type: file\n    path: "+alerts+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runArgs(t, "replay", "--config", cfg, "--notify", events); code != 0 {
		t.Fatalf("replay --notify: exit %d\n%s%s", code, out, errOut)
	}
	data, err := os.ReadFile(alerts)
	if err != nil || !strings.Contains(string(data), "text-1") {
		t.Fatalf("the file notifier wrote %q, %v", data, err)
	}
	clean("the file notifier", string(data))
}

// TestRunLogsSkippedRecordsWithTheirPlace: a log event that is not a
// CloudTrail record, written to the log group, is skipped, counted, and
// logged with its log group, stream and CloudWatch Logs event id (it used
// to be a count once a minute, with no place).
func TestRunLogsSkippedRecordsWithTheirPlace(t *testing.T) {
	e := newRunEnv(t, "")
	r := e.start()
	e.put(record{"junk", "not a CloudTrail record at all"}, rootLogin("after-junk"))
	e.eventually(r, "the alert after the junk", func() bool { return len(e.readAlerts()) == 1 })
	out, err := e.client.FilterLogEvents(context.Background(), &cloudwatchlogs.FilterLogEventsInput{LogGroupName: &e.group})
	if err != nil {
		t.Fatal(err)
	}
	var id string
	for _, ev := range out.Events {
		if aws.ToString(ev.Message) == "not a CloudTrail record at all" {
			id = aws.ToString(ev.EventId)
		}
	}
	if id == "" {
		t.Fatalf("FilterLogEvents returned no event id for the junk log event: %+v", out.Events)
	}
	want := fmt.Sprintf("log_group=%s log_stream=%s log_event_id=%s", e.group, e.stream, id)
	e.eventually(r, "the report of the skipped record", func() bool { return strings.Contains(r.stderr.String(), want) })
	// A sweep of the lookback may read the junk again (it has no eventID
	// to be deduplicated by): at least once.
	if got := e.scrape()["trailwatch_records_skipped_total"]; got < 1 {
		t.Errorf("trailwatch_records_skipped_total = %v, want at least 1", got)
	}
}

// TestValidateReadsSecretFiles: validate --config reads every notifier's
// *_file secret as run does (it used to pass a configuration run then
// refused), naming the file and never its content, and reports ${VAR} set
// to "" as empty, not as unset.
func TestValidateReadsSecretFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	rulesPath := filepath.Join(dir, "rules.yaml")
	plain := filepath.Join(dir, "hook-url")
	if err := os.WriteFile(plain, []byte("http://hooks.example.com"+secretHookPath+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(notifiersYAML string) {
		t.Helper()
		data := "rules: [rules.yaml]\nnotifiers:\n" + notifiersYAML
		if err := os.WriteFile(cfg, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(rulesPath, []byte(runRootLoginRule), 0o600); err != nil {
		t.Fatal(err)
	}
	write("  - name: hook\n    type: webhook\n    url_file: " + plain + "\n  - name: pager\n    type: pagerduty\n    routing_key_file: " + filepath.Join(dir, "missing-key") + "\n")
	code, out, errOut := runArgs(t, "validate", "--config", cfg)
	if code != 1 || !strings.Contains(out, `notifier "hook": webhook: url_file: must use https`) ||
		!strings.Contains(out, `notifier "pager": pagerduty: routing_key_file: read secret file: open `+filepath.Join(dir, "missing-key")) {
		t.Errorf("validate with unusable secret files: exit %d\n%s%s", code, out, errOut)
	}
	assertNoSecret(t, "validate's output", out+errOut)

	t.Setenv("TW_TEST_HOOK_URL", "")
	write("  - name: hook\n    type: webhook\n    url: ${TW_TEST_HOOK_URL}\n")
	code, out, errOut = runArgs(t, "validate", "--config", cfg)
	if code != 1 || !strings.Contains(out+errOut, "environment variable TW_TEST_HOOK_URL is set but empty") {
		t.Errorf("validate with an empty variable: exit %d\n%s%s", code, out, errOut)
	}
}
