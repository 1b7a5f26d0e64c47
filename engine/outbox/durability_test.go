package outbox

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/notifiers"
)

func TestRestartDeliversPendingOnce(t *testing.T) {
	e := newEnv(t)
	ks := keys("k", 5)

	o := e.open()
	mustEnqueue(t, o, 5, items("slack", ks...)...)
	if err := o.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	o = e.open()
	if got := o.Depth("slack"); got != 5 {
		t.Errorf("Depth after reopen = %d, want 5", got)
	}
	if got := metricValue(t, e.reg, "trailwatch_outbox_depth", map[string]string{"notifier": "slack"}); got != 5 {
		t.Errorf("trailwatch_outbox_depth after reopen = %v, want 5", got)
	}
	first := &fakeNotifier{}
	stop := run(t, o, map[string]notifiers.Notifier{"slack": first})
	waitFor(t, "5 deliveries", func() bool { return o.Depth("slack") == 0 })
	stop()
	if err := o.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// The source re-reads its last batch after the restart.
	o = e.open()
	mustEnqueue(t, o, 0, items("slack", ks...)...)
	second := &fakeNotifier{}
	run(t, o, map[string]notifiers.Notifier{"slack": second})
	waitFor(t, "the drainer to find nothing to do", func() bool {
		_, _, ok := quiet(o, "slack", e.clock.Now())
		return ok
	})
	if got := first.Sent(); !slices.Equal(got, ks) {
		t.Errorf("first run sent %v, want %v", got, ks)
	}
	if got := second.Calls(); got != 0 {
		t.Errorf("second run made %d calls, want 0: %v", got, second.Sent())
	}
}

func TestCrash(t *testing.T) {
	t.Run("enqueued alerts survive", func(t *testing.T) {
		e := newEnv(t)
		o := e.open()
		ks := keys("k", 3)
		mustEnqueue(t, o, 6, append(items("slack", ks...), items("email", ks...)...)...)

		// The process dies here: no Close. The file is what it left.
		crashed := copyFile(t, e.path)
		o2 := e.open(crashed)
		if got := len(list(t, o2, Pending)); got != 6 {
			t.Fatalf("%d pending after the crash, want 6", got)
		}
		slack, email := &fakeNotifier{}, &fakeNotifier{}
		run(t, o2, map[string]notifiers.Notifier{"slack": slack, "email": email})
		waitFor(t, "every delivery", func() bool { return o2.Depth("slack")+o2.Depth("email") == 0 })
		for name, n := range map[string]*fakeNotifier{"slack": slack, "email": email} {
			if got := n.Sent(); !slices.Equal(got, ks) {
				t.Errorf("%s sent %v, want %v", name, got, ks)
			}
		}
	})

	// The documented at-least-once edge: a crash after Notify succeeded but
	// before the delivery was recorded sends that one alert again, and only
	// that one.
	t.Run("crash during Notify resends that alert once", func(t *testing.T) {
		e := newEnv(t)
		o := e.open()
		inFlight, release := make(chan struct{}), make(chan struct{})
		n := &fakeNotifier{outcome: func(_ context.Context, call int, _ notifiers.Alert) error {
			if call == 2 {
				close(inFlight)
				<-release
			}
			return nil
		}}
		mustEnqueue(t, o, 3, items("slack", "k1", "k2", "k3")...)
		run(t, o, map[string]notifiers.Notifier{"slack": n})
		select {
		case <-inFlight:
		case <-time.After(10 * time.Second):
			t.Fatal("the second alert was never sent")
		}
		crashed := copyFile(t, e.path)
		close(release)

		o2 := e.open(crashed)
		after := &fakeNotifier{}
		run(t, o2, map[string]notifiers.Notifier{"slack": after})
		waitFor(t, "the rest", func() bool { return o2.Depth("slack") == 0 })
		if got, want := after.Sent(), []string{"k2", "k3"}; !slices.Equal(got, want) {
			t.Errorf("after the crash sent %v, want %v", got, want)
		}
	})
}

func TestReenqueueIsNoOp(t *testing.T) {
	tests := []struct {
		name    string
		outcome error
		state   State
	}{
		{"pending", errRelayDown, Pending},
		{"delivered", nil, Delivered},
		{"dead", notifiers.Permanent(errors.New("status 403")), Dead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			o := e.open()
			n := &fakeNotifier{outcome: func(context.Context, int, notifiers.Alert) error { return tt.outcome }}
			run(t, o, map[string]notifiers.Notifier{"sns": n})
			mustEnqueue(t, o, 1, items("sns", "k1")...)
			waitFor(t, "the entry to be "+tt.state.String(), func() bool {
				es := list(t, o, tt.state)
				_, _, ok := quiet(o, "sns", e.clock.Now())
				return len(es) == 1 && ok
			})
			calls := n.Calls()

			mustEnqueue(t, o, 0, items("sns", "k1")...)
			// Another notifier's pair with the same key is its own entry.
			mustEnqueue(t, o, 1, items("pagerduty", "k1")...)
			waitFor(t, "the drainer to settle", func() bool { _, _, ok := quiet(o, "sns", e.clock.Now()); return ok })
			if got := n.Calls(); got != calls {
				t.Errorf("Notify calls went from %d to %d after a re-enqueue", calls, got)
			}
			if got := len(list(t, o, All)); got != 2 {
				t.Errorf("%d entries, want 2", got)
			}
		})
	}
}

