package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// watchMarker is in every rule file the watch tests write: it must never
// reach the log (the log names paths, not contents).
const watchMarker = "# watch-test-marker-7f3a9c"

const watchTeamRule = `rules:
  - id: e2e-team-root
    title: Root sign-in (team copy)
    severity: critical
    when: eventName == "ConsoleLogin" && userIdentity.type == "Root"
` + watchMarker + "\n"

// newWatchEnv is newRunEnv with a second rule path, the directory
// rules.d/, and the given top-level settings.
func newWatchEnv(t *testing.T, extra string) *runEnv {
	t.Helper()
	e := newRunEnv(t, extra)
	cfg, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	const from = "rules: [rules.yaml]\n"
	if !strings.Contains(string(cfg), from) {
		t.Fatalf("the test configuration no longer says %q:\n%s", from, cfg)
	}
	e.writeFile(e.cfgPath, strings.Replace(string(cfg), from, "rules: [rules.yaml, rules.d/]\n", 1))
	if err := os.Mkdir(filepath.Join(e.dir, "rules.d"), 0o700); err != nil {
		t.Fatal(err)
	}
	return e
}

const (
	watchReloads  = `trailwatch_reloads_total{trigger="watch"}`
	signalReloads = `trailwatch_reloads_total{trigger="signal"}`
	reloadFails   = "trailwatch_reload_failures_total"
	reloadOK      = "trailwatch_reload_success_timestamp_seconds"
)

// expectReload makes a change and waits until a reload that the watch
// triggered has loaded what the change wrote: a success whose log line
// has want (e.g. "rules=2"). Waiting for that line, not only for a
// counter, means that a reload of a half-written file, which a later one
// corrects, cannot satisfy it.
func (e *runEnv) expectReload(r *running, want string, change func()) {
	e.t.Helper()
	before := e.scrape()
	from := len(r.stderr.String())
	change()
	line := `msg="reloaded configuration and rules" ` + want
	e.eventually(r, "a watch reload with "+want, func() bool {
		return strings.Contains(r.stderr.String()[from:], line)
	})
	after := e.scrape()
	if after[watchReloads] <= before[watchReloads] {
		e.t.Errorf("%s = %v, was %v: the reload was not counted as the watch's", watchReloads, after[watchReloads], before[watchReloads])
	}
	if after[signalReloads] != before[signalReloads] {
		e.t.Errorf("%s moved from %v to %v without a signal", signalReloads, before[signalReloads], after[signalReloads])
	}
	if after[reloadOK] <= before[reloadOK] {
		e.t.Errorf("%s did not advance", reloadOK)
	}
}

// expectRefused makes a change and waits until the watch's reload of it
// is refused and counted; it returns the log written meanwhile.
func (e *runEnv) expectRefused(r *running, change func()) string {
	e.t.Helper()
	before := e.scrape()
	from := len(r.stderr.String())
	change()
	e.eventually(r, "a refused watch reload", func() bool {
		return e.scrape()[reloadFails] > before[reloadFails] &&
			strings.Contains(r.stderr.String()[from:], "reload refused")
	})
	logs := r.stderr.String()[from:]
	if !strings.Contains(logs, "trigger=watch") {
		e.t.Errorf("the refusal does not name the watch as its trigger:\n%s", logs)
	}
	return logs
}

// waitAlerts waits for exactly these alerts, in order.
func (e *runEnv) waitAlerts(r *running, want ...string) {
	e.t.Helper()
	e.eventually(r, "alerts "+strings.Join(want, ","), func() bool { return len(e.readAlerts()) >= len(want) })
	if got := strings.Join(alertEventIDs(e.readAlerts()), ","); got != strings.Join(want, ",") {
		e.t.Fatalf("alerts = %s, want %s", got, strings.Join(want, ","))
	}
}

