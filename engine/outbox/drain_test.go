package outbox

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/internal/testservers"
	"github.com/trailwatch/trailwatch/notifiers"
)

// heldErr is what a delivery ledger answers when another process holds
// the alert's delivery until a time.
type heldErr struct{ until time.Time }

func (e heldErr) Error() string {
	return fmt.Sprintf("another process holds the delivery until %s", e.until)
}
func (e heldErr) HeldUntil() time.Time { return e.until }

// stepUntilSent moves the clock to each time notifier's drainer waits
// for, until n has sent key.
func (e *env) stepUntilSent(o *Outbox, notifier string, n *fakeNotifier, key string) {
	e.t.Helper()
	for step := 0; !slices.Contains(n.Sent(), key); step++ {
		if step > 200 {
			e.t.Fatalf("%s not delivered after %d clock steps; now %s", key, step, e.clock.Now())
		}
		var until time.Time
		waitFor(e.t, "the drainer to wait", func() bool {
			s, u, ok := quiet(o, notifier, e.clock.Now())
			until = u
			return ok && s == statusWaiting || slices.Contains(n.Sent(), key)
		})
		if !until.IsZero() {
			e.clock.Set(until)
		}
	}
}

// TestHeldDeliveryDelaysOnlyItself: the head of a queue is held by
// another process (it died mid-send; its claim runs for a minute). The
// alerts behind it, and one enqueued meanwhile, are delivered at once; the
// held one when the claim runs out, and a restart does not make the queue
// wait for it again. The delays are measured on the fake clock.
func TestHeldDeliveryDelaysOnlyItself(t *testing.T) {
	const claim = time.Minute
	e := newEnv(t)
	o := e.open()
	holdUntil := t0.Add(claim)
	n := &fakeNotifier{clock: e.clock, outcome: func(_ context.Context, _ int, a notifiers.Alert) error {
		if a.DedupKey == "x" && e.clock.Now().Before(holdUntil) {
			return heldErr{holdUntil}
		}
		return nil
	}}
	mustEnqueue(t, o, 3, items("slack", "x", "y", "z")...)
	stop := run(t, o, map[string]notifiers.Notifier{"slack": n})

	waitFor(t, "the alerts behind the held one", func() bool { return len(n.Sent()) == 2 })
	mustEnqueue(t, o, 1, items("slack", "w")...)
	waitFor(t, "an alert enqueued while the held one waits", func() bool { return len(n.Sent()) == 3 && o.Depth("slack") == 1 })
	if got, want := n.Sent(), []string{"y", "z", "w"}; !slices.Equal(got, want) {
		t.Fatalf("sent %v, want %v first", got, want)
	}
	delays := map[string]time.Duration{}
	for _, en := range list(t, o, Delivered) {
		delays[en.Key] = en.DeliveredAt.Sub(en.EnqueuedAt)
	}
	for _, k := range []string{"y", "z", "w"} {
		if delays[k] != 0 {
			t.Errorf("%s delivered %s after its enqueue, want at once (the held alert must not delay it)", k, delays[k])
		}
	}
	pending := list(t, o, Pending)
	if len(pending) != 1 || pending[0].Key != "x" {
		t.Fatalf("pending = %+v, want only x", pending)
	}

	// A restart finds x held and still steps past it.
	stop()
	mustEnqueue(t, o, 1, items("slack", "v")...)
	run(t, o, map[string]notifiers.Notifier{"slack": n})
	waitFor(t, "an alert enqueued before a restart", func() bool { return slices.Contains(n.Sent(), "v") })

	// Now let the clock run until x goes out.
	e.stepUntilSent(o, "slack", n, "x")
	waitFor(t, "x recorded as delivered", func() bool { return o.Depth("slack") == 0 })
	for _, en := range list(t, o, Delivered) {
		delays[en.Key] = en.DeliveredAt.Sub(en.EnqueuedAt)
	}
	if d := delays["x"]; d < claim || d > claim+heldMargin+DefaultInitialBackoff {
		t.Errorf("the held alert was delivered %s after its enqueue, want just after its claim of %s", d, claim)
	}
	t.Logf("delays on the fake clock: %v", delays)
}

