package rules

import (
	"strings"
	"testing"
	"time"
)

func TestParseWindow(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"10m", 10 * time.Minute, false},
		{"1h30m", 90 * time.Minute, false},
		{"2d", 48 * time.Hour, false},
		{"0s", 0, true},
		{"-1m", 0, true},
		{"d", 0, true},
		{"soon", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseWindow(tc.in)
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("ParseWindow(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
			}
		})
	}
}

func TestThresholdStepKeepsAtMostCountTimes(t *testing.T) {
	th := &Threshold{Count: 4, Window: time.Minute}
	var s ThresholdState
	base := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	fired := 0
	for i := 0; i < 1000; i++ {
		// Every 20s: never more than 3 inside a minute, so it never fires.
		if th.step(&s, base.Add(time.Duration(i)*20*time.Second)).Fired {
			fired++
		}
		if len(s.Times) > th.Count {
			t.Fatalf("group holds %d times, more than the count %d", len(s.Times), th.Count)
		}
	}
	if fired != 0 {
		t.Errorf("fired %d times, want 0", fired)
	}
}

const sequenceRules = `
rules:
  - id: burst
    title: Burst
    severity: low
    when: eventName == "A"
    threshold: {count: 2, window: 1m}
    tests:
      - name: wrong count
        events:
          - {eventVersion: "1.08", eventID: x1, eventName: A, eventTime: "2024-05-01T00:00:00Z"}
          - {eventVersion: "1.08", eventID: x2, eventName: A, eventTime: "2024-05-01T00:00:30Z"}
        expect: {alerts: 2}
      - name: wrong details
        events:
          - {eventVersion: "1.08", eventID: x1, eventName: A, eventTime: "2024-05-01T00:00:00Z"}
          - {eventVersion: "1.08", eventID: x2, eventName: A, eventTime: "2024-05-01T00:00:30Z"}
        expect: {alerts: [{count: 3}]}
      - name: right
        events:
          - {eventVersion: "1.08", eventID: x1, eventName: A, eventTime: "2024-05-01T00:00:00Z"}
          - {eventVersion: "1.08", eventID: x2, eventName: A, eventTime: "2024-05-01T00:00:30Z"}
        expect: {alerts: [{count: 2, event_id: x2, first: "2024-05-01T00:00:00Z", last: "2024-05-01T00:00:30Z", group: []}]}
  - id: repeat
    title: Repeat
    severity: low
    when: eventName == "B"
    tests:
      - name: global window applies
        events:
          - {eventVersion: "1.08", eventID: y1, eventName: B, eventTime: "2024-05-01T00:00:00Z"}
          - {eventVersion: "1.08", eventID: y2, eventName: B, eventTime: "2024-05-01T00:00:30Z"}
        expect: {alerts: 1}
`

func TestSequenceTests(t *testing.T) {
	set, err := LoadFiles([]File{{Name: "seq.yaml", Data: []byte(sequenceRules)}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"wrong count":           "expected 2 alert(s), got 1",
		"wrong details":         "alert 1: count is 2, want 3",
		"right":                 "",
		"global window applies": "",
	}
	for _, res := range set.RunTestsWith(TestOptions{DedupWindow: time.Hour}) {
		t.Run(res.Test.Name, func(t *testing.T) {
			w := want[res.Test.Name]
			if w == "" && !res.Passed {
				t.Errorf("failed: %s", res.Reason)
			}
			if w != "" && (res.Passed || !strings.HasPrefix(res.Reason, w)) {
				t.Errorf("got passed=%v reason %q, want failure %q", res.Passed, res.Reason, w)
			}
		})
	}
	// Without the global window, the repeat is its own alert.
	for _, res := range set.RunTests() {
		if res.Test.Name == "global window applies" && res.Passed {
			t.Error("without a global dedup window two matches must raise two alerts")
		}
	}
}
