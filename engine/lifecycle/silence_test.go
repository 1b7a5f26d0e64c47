package lifecycle_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/lifecycle"
)

func TestSilences(t *testing.T) {
	plain := func(id, ip string, at time.Duration) event {
		return event{id: id, name: "StopLogging", ip: ip, at: at}
	}
	tests := []struct {
		name    string
		silence lifecycle.Silence
		events  []event
		want    []want
	}{
		{"rule silenced inside its window",
			lifecycle.Silence{Rule: "plain", StartsAt: t0, EndsAt: t0.Add(time.Hour)},
			[]event{plain("before", "", -time.Second), plain("in", "", 0), plain("end", "", time.Hour)},
			[]want{{"plain", "before", 1, 0}, {"plain", "end", 1, 0}}},
		{"match narrows the silence",
			lifecycle.Silence{Rule: "plain", Match: `sourceIPAddress == "192.0.2.9"`, StartsAt: t0, EndsAt: t0.Add(time.Hour)},
			[]event{plain("other", "192.0.2.1", 0), plain("quiet", "192.0.2.9", 0)},
			[]want{{"plain", "other", 1, 0}}},
		{"silence of another rule does nothing",
			lifecycle.Silence{Rule: "key-created", StartsAt: t0, EndsAt: t0.Add(time.Hour)},
			[]event{plain("p", "", 0)},
			[]want{{"plain", "p", 1, 0}}},
		{"silence of every rule by match",
			lifecycle.Silence{Match: `eventName == "StopLogging"`, StartsAt: t0, EndsAt: t0.Add(time.Hour)},
			[]event{plain("p", "", 0)},
			nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.silence.Comment = "test"
			s, err := lifecycle.AddSilence(dir, tc.silence, t0)
			if err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, lifecycle.Config{}, lifecycle.Options{StateDir: dir})
			check(t, h.batch(tc.events...), tc.want)
			silenced := len(tc.events) - len(tc.want)
			if got := h.lc.Silenced()[s.ID].Count; got != silenced {
				t.Errorf("recorded %d silenced alerts, want %d", got, silenced)
			}
			recs, err := lifecycle.ReadSilenced(dir)
			if err != nil || recs[s.ID].Count != silenced {
				t.Errorf("state file records %+v (%v), want %d silenced", recs[s.ID], err, silenced)
			}
		})
	}
}

func TestSilenceFileChangesArePickedUp(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, lifecycle.Config{}, lifecycle.Options{StateDir: dir})
	check(t, h.batch(event{id: "p1", name: "StopLogging"}), []want{{"plain", "p1", 1, 0}})

	s, err := lifecycle.AddSilence(dir, lifecycle.Silence{Rule: "plain", Comment: "c", StartsAt: t0, EndsAt: t0.Add(24 * time.Hour)}, t0)
	if err != nil {
		t.Fatal(err)
	}
	check(t, h.batch(event{id: "p2", name: "StopLogging", at: time.Hour}), nil)

	if err := lifecycle.ExpireSilence(dir, s.ID, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	check(t, h.batch(event{id: "p3", name: "StopLogging", at: 3 * time.Hour}), []want{{"plain", "p3", 1, 0}})
	if err := lifecycle.ExpireSilence(dir, s.ID, t0.Add(3*time.Hour)); err == nil {
		t.Error("expiring an expired silence succeeded")
	}
}

func TestInvalidSilences(t *testing.T) {
	dir := t.TempDir()
	for _, s := range []lifecycle.Silence{
		{Comment: "no rule, no match", EndsAt: t0},
		{Rule: "plain", Match: "eventName ==", EndsAt: t0.Add(time.Hour)},
		{Rule: "plain", StartsAt: t0, EndsAt: t0},
	} {
		if _, err := lifecycle.AddSilence(dir, s, t0); err == nil {
			t.Errorf("AddSilence(%+v) succeeded", s)
		}
	}
	// A silence with a broken match in the file (edited by hand) is
	// ignored: alerts go out.
	bad := `{"silences":[{"id":"x","rule":"plain","match":"nope ==","starts_at":"2024-01-01T00:00:00Z","ends_at":"2030-01-01T00:00:00Z"}]}`
	if err := os.WriteFile(filepath.Join(dir, lifecycle.SilencesFileName), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, lifecycle.Config{}, lifecycle.Options{StateDir: dir})
	check(t, h.batch(event{id: "p", name: "StopLogging"}), []want{{"plain", "p", 1, 0}})
}
