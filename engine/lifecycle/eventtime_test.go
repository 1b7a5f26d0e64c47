package lifecycle_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/lifecycle"
)

// withTime is e's record with its eventTime replaced by the JSON value v.
func withTime(e event, v string) []byte {
	raw := e.raw()
	i := bytes.Index(raw, []byte(`"eventTime":`))
	j := i + len(`"eventTime":`) + bytes.IndexByte(raw[i+len(`"eventTime":`)+1:], '"') + 2
	return append(append(append([]byte(nil), raw[:i+len(`"eventTime":`)]...), v...), raw[j:]...)
}

// processRaw runs raw records through h as one batch.
func (h *harness) processRaw(raws ...[]byte) []lifecycle.Output {
	h.t.Helper()
	b := h.lc.Begin()
	var outs []lifecycle.Output
	for _, raw := range raws {
		alerts, err := h.ev.Evaluate(raw, nil)
		if err != nil {
			h.t.Fatal(err)
		}
		for _, a := range alerts {
			outs = append(outs, b.Process(a.Alert, a.Rule, a.Event)...)
		}
	}
	if err := b.Commit(); err != nil {
		h.t.Fatal(err)
	}
	return outs
}

// TestUntrustedEventTimeCannotBlindThresholds: a forged record stamped 20
// minutes (or centuries) ahead of the clock used to move the windows with
// it, so that the burst after it never reached its threshold; it is now
// sent on its own with a warning, and the burst alerts.
func TestUntrustedEventTimeCannotBlindThresholds(t *testing.T) {
	now := t0.Add(time.Hour)
	deny := func(id string, at time.Duration) event {
		return event{id: id, code: "AccessDenied", at: at, ip: "203.0.113.66"}
	}
	tests := []struct {
		name, forgedTime, warning string
	}{
		{"20 minutes ahead", `"` + now.Add(20*time.Minute).Format(time.RFC3339) + `"`, "is 20m0s ahead of the clock"},
		{"past year 2262", `"2300-01-01T00:00:00Z"`, "ahead of the clock"},
		{"unparseable", `"yesterday"`, "eventTime is missing or not a time"},
		{"before 1970", `"1601-01-01T00:00:00Z"`, "before 1970"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, perBatch := range []bool{false, true} {
				h := newHarness(t, lifecycle.Config{}, lifecycle.Options{Now: func() time.Time { return now }})
				forged := withTime(deny("forged", 0), tt.forgedTime)
				burst := [][]byte{deny("b1", 50*time.Minute).raw(), deny("b2", 51*time.Minute).raw(), deny("b3", 52*time.Minute).raw()}
				var outs []lifecycle.Output
				if perBatch {
					outs = append(outs, h.processRaw(forged)...)
					for _, r := range burst {
						outs = append(outs, h.processRaw(r)...)
					}
				} else {
					outs = h.processRaw(append([][]byte{forged}, burst...)...)
				}
				check(t, outs, []want{{"deny-burst", "forged", 1, 0}, {"deny-burst", "b3", 3, 0}})
				if len(outs) != 2 {
					continue
				}
				if w := outs[0].Alert.EventTimeWarning; !strings.Contains(w, tt.warning) || !strings.Contains(w, "windows were not applied") {
					t.Errorf("forged alert's warning = %q, want it to say %q", w, tt.warning)
				}
				if outs[0].Alert.EventTime.Year() < 1970 {
					t.Errorf("forged alert's event_time = %v", outs[0].Alert.EventTime)
				}
				if outs[1].Alert.EventTimeWarning != "" {
					t.Errorf("the burst's alert has a warning: %q", outs[1].Alert.EventTimeWarning)
				}
			}
		})
	}
}

// TestFutureWatermarkOnDiskIsClamped: a lifecycle.json saved with a
// watermark far ahead (by a version that trusted any eventTime) no longer
// expires every window after a restart.
func TestFutureWatermarkOnDiskIsClamped(t *testing.T) {
	dir := t.TempDir()
	now := t0.Add(time.Hour)
	state := `{"version":1,"watermark":"2099-01-01T00:00:00Z","entries":[],"seen":[]}`
	if err := os.WriteFile(filepath.Join(dir, lifecycle.StateFileName), []byte(state), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	h := newHarness(t, lifecycle.Config{}, lifecycle.Options{StateDir: dir, Now: func() time.Time { return now },
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	deny := func(id string, at time.Duration) event {
		return event{id: id, code: "AccessDenied", at: at, ip: "203.0.113.66"}
	}
	var outs []lifecycle.Output
	for _, e := range []event{deny("b1", 50*time.Minute), deny("b2", 51*time.Minute), deny("b3", 52*time.Minute)} {
		outs = append(outs, h.batch(e)...)
	}
	check(t, outs, []want{{"deny-burst", "b3", 3, 0}})
	if !strings.Contains(logs.String(), "watermark is in the future") {
		t.Errorf("no warning:\n%s", logs.String())
	}
}