// TestRunWatch runs `trailwatch run` with reload.watch on and changes its
// files the ways editors, checkouts and people do: each change is
// reloaded through the same path as SIGHUP, a broken one is refused while
// the running rules keep alerting, and a fix is picked up.
func TestRunWatch(t *testing.T) {
	e := newWatchEnv(t, "reload:\n  watch: true\n  debounce: 100ms\n")
	r := e.start()
	if !strings.Contains(r.stderr.String(), "watching the configuration and rules for changes") {
		t.Fatalf("the start does not say that it watches:\n%s", r.stderr)
	}
	alerts := []string{"e2e-root-login/root-1"}
	e.put(rootLogin("root-1"), apiCall("stop-0", "StopLogging"))
	e.waitAlerts(r, alerts...)

	t.Run("a rule file written in place", func(t *testing.T) {
		e.expectReload(r, "rules=2", func() {
			e.writeFile(e.rules, runRootLoginRule+runStopLoggingRule+watchMarker+"\n")
		})
		if !strings.Contains(r.stderr.String(), `msg="reloading: watched files changed" path=`+e.rules) {
			t.Errorf("the log does not name the changed file at info:\n%s", r.stderr)
		}
		e.put(apiCall("stop-1", "StopLogging"))
		alerts = append(alerts, "e2e-stop-logging/stop-1")
		e.waitAlerts(r, alerts...)
	})

	t.Run("a rule file replaced by rename, as editors save", func(t *testing.T) {
		e.expectReload(r, "rules=1", func() {
			tmp := filepath.Join(e.dir, ".rules.yaml.tmp")
			e.writeFile(tmp, "rules:\n"+runStopLoggingRule+watchMarker+"\n")
			if err := os.Rename(tmp, e.rules); err != nil {
				t.Fatal(err)
			}
		})
		e.put(rootLogin("root-2"), apiCall("stop-2", "StopLogging"))
		alerts = append(alerts, "e2e-stop-logging/stop-2")
		e.waitAlerts(r, alerts...)
	})

	team := filepath.Join(e.dir, "rules.d", "team", "identity")
	teamRules := filepath.Join(team, "root.yaml")
	t.Run("a rule file in new subdirectories", func(t *testing.T) {
		e.expectReload(r, "rules=2", func() {
			if err := os.MkdirAll(team, 0o700); err != nil {
				t.Fatal(err)
			}
			e.writeFile(teamRules, watchTeamRule)
		})
		e.put(rootLogin("root-3"))
		alerts = append(alerts, "e2e-team-root/root-3")
		e.waitAlerts(r, alerts...)
	})

	t.Run("a broken edit is refused, the running rules keep alerting, and the fix is reloaded", func(t *testing.T) {
		logs := e.expectRefused(r, func() {
			// Saved by rename, so that no reload can read it half-written
			// and succeed before the one that refuses it.
			tmp := filepath.Join(e.dir, "root.yaml.new")
			e.writeFile(tmp, `rules:
  - id: e2e-team-root
    title: Root sign-in (team copy)
    severity: critical
    when: eventName == "ConsoleLogin" &&
`+watchMarker+"\n")
			if err := os.Rename(tmp, teamRules); err != nil {
				t.Fatal(err)
			}
		})
		if !strings.Contains(logs, teamRules+":5:") {
			t.Errorf("the refusal does not place the problem at %s:5:\n%s", teamRules, logs)
		}
		e.put(rootLogin("root-4"), apiCall("stop-4", "StopLogging"))
		alerts = append(alerts, "e2e-team-root/root-4", "e2e-stop-logging/stop-4")
		e.waitAlerts(r, alerts...)

		e.expectReload(r, "rules=2", func() {
			e.writeFile(teamRules, strings.Replace(watchTeamRule, "e2e-team-root", "e2e-team-root-fixed", 1))
		})
		e.put(rootLogin("root-5"))
		alerts = append(alerts, "e2e-team-root-fixed/root-5")
		e.waitAlerts(r, alerts...)
	})

	t.Run("a rule file deleted, then created again", func(t *testing.T) {
		logs := e.expectRefused(r, func() {
			if err := os.Remove(e.rules); err != nil {
				t.Fatal(err)
			}
		})
		if !strings.Contains(logs, "rules.yaml: no such file or directory") {
			t.Errorf("the refusal does not say the file is missing:\n%s", logs)
		}
		e.expectReload(r, "rules=3", func() {
			e.writeFile(e.rules, runRootLoginRule+runStopLoggingRule+watchMarker+"\n")
		})
		e.put(apiCall("stop-6", "StopLogging"))
		alerts = append(alerts, "e2e-stop-logging/stop-6")
		e.waitAlerts(r, alerts...)
	})

	t.Run("the configuration replaced by rename", func(t *testing.T) {
		cfg, err := os.ReadFile(e.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		e.expectReload(r, "rules=3 routes=1", func() {
			tmp := e.cfgPath + ".new" // not a name a reload reads
			e.writeFile(tmp, string(cfg)+"routes:\n  - severity: [critical]\n    notify: [out]\n")
			if err := os.Rename(tmp, e.cfgPath); err != nil {
				t.Fatal(err)
			}
		})
		e.put(apiCall("stop-7", "StopLogging"), rootLogin("root-7"))
		alerts = append(alerts, "e2e-root-login/root-7", "e2e-team-root-fixed/root-7")
		e.waitAlerts(r, alerts...)
	})

	if strings.Contains(r.stderr.String(), watchMarker) {
		t.Errorf("file contents reached the log:\n%s", r.stderr)
	}
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit code = %d, want 0; log:\n%s", code, r.stderr)
	}
}

