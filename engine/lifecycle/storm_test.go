package lifecycle_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/lifecycle"
)

func TestStormControl(t *testing.T) {
	storm := map[string]lifecycle.StormConfig{"pager": {Max: 2, Per: time.Minute, DigestEvery: 5 * time.Minute}}
	dir := t.TempDir()
	h := newHarness(t, lifecycle.Config{Samples: 3}, lifecycle.Options{StateDir: dir, Storm: storm})

	admit := func(events ...event) (sent map[string][]string, digests []lifecycle.DigestOutput) {
		t.Helper()
		sent = map[string][]string{}
		b := h.lc.Begin()
		for _, o := range h.process(b, events...) {
			for _, n := range []string{"pager", "chat"} {
				if b.Admit(n, o) {
					sent[n] = append(sent[n], o.Alert.EventID)
				}
			}
		}
		digests = b.Digests()
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		return sent, digests
	}
	var storm1 []event
	for i := 0; i < 10; i++ {
		storm1 = append(storm1, event{id: fmt.Sprint("s", i), name: "StopLogging", at: time.Duration(i) * time.Second})
	}
	sent, digests := admit(storm1...)
	if len(sent["chat"]) != 10 {
		t.Errorf("a notifier without a rate limit got %d of 10 alerts", len(sent["chat"]))
	}
	if fmt.Sprint(sent["pager"]) != "[s0 s1]" || len(digests) != 0 {
		t.Fatalf("pager got %v and %d digests, want [s0 s1] and none yet", sent["pager"], len(digests))
	}

	// A new rate window opens a minute later; the digest is due five
	// minutes after the first folded alert. State survives a restart.
	h2 := newHarness(t, lifecycle.Config{Samples: 3}, lifecycle.Options{StateDir: dir, Storm: storm})
	h = h2
	sent, digests = admit(event{id: "n1", name: "StopLogging", at: time.Minute + 2*time.Second})
	if fmt.Sprint(sent["pager"]) != "[n1]" || len(digests) != 0 {
		t.Fatalf("pager got %v and %d digests, want [n1] and none", sent["pager"], len(digests))
	}
	_, digests = admit(event{id: "n2", name: "StopLogging", at: 5*time.Minute + 2*time.Second})
	if len(digests) != 1 {
		t.Fatalf("got %d digests, want 1", len(digests))
	}
	d := digests[0]
	if d.Notifier != "pager" || d.Alert.RuleID != lifecycle.DigestRuleID || d.Alert.Count != 8 || len(d.Alert.Samples) != 3 ||
		d.Alert.Severity != "info" || d.Key == "" || !d.Alert.FirstTime.Equal(t0.Add(2*time.Second)) {
		t.Errorf("got digest %+v", d)
	}
	if _, digests = admit(event{id: "n3", name: "StopLogging", at: 20 * time.Minute}); len(digests) != 0 {
		t.Errorf("a digest was sent twice")
	}
}

func TestStormConfigValidate(t *testing.T) {
	for _, c := range []lifecycle.StormConfig{{Max: 0, Per: time.Minute}, {Max: 1}, {Max: 1, Per: time.Minute, DigestEvery: -1}} {
		if _, err := lifecycle.Open(lifecycle.Config{}, lifecycle.Options{Storm: map[string]lifecycle.StormConfig{"x": c}}); err == nil {
			t.Errorf("Open accepted %+v", c)
		}
	}
}