// TestFailedDeliveryStillHoldsTheQueue: an ordinary failure (the notifier
// is down) keeps first in, first out: nothing is sent past it.
func TestFailedDeliveryStillHoldsTheQueue(t *testing.T) {
	e := newEnv(t)
	o := e.open()
	n := &fakeNotifier{clock: e.clock, outcome: func(_ context.Context, call int, a notifiers.Alert) error {
		if call == 1 {
			return errRelayDown
		}
		return nil
	}}
	mustEnqueue(t, o, 2, items("email", "a", "b")...)
	run(t, o, map[string]notifiers.Notifier{"email": n})
	until := e.waitBackoff(o, "email")
	if n.Calls() != 1 || len(n.Sent()) != 0 {
		t.Fatalf("while the head backs off: %d calls, sent %v; want 1 call and nothing sent", n.Calls(), n.Sent())
	}
	e.clock.Set(until)
	waitFor(t, "both alerts", func() bool { return len(n.Sent()) == 2 })
	if got, want := n.Sent(), []string{"a", "b"}; !slices.Equal(got, want) {
		t.Errorf("sent %v, want %v", got, want)
	}
}

// TestDeadProcessClaimDelaysOnlyItsAlert is the same through the real
// delivery ledger on moto: a process claimed alert x and died before
// recording it; this process's outbox holds x, y and z for the same
// notifier. y and z are delivered at once, x once the dead process's
// claim runs out, and each once. The delays are measured on the fake
// clock that both the ledger and the outbox use.
func TestDeadProcessClaimDelaysOnlyItsAlert(t *testing.T) {
	const lease = 30 * time.Second
	moto := testservers.StartMoto(t)
	t.Setenv("AWS_ENDPOINT_URL", moto.Endpoint)
	client, err := dynamostate.NewClient(context.Background(), "us-east-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := dynamostate.CreateTable(context.Background(), client, "deliveries"); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	ledger, err := dynamostate.New(client, "deliveries", dynamostate.Options{Lease: lease, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	x := alert("x")
	if c, err := ledger.Claim(context.Background(), dynamostate.DeliveryKey(&x), "slack", x.RuleID); err != nil || c.Status != dynamostate.Claimed {
		t.Fatalf("the dead process's claim: %+v, %v", c, err)
	}
	sent := &fakeNotifier{clock: e.clock}
	o := e.open()
	mustEnqueue(t, o, 3, items("slack", "x", "y", "z")...)
	run(t, o, map[string]notifiers.Notifier{"slack": dynamostate.NewNotifier("slack", sent, ledger, dynamostate.NotifierOptions{})})

	waitFor(t, "the alerts behind the held one", func() bool { return len(sent.Sent()) == 2 && o.Depth("slack") == 1 })
	e.stepUntilSent(o, "slack", sent, "x")
	waitFor(t, "x recorded as delivered", func() bool { return o.Depth("slack") == 0 })
	delays := map[string]time.Duration{}
	for _, en := range list(t, o, Delivered) {
		delays[en.Key] = en.DeliveredAt.Sub(en.EnqueuedAt)
	}
	t.Logf("delays on the fake clock: %v (the dead process's claim: %s)", delays, lease)
	if delays["y"] != 0 || delays["z"] != 0 {
		t.Errorf("y and z delivered after %s and %s, want at once", delays["y"], delays["z"])
	}
	if d := delays["x"]; d < lease || d > lease+heldMargin+DefaultInitialBackoff {
		t.Errorf("x delivered after %s, want just after the dead process's claim of %s", d, lease)
	}
	if got := sent.Sent(); len(got) != 3 {
		t.Errorf("sent %v, want each of x, y, z once", got)
	}
}

// TestDepthExportedAtStart: every notifier Run delivers to has its depth
// from the start, 0 included, before anything was enqueued for it.
func TestDepthExportedAtStart(t *testing.T) {
	e := newEnv(t)
	o := e.open()
	mustEnqueue(t, o, 2, items("email", "a", "b")...)
	stuck := &fakeNotifier{outcome: func(ctx context.Context, _ int, _ notifiers.Alert) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	run(t, o, map[string]notifiers.Notifier{"email": stuck, "slack": &fakeNotifier{}})
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "trailwatch_outbox_depth" {
			for _, m := range mf.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	if want := map[string]float64{"email": 2, "slack": 0}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("trailwatch_outbox_depth = %v, want %v", got, want)
	}
}
