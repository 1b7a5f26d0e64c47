package outbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/notifiers"
)

func TestDeliveryOrder(t *testing.T) {
	e := newEnv(t)
	o := e.open()
	n := &fakeNotifier{}

	// Half before Run, half while it runs: both halves keep enqueue order.
	first, second := keys("a", 10), keys("b", 10)
	mustEnqueue(t, o, 10, items("slack", first...)...)
	run(t, o, map[string]notifiers.Notifier{"slack": n})
	for _, k := range second {
		mustEnqueue(t, o, 1, items("slack", k)...)
	}
	want := append(slices.Clone(first), second...)
	waitFor(t, "20 deliveries", func() bool { return len(n.Sent()) == len(want) })
	if got := n.Sent(); !slices.Equal(got, want) {
		t.Errorf("delivery order:\n got %v\nwant %v", got, want)
	}
	// Notify returns before the delivery is recorded: wait for the record.
	waitFor(t, "an empty queue", func() bool { return o.Depth("slack") == 0 })
	for _, en := range list(t, o, Delivered) {
		if en.Attempts != 1 || !en.DeliveredAt.Equal(t0) {
			t.Errorf("entry %s: attempts %d delivered at %v, want 1 at %v", en.Key, en.Attempts, en.DeliveredAt, t0)
		}
	}
	if got := metricValue(t, e.reg, "trailwatch_alerts_total", map[string]string{"notifier": "slack", "outcome": "sent"}); got != 20 {
		t.Errorf("trailwatch_alerts_total{sent} = %v, want 20", got)
	}
	if got := metricValue(t, e.reg, "trailwatch_alert_delivery_delay_seconds", map[string]string{"notifier": "slack"}); got != 20 {
		t.Errorf("trailwatch_alert_delivery_delay_seconds count = %v, want 20", got)
	}
}

func TestEnqueue(t *testing.T) {
	tests := []struct {
		name      string
		items     []Item
		wantAdded int
		wantErr   string
	}{
		{"two notifiers", append(items("slack", "k1"), items("email", "k1")...), 2, ""},
		{"duplicate in one batch", items("slack", "k1", "k1", "k2"), 2, ""},
		{"empty key", []Item{{Notifier: "slack", Alert: alert("x")}}, 0, "empty key"},
		{"empty notifier", []Item{{Key: "k", Alert: alert("x")}}, 0, "empty notifier"},
		{"nothing", nil, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newEnv(t).open()
			got, err := o.Enqueue(context.Background(), tt.items...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Enqueue error = %v, want one containing %q", err, tt.wantErr)
				}
				if n := len(list(t, o, All)); n != 0 {
					t.Errorf("a failed Enqueue stored %d entries, want 0", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("Enqueue: %v", err)
			}
			if got != tt.wantAdded {
				t.Errorf("added = %d, want %d", got, tt.wantAdded)
			}
			if n := len(list(t, o, Pending)); n != tt.wantAdded {
				t.Errorf("%d pending entries, want %d", n, tt.wantAdded)
			}
		})
	}

	t.Run("cancelled context", func(t *testing.T) {
		o := newEnv(t).open()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := o.Enqueue(ctx, items("slack", "k")...); !errors.Is(err, context.Canceled) {
			t.Errorf("Enqueue error = %v, want context.Canceled", err)
		}
	})
}

