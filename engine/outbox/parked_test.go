package outbox

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/notifiers/webhook"
)

// TestRetryAfterIsCappedAndParkedIsReported puts a real webhook in front of
// an endpoint answering 429 with Retry-After: 99999 (27 hours): the retry
// comes after notifiers.MaxRetryAfter, and meanwhile the notifier is
// reported parked by Parked, CheckParked (readiness) and the metrics.
func TestRetryAfterIsCappedAndParkedIsReported(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			w.Header().Set("Retry-After", "99999")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	}))
	defer srv.Close()
	e := newEnv(t)
	o := e.open()
	hook, err := webhook.New(webhook.Config{URL: srv.URL + "/hook"}, webhook.WithClock(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	mustEnqueue(t, o, 1, items("hook", "k1")...)
	if err := o.CheckParked(context.Background()); err != nil {
		t.Errorf("before any failure: CheckParked = %v", err)
	}
	run(t, o, map[string]notifiers.Notifier{"hook": hook})

	until := e.waitBackoff(o, "hook")
	if want := t0.Add(notifiers.MaxRetryAfter); !until.Equal(want) {
		t.Fatalf("next attempt at %v, want %v (Retry-After capped at %v)", until, want, notifiers.MaxRetryAfter)
	}
	parked, err := o.Parked()
	if err != nil || len(parked) != 1 || parked[0].Notifier != "hook" || !parked[0].Until.Equal(until) || parked[0].Pending != 1 {
		t.Fatalf("Parked = %+v, %v; want hook until %v with 1 pending", parked, err, until)
	}
	err = o.CheckParked(context.Background())
	if err == nil || !strings.Contains(err.Error(), "hook") || !strings.Contains(err.Error(), "429") {
		t.Errorf("CheckParked = %v, want it to name hook and its 429", err)
	}
	if v := metricValue(t, e.reg, "trailwatch_notifier_parked", map[string]string{"notifier": "hook"}); v != 1 {
		t.Errorf("trailwatch_notifier_parked = %v, want 1", v)
	}
	if v := metricValue(t, e.reg, "trailwatch_notifier_parked_seconds", map[string]string{"notifier": "hook"}); v != notifiers.MaxRetryAfter.Seconds() {
		t.Errorf("trailwatch_notifier_parked_seconds = %v, want %v", v, notifiers.MaxRetryAfter.Seconds())
	}

	e.clock.Set(until)
	waitFor(t, "the delivery", func() bool { return o.Depth("hook") == 0 })
	if err := o.CheckParked(context.Background()); err != nil {
		t.Errorf("after the delivery: CheckParked = %v", err)
	}
	if v := metricValue(t, e.reg, "trailwatch_notifier_parked", map[string]string{"notifier": "hook"}); v != 0 {
		t.Errorf("after the delivery: trailwatch_notifier_parked = %v, want 0", v)
	}
}

// TestWebhookIdempotencyKeyAcrossRestart stops the outbox while a webhook
// POST is in flight (the endpoint has the alert, the outbox never hears
// so: what a kill -9 mid-send leaves), reopens the file as a restarted
// service would, and checks that the alert is sent again with the same
// Idempotency-Key, and that another alert has another key.
func TestWebhookIdempotencyKeyAcrossRestart(t *testing.T) {
	var mu sync.Mutex
	var keys []string
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys = append(keys, r.Header.Get(webhook.IdempotencyHeader))
		n := len(keys)
		mu.Unlock()
		if n == 1 {
			select { // hold the first answer until the sender is gone
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	defer srv.Close()
	defer close(release)
	got := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), keys...)
	}
	e := newEnv(t)
	e.opts.Now, e.opts.After = nil, nil // the real clock: the HTTP client sees a real deadline
	hook, err := webhook.New(webhook.Config{URL: srv.URL + "/hook"})
	if err != nil {
		t.Fatal(err)
	}
	o := e.open()
	mustEnqueue(t, o, 1, items("hook", "k1")...)
	stop := run(t, o, map[string]notifiers.Notifier{"hook": hook})
	waitFor(t, "the first POST", func() bool { return len(got()) == 1 })
	stop()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}

	o = e.open()
	mustEnqueue(t, o, 1, items("hook", "k2")...)
	run(t, o, map[string]notifiers.Notifier{"hook": hook})
	waitFor(t, "both alerts delivered", func() bool { return o.Depth("hook") == 0 })
	k := got()
	if len(k) != 3 {
		t.Fatalf("POSTs = %d (%q), want 3: k1 twice, then k2", len(k), k)
	}
	if k[0] == "" || k[0] != k[1] {
		t.Errorf("the resent alert's Idempotency-Key %q differs from the first %q", k[1], k[0])
	}
	if k[2] == k[0] || len(k[2]) != 64 {
		t.Errorf("another alert's Idempotency-Key = %q, want a different 64-hex key", k[2])
	}
	a := alert("k1")
	if k[0] != a.DeliveryID() {
		t.Errorf("Idempotency-Key = %q, want the alert's DeliveryID %q", k[0], a.DeliveryID())
	}
}