func TestRetentionPurge(t *testing.T) {
	e := newEnv(t)
	o := e.open()
	n := &fakeNotifier{outcome: func(_ context.Context, _ int, a notifiers.Alert) error {
		if a.DedupKey == "refused" {
			return notifiers.Permanent(errors.New("status 400"))
		}
		return nil
	}}
	run(t, o, map[string]notifiers.Notifier{"slack": n})
	mustEnqueue(t, o, 2, items("slack", "sent", "refused")...)
	// No drainer runs for "email": its entry stays pending, however old.
	mustEnqueue(t, o, 1, items("email", "waiting")...)
	waitFor(t, "both settled", func() bool { return o.Depth("slack") == 0 })

	tests := []struct {
		name       string
		at         time.Time
		wantPurged int
		wantAdded  int
	}{
		{"a second before retention", t0.Add(DefaultRetention - time.Second), 0, 0},
		{"at retention", t0.Add(DefaultRetention), 2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.clock.Set(tt.at)
			got, err := o.Purge()
			if err != nil {
				t.Fatalf("Purge: %v", err)
			}
			if got != tt.wantPurged {
				t.Errorf("Purge() = %d, want %d", got, tt.wantPurged)
			}
			if p := list(t, o, Pending); len(p) != 1 || p[0].Key != "waiting" {
				t.Errorf("pending = %+v, want the email entry kept", p)
			}
			mustEnqueue(t, o, tt.wantAdded, items("slack", "sent", "refused")...)
		})
	}
}

func TestBackgroundPurge(t *testing.T) {
	e := newEnv(t)
	e.opts.PurgeInterval = time.Hour
	e.opts.Retention = 2 * time.Hour
	o := e.open()
	run(t, o, map[string]notifiers.Notifier{"slack": &fakeNotifier{}})
	mustEnqueue(t, o, 1, items("slack", "k1")...)
	waitFor(t, "the delivery", func() bool { return len(list(t, o, Delivered)) == 1 })
	for range 2 {
		// Advance only once the purge loop waits for its next round, or
		// the round would be set an hour after the clock moved, and never
		// come.
		waitFor(t, "the purge loop to wait", func() bool { return e.clock.waiting(e.clock.Now().Add(time.Hour)) })
		e.clock.Advance(time.Hour)
	}
	waitFor(t, "the purge", func() bool { return len(list(t, o, All)) == 0 })
}