func TestRetryableErrorThenSuccess(t *testing.T) {
	tests := []struct {
		name      string
		jitter    Jitter
		rand      float64
		wantWaits []time.Duration // between the failed attempts and the next
	}{
		{"decorrelated at its floor", DecorrelatedJitter, 0, []time.Duration{time.Second, time.Second}},
		{"decorrelated at its top", DecorrelatedJitter, 0.999999999, []time.Duration{3 * time.Second, 9 * time.Second}},
		{"full jitter at its top", FullJitter, 0.999999999, []time.Duration{time.Second, 2 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.opts.Jitter = tt.jitter
			e.opts.Rand = func() float64 { return tt.rand }
			o := e.open()
			n := &fakeNotifier{clock: e.clock, outcome: func(_ context.Context, call int, _ notifiers.Alert) error {
				if call <= 2 {
					return fmt.Errorf("post to slack: status 503")
				}
				return nil
			}}
			mustEnqueue(t, o, 1, items("slack", "k1")...)
			run(t, o, map[string]notifiers.Notifier{"slack": n})

			for i, want := range tt.wantWaits {
				until := e.waitBackoff(o, "slack")
				if got := until.Sub(e.clock.Now()); got.Round(time.Second) != want {
					t.Errorf("wait after failure %d = %v, want %v", i+1, got, want)
				}
				en := list(t, o, Pending)
				if len(en) != 1 || en[0].Attempts != i+1 || !strings.Contains(en[0].LastError, "status 503") {
					t.Fatalf("after failure %d: pending entries %+v, want one with %d attempts and the 503", i+1, en, i+1)
				}
				e.clock.Set(until)
			}
			waitFor(t, "the delivery", func() bool { return o.Depth("slack") == 0 })
			if got := n.Calls(); got != 3 {
				t.Errorf("Notify calls = %d, want 3", got)
			}
			d := list(t, o, Delivered)
			if len(d) != 1 || d[0].Attempts != 3 {
				t.Errorf("delivered entries = %+v, want one after 3 attempts", d)
			}
			if got := metricValue(t, e.reg, "trailwatch_alerts_total", map[string]string{"outcome": "retry"}); got != 2 {
				t.Errorf("trailwatch_alerts_total{retry} = %v, want 2", got)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		name     string
		jitter   Jitter
		rand     float64
		attempts int
		prev     time.Duration
		want     time.Duration
	}{
		{"full, first", FullJitter, 0.5, 1, 0, 500 * time.Millisecond},
		{"full, fourth", FullJitter, 0.5, 4, 0, 4 * time.Second},
		{"full, capped", FullJitter, 0.5, 40, 0, 150 * time.Second},
		{"full, zero draw", FullJitter, 0, 3, 0, 0},
		{"decorrelated, first", DecorrelatedJitter, 0.5, 1, 0, 2 * time.Second},
		{"decorrelated, grows from prev", DecorrelatedJitter, 0.5, 5, 10 * time.Second, 15500 * time.Millisecond},
		{"decorrelated, capped", DecorrelatedJitter, 0.999, 9, 4 * time.Minute, 299701 * time.Millisecond},
		{"decorrelated, prev past cap", DecorrelatedJitter, 1, 9, time.Hour, 5 * time.Minute},
		{"decorrelated, floor", DecorrelatedJitter, 0, 9, time.Hour, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &Outbox{opts: Options{Jitter: tt.jitter, Rand: func() float64 { return tt.rand }}}
			o.opts.setDefaults()
			if got := o.backoff(tt.attempts, tt.prev); got != tt.want {
				t.Errorf("backoff(%d, %v) = %v, want %v", tt.attempts, tt.prev, got, tt.want)
			}
		})
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	tests := []struct {
		name  string
		after time.Duration
	}{
		{"longer than the backoff", 30 * time.Second},
		{"longer than the max backoff", 10 * time.Minute},
		{"shorter than the backoff", 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			o := e.open()
			n := &fakeNotifier{clock: e.clock, outcome: func(_ context.Context, call int, _ notifiers.Alert) error {
				if call == 1 {
					return &notifiers.RetryAfterError{Err: errors.New("post to slack: status 429"), After: tt.after}
				}
				return nil
			}}
			mustEnqueue(t, o, 1, items("slack", "k1")...)
			run(t, o, map[string]notifiers.Notifier{"slack": n})

			until := e.waitBackoff(o, "slack")
			if want := t0.Add(tt.after); !until.Equal(want) {
				t.Errorf("next attempt at %v, want %v", until, want)
			}
			e.clock.Set(until.Add(-time.Nanosecond))
			if s, _ := o.drainer("slack").get(); s != statusWaiting || n.Calls() != 1 {
				t.Fatalf("a nanosecond before Retry-After: status %v, %d calls; want still waiting after 1 call", s, n.Calls())
			}
			e.clock.Set(until)
			waitFor(t, "the delivery", func() bool { return len(n.Sent()) == 1 })
			if when := n.When(); len(when) != 2 || when[1].Before(t0.Add(tt.after)) {
				t.Errorf("calls at %v, want the second not before %v", when, t0.Add(tt.after))
			}
		})
	}
}

func TestPermanentErrorDeadLetters(t *testing.T) {
	e := newEnv(t)
	o := e.open()
	var accept atomic.Bool
	n := &fakeNotifier{outcome: func(_ context.Context, _ int, a notifiers.Alert) error {
		if a.DedupKey == "bad" && !accept.Load() {
			return notifiers.Permanent(errors.New("post to slack: status 404: channel_not_found"))
		}
		return nil
	}}
	mustEnqueue(t, o, 3, items("slack", "good1", "bad", "good2")...)
	run(t, o, map[string]notifiers.Notifier{"slack": n})
	waitFor(t, "the good alerts", func() bool { return len(n.Sent()) == 2 && o.Depth("slack") == 0 })
	if got, want := n.Sent(), []string{"good1", "good2"}; !slices.Equal(got, want) {
		t.Errorf("sent %v, want %v", got, want)
	}

	dead := list(t, o, Dead)
	if len(dead) != 1 || dead[0].Key != "bad" || dead[0].Attempts != 1 ||
		!strings.Contains(dead[0].LastError, "channel_not_found") || !dead[0].DeadAt.Equal(t0) {
		t.Fatalf("dead letters = %+v, want bad after 1 attempt with its error", dead)
	}
	if dead[0].Alert.DedupKey != "bad" || dead[0].Alert.RuleID != "root-login" {
		t.Errorf("dead letter alert = %+v, want the enqueued alert", dead[0].Alert)
	}
	waitFor(t, "an empty queue", func() bool { return o.Depth("slack") == 0 })
	if got := metricValue(t, e.reg, "trailwatch_alerts_total", map[string]string{"outcome": "dead"}); got != 1 {
		t.Errorf("trailwatch_alerts_total{dead} = %v, want 1", got)
	}

	t.Run("requeue errors", func(t *testing.T) {
		tests := []struct {
			key, notifier string
			want          error
		}{
			{"good1", "slack", ErrNotDead},
			{"nope", "slack", ErrNotFound},
			{"bad", "email", ErrNotFound},
		}
		for _, tt := range tests {
			if err := o.Requeue(tt.key, tt.notifier); !errors.Is(err, tt.want) {
				t.Errorf("Requeue(%q, %q) = %v, want %v", tt.key, tt.notifier, err, tt.want)
			}
		}
	})

	t.Run("requeue delivers", func(t *testing.T) {
		accept.Store(true)
		if err := o.Requeue("bad", "slack"); err != nil {
			t.Fatalf("Requeue: %v", err)
		}
		waitFor(t, "the requeued alert", func() bool { return o.Depth("slack") == 0 })
		if got := list(t, o, Dead); len(got) != 0 {
			t.Errorf("dead letters after requeue = %+v, want none", got)
		}
		if got := len(list(t, o, Delivered)); got != 3 {
			t.Errorf("%d delivered, want 3", got)
		}
	})
}

func TestMaxAgeDeadLetters(t *testing.T) {
	e := newEnv(t)
	e.opts.MaxAge = time.Hour
	e.opts.MaxBackoff = 25 * time.Minute
	e.opts.Rand = func() float64 { return 0.999 }
	o := e.open()
	n := &fakeNotifier{clock: e.clock, outcome: func(context.Context, int, notifiers.Alert) error { return errRelayDown }}
	mustEnqueue(t, o, 1, items("email", "k1")...)
	run(t, o, map[string]notifiers.Notifier{"email": n})

	for len(list(t, o, Dead)) == 0 {
		until := e.waitBackoff(o, "email")
		if until.After(t0.Add(time.Hour)) {
			t.Fatalf("next attempt at %v, past the max age deadline %v", until, t0.Add(time.Hour))
		}
		e.clock.Set(until)
		waitFor(t, "the attempt", func() bool {
			_, _, ok := quiet(o, "email", e.clock.Now())
			return ok || len(list(t, o, Dead)) == 1
		})
	}
	dead := list(t, o, Dead)[0]
	if !dead.DeadAt.Equal(t0.Add(time.Hour)) || !strings.Contains(dead.LastError, "gave up after") ||
		!strings.Contains(dead.LastError, "connection refused") {
		t.Errorf("dead letter = %+v, want it dead at the 1h deadline with the relay error", dead)
	}
}

func TestSlowNotifierDoesNotBlockOthers(t *testing.T) {
	e := newEnv(t)
	o := e.open()
	release := make(chan struct{})
	slow := &fakeNotifier{outcome: func(ctx context.Context, _ int, _ notifiers.Alert) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	fast := &fakeNotifier{}
	run(t, o, map[string]notifiers.Notifier{"slow": slow, "fast": fast})

	mustEnqueue(t, o, 2, items("slow", "s1", "s2")...)
	waitFor(t, "slow to be sending", func() bool { s, _ := o.drainer("slow").get(); return s == statusSending })
	ks := keys("f", 10)
	mustEnqueue(t, o, 10, items("fast", ks...)...)
	waitFor(t, "fast deliveries", func() bool { return len(fast.Sent()) == 10 })
	if got := slow.Sent(); len(got) != 0 {
		t.Errorf("slow sent %v while blocked", got)
	}
	if got := o.Depth("slow"); got != 2 {
		t.Errorf("Depth(slow) = %d, want 2", got)
	}
	close(release)
	waitFor(t, "slow deliveries", func() bool { return len(slow.Sent()) == 2 })
}

func TestAttemptTimeout(t *testing.T) {
	tests := []struct {
		name      string
		fakeClock bool
	}{
		{"fake clock", true},
		{"real clock", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.opts.AttemptTimeout = 30 * time.Second
			if !tt.fakeClock {
				e.opts.After = nil
				e.opts.AttemptTimeout = 10 * time.Millisecond
			}
			o := e.open()
			n := &fakeNotifier{outcome: func(ctx context.Context, call int, _ notifiers.Alert) error {
				if call > 1 {
					return nil
				}
				<-ctx.Done() // a hung server
				return fmt.Errorf("post to webhook: %w", ctx.Err())
			}}
			mustEnqueue(t, o, 1, items("webhook", "k1")...)
			run(t, o, map[string]notifiers.Notifier{"webhook": n})
			if tt.fakeClock {
				waitFor(t, "the attempt", func() bool { return n.Calls() == 1 })
				waitFor(t, "the attempt's timer", func() bool { return e.clock.waiting(e.clock.Now().Add(30 * time.Second)) })
				e.clock.Advance(30 * time.Second)
			}
			e.waitBackoff(o, "webhook")
			p := list(t, o, Pending)
			if len(p) != 1 || !strings.Contains(p[0].LastError, "timed out after") {
				t.Fatalf("pending = %+v, want the entry with a timeout error", p)
			}
		})
	}
}

func TestShutdownLeavesInFlightPending(t *testing.T) {
	e := newEnv(t)
	o := e.open()
	n := &fakeNotifier{outcome: func(ctx context.Context, _ int, _ notifiers.Alert) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	mustEnqueue(t, o, 1, items("slack", "k1")...)
	stop := run(t, o, map[string]notifiers.Notifier{"slack": n})
	waitFor(t, "the attempt", func() bool { return n.Calls() == 1 })
	stop()

	p := list(t, o, Pending)
	if len(p) != 1 || p[0].Attempts != 0 || p[0].LastError != "" || !p[0].NextAttempt.IsZero() {
		t.Errorf("after shutdown: pending %+v, want the entry untouched", p)
	}
}

func TestRunTwice(t *testing.T) {
	o := newEnv(t).open()
	run(t, o, map[string]notifiers.Notifier{"slack": &fakeNotifier{}})
	if err := o.Run(context.Background(), nil); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
}