// TestRunWatchOff checks that without reload.watch an edit is not
// reloaded until SIGHUP, and that --watch turns the watch on.
func TestRunWatchOff(t *testing.T) {
	// A debounce without watch: the debounce alone turns nothing on.
	e := newWatchEnv(t, "reload:\n  debounce: 10ms\n")
	r := e.start()
	if strings.Contains(r.stderr.String(), "watching the configuration") {
		t.Fatalf("watching with reload.watch off:\n%s", r.stderr)
	}
	m := e.scrape()
	polls := `trailwatch_filterlogevents_calls_total{log_group="` + e.group + `"}`
	okBefore, pollsBefore := m[reloadOK], m[polls]

	e.writeFile(e.rules, runRootLoginRule+runStopLoggingRule)
	// Nothing to wait for when nothing should happen: let the source poll
	// five more times (a second, a hundred debounces) before looking.
	e.eventually(r, "five more polls", func() bool { return e.scrape()[polls] >= pollsBefore+5 })
	m = e.scrape()
	if m[watchReloads] != 0 || m[reloadOK] != okBefore || strings.Contains(r.stderr.String(), "reloading") {
		t.Fatalf("an edit reloaded with the watch off (%s = %v); log:\n%s", watchReloads, m[watchReloads], r.stderr)
	}
	e.put(apiCall("stop-1", "StopLogging"), rootLogin("root-1"))
	e.waitAlerts(r, "e2e-root-login/root-1")

	// The edit was good: SIGHUP takes it.
	r.reload <- struct{}{}
	e.eventually(r, "the SIGHUP reload", func() bool { return e.scrape()[signalReloads] == 1 && e.scrape()[reloadOK] > okBefore })
	e.put(apiCall("stop-2", "StopLogging"))
	e.waitAlerts(r, "e2e-root-login/root-1", "e2e-stop-logging/stop-2")
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit code = %d, want 0; log:\n%s", code, r.stderr)
	}

	t.Run("--watch turns it on", func(t *testing.T) {
		r := e.startArgs("--watch")
		if !strings.Contains(r.stderr.String(), `debounce=10ms`) {
			t.Errorf("the start does not say it watches with reload.debounce:\n%s", r.stderr)
		}
		e.expectReload(r, "rules=1", func() { e.writeFile(e.rules, runRootLoginRule) })
		if code := r.stop(t); code != 0 {
			t.Fatalf("exit code = %d, want 0; log:\n%s", code, r.stderr)
		}
	})
}