// TestTenMinuteOutage is the promise: when the mail relay is down
// for ten minutes, nothing is lost and nothing is sent twice.
func TestTenMinuteOutage(t *testing.T) {
	e := newEnv(t)
	e.opts.Rand = func() float64 { return 0.5 }
	o := e.open()
	recovery := t0.Add(10 * time.Minute)
	email := &fakeNotifier{clock: e.clock, outcome: func(context.Context, int, notifiers.Alert) error {
		if e.clock.Now().Before(recovery) {
			return errRelayDown
		}
		return nil
	}}
	slack := &fakeNotifier{clock: e.clock}
	run(t, o, map[string]notifiers.Notifier{"email": email, "slack": slack})

	// One alert every 20 s through the outage, to both notifiers.
	ks := keys("k", 30)
	enqueueAt := func(i int) time.Time { return t0.Add(time.Duration(i) * 20 * time.Second) }
	next := 0
	for {
		var status drainStatus
		var until time.Time
		waitFor(t, "both drainers to be quiet", func() bool {
			var ok bool
			status, until, ok = quiet(o, "email", e.clock.Now())
			_, _, slackOK := quiet(o, "slack", e.clock.Now())
			return ok && slackOK
		})
		if next == len(ks) && o.Depth("email") == 0 {
			break
		}
		step := time.Time{}
		if next < len(ks) {
			step = enqueueAt(next)
		}
		if status == statusWaiting && (step.IsZero() || until.Before(step)) {
			step = until
		}
		if step.IsZero() {
			t.Fatalf("stuck: %d pending for email, drainer %v", o.Depth("email"), status)
		}
		e.clock.Set(step)
		if next < len(ks) && !e.clock.Now().Before(enqueueAt(next)) {
			mustEnqueue(t, o, 2, append(items("email", ks[next]), items("slack", ks[next])...)...)
			next++
		}
	}

	if got := email.Sent(); !slices.Equal(got, ks) {
		t.Errorf("email sent %v, want each of %v once, in order", got, ks)
	}
	waitFor(t, "slack deliveries", func() bool { return o.Depth("slack") == 0 })
	if got := slack.Sent(); !slices.Equal(got, ks) {
		t.Errorf("slack sent %v, want %v", got, ks)
	}
	// Slack was never held up by the relay: each alert went out the moment
	// it was enqueued.
	for i, when := range slack.When() {
		if !when.Equal(enqueueAt(i)) {
			t.Errorf("slack call %d at %v, want %v", i, when, enqueueAt(i))
		}
	}
	if got := list(t, o, Dead); len(got) != 0 {
		t.Errorf("dead letters = %+v, want none", got)
	}
	for _, en := range list(t, o, Delivered) {
		if en.Notifier == "email" && en.DeliveredAt.Before(recovery) {
			t.Errorf("email %s delivered at %v, before the relay came back", en.Key, en.DeliveredAt)
		}
	}
	labels := map[string]string{"notifier": "email", "outcome": "retry"}
	if got := metricValue(t, e.reg, "trailwatch_alerts_total", labels); got == 0 {
		t.Error("trailwatch_alerts_total{email,retry} = 0, want the retries counted")
	}
	labels["outcome"] = "sent"
	if got := metricValue(t, e.reg, "trailwatch_alerts_total", labels); got != 30 {
		t.Errorf("trailwatch_alerts_total{email,sent} = %v, want 30", got)
	}
	if got := metricValue(t, e.reg, "trailwatch_outbox_depth", map[string]string{"notifier": "email"}); got != 0 {
		t.Errorf("trailwatch_outbox_depth{email} = %v, want 0", got)
	}
}

func TestOpenLocking(t *testing.T) {
	e := newEnv(t)
	e.opts.LockTimeout = 50 * time.Millisecond
	o := e.open()
	mustEnqueue(t, o, 1, items("slack", "k1")...)

	tests := []struct {
		name     string
		readOnly bool
	}{
		{"read-write", false},
		{"read-only", true},
	}
	for _, tt := range tests {
		t.Run(tt.name+" while held", func(t *testing.T) {
			opts := e.opts
			opts.ReadOnly = tt.readOnly
			o2, err := Open(e.path, opts)
			if err == nil {
				o2.Close()
				t.Fatal("second Open succeeded, want ErrLocked")
			}
			if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "is trailwatch running") {
				t.Errorf("second Open error = %v, want ErrLocked with a hint", err)
			}
		})
	}

	t.Run("read-only after close", func(t *testing.T) {
		if err := o.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		opts := e.opts
		opts.ReadOnly = true
		opts.Registerer = nil
		r1, err := Open(e.path, opts)
		if err != nil {
			t.Fatalf("read-only Open: %v", err)
		}
		defer r1.Close()
		r2, err := Open(e.path, opts)
		if err != nil {
			t.Fatalf("second read-only Open: %v", err)
		}
		defer r2.Close()
		if got := list(t, r2, Pending); len(got) != 1 || got[0].Key != "k1" {
			t.Errorf("read-only List = %+v, want k1", got)
		}
		if got := r1.Depth("slack"); got != 1 {
			t.Errorf("read-only Depth = %d, want 1", got)
		}
		if _, err := r1.Enqueue(context.Background(), items("slack", "k2")...); err == nil {
			t.Error("Enqueue on a read-only outbox succeeded")
		}
		if err := r1.Run(context.Background(), nil); err == nil {
			t.Error("Run on a read-only outbox succeeded")
		}
	})
}

func TestParseState(t *testing.T) {
	for _, s := range []State{All, Pending, Delivered, Dead} {
		got, err := ParseState(s.String())
		if err != nil || got != s {
			t.Errorf("ParseState(%q) = %v, %v; want %v", s, got, err, s)
		}
	}
	if _, err := ParseState("sent"); err == nil {
		t.Error(`ParseState("sent") succeeded`)
	}
}

func TestRedactedErrorIsBounded(t *testing.T) {
	long := strings.Repeat("é", 2000)
	got := redactedError(errors.New(long))
	if len(got) > maxErrorLen+len("…") || !strings.HasSuffix(got, "…") {
		t.Errorf("redactedError kept %d bytes, want at most %d and an ellipsis", len(got), maxErrorLen)
	}
	if !strings.HasPrefix(long, strings.TrimSuffix(got, "…")) {
		t.Error("redactedError cut inside a rune")
	}
}
