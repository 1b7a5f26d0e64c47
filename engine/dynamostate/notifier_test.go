package dynamostate_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/notifiers"
)

// recorder is a notifier that counts what it sent and fails while err is
// set.
type recorder struct {
	mu     sync.Mutex
	sent   map[string]int
	err    error
	closed bool
}

func (r *recorder) Notify(_ context.Context, a notifiers.Alert) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	if r.sent == nil {
		r.sent = map[string]int{}
	}
	r.sent[a.EventID]++
	return nil
}

func (r *recorder) Close() error { r.closed = true; return nil }

func (r *recorder) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent[id]
}

func alert(id string) notifiers.Alert {
	return notifiers.Alert{RuleID: "rule-1", DedupKey: "dk-" + id, EventID: id}
}

func TestNotifier(t *testing.T) {
	client := motoClient(t)
	ctx := context.Background()

	tests := []struct {
		name string
		run  func(t *testing.T, st *dynamostate.Store, clock *fakeClock)
	}{
		{"an alert is sent once across two processes", func(t *testing.T, st *dynamostate.Store, _ *fakeClock) {
			rec := &recorder{}
			a := dynamostate.NewNotifier("ops", rec, st, dynamostate.NotifierOptions{})
			b := dynamostate.NewNotifier("ops", rec, st, dynamostate.NotifierOptions{})
			for _, n := range []*dynamostate.Notifier{a, b, a} {
				if err := n.Notify(ctx, alert("e1")); err != nil {
					t.Fatalf("Notify: %v", err)
				}
			}
			if got := rec.count("e1"); got != 1 {
				t.Errorf("sent %d times, want 1", got)
			}
		}},
		{"each notifier gets its own delivery", func(t *testing.T, st *dynamostate.Store, _ *fakeClock) {
			rec := &recorder{}
			for _, name := range []string{"ops", "security"} {
				if err := dynamostate.NewNotifier(name, rec, st, dynamostate.NotifierOptions{}).Notify(ctx, alert("e1")); err != nil {
					t.Fatal(err)
				}
			}
			if got := rec.count("e1"); got != 2 {
				t.Errorf("sent %d times, want 2", got)
			}
		}},
		{"a failed send is released and retried at once", func(t *testing.T, st *dynamostate.Store, _ *fakeClock) {
			rec := &recorder{err: notifiers.Permanent(errors.New("boom"))}
			n := dynamostate.NewNotifier("ops", rec, st, dynamostate.NotifierOptions{})
			err := n.Notify(ctx, alert("e1"))
			if !notifiers.IsPermanent(err) {
				t.Fatalf("Notify error = %v, want the wrapped notifier's permanent error", err)
			}
			rec.err = nil
			if err := n.Notify(ctx, alert("e1")); err != nil {
				t.Fatalf("retry: %v", err)
			}
			if got := rec.count("e1"); got != 1 {
				t.Errorf("sent %d times, want 1", got)
			}
		}},
		{"a delivery held by another process is busy until its lease runs out", func(t *testing.T, st *dynamostate.Store, clock *fakeClock) {
			rec := &recorder{}
			// Another process claimed and died before recording.
			a := alert("e1")
			if _, err := st.Claim(ctx, dynamostate.DeliveryKey(&a), "ops", a.RuleID); err != nil {
				t.Fatal(err)
			}
			n := dynamostate.NewNotifier("ops", rec, st, dynamostate.NotifierOptions{})
			err := n.Notify(ctx, a)
			if !errors.Is(err, dynamostate.ErrBusy) || notifiers.IsPermanent(err) {
				t.Fatalf("Notify error = %v, want a retryable ErrBusy", err)
			}
			// It says until when the other process holds it (the outbox
			// steps past it until then).
			var held interface{ HeldUntil() time.Time }
			if !errors.As(err, &held) || !held.HeldUntil().Equal(clock.Now().Add(dynamostate.DefaultLease)) {
				t.Errorf("Notify error %v does not say the delivery is held until %s", err, clock.Now().Add(dynamostate.DefaultLease))
			}
			clock.Advance(time.Minute + time.Second)
			if err := n.Notify(ctx, a); err != nil {
				t.Fatalf("after the lease: %v", err)
			}
			if got := rec.count("e1"); got != 1 {
				t.Errorf("sent %d times, want 1", got)
			}
		}},
		{"a new alert with the same dedup key from another event is sent", func(t *testing.T, st *dynamostate.Store, _ *fakeClock) {
			rec := &recorder{}
			n := dynamostate.NewNotifier("ops", rec, st, dynamostate.NotifierOptions{})
			a1, a2 := alert("e1"), alert("e2")
			a2.DedupKey = a1.DedupKey
			for _, a := range []notifiers.Alert{a1, a2} {
				if err := n.Notify(ctx, a); err != nil {
					t.Fatal(err)
				}
			}
			if rec.count("e1") != 1 || rec.count("e2") != 1 {
				t.Errorf("sent e1 %d, e2 %d times, want 1 each", rec.count("e1"), rec.count("e2"))
			}
		}},
		{"close reaches the wrapped notifier", func(t *testing.T, st *dynamostate.Store, _ *fakeClock) {
			rec := &recorder{}
			if err := dynamostate.NewNotifier("ops", rec, st, dynamostate.NotifierOptions{}).Close(); err != nil {
				t.Fatal(err)
			}
			if !rec.closed {
				t.Error("wrapped notifier not closed")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, clock := newStore(t, client, dynamostate.Options{})
			tc.run(t, st, clock)
		})
	}
}
