package outbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailwatch/trailwatch/notifiers"
)

// t0 is where every fake clock starts.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is a settable clock whose After channels fire when the clock is
// moved to or past their deadline.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	return ch
}

// Set moves the clock to t (never backwards) and fires the due waiters.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
}

// waiting reports whether something waits for the clock to reach at.
func (c *fakeClock) waiting(at time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.waiters {
		if w.at.Equal(at) {
			return true
		}
	}
	return false
}

// Advance moves the clock forward by d.
func (c *fakeClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// fakeNotifier records what it delivered. outcome, if set, decides each
// call's result; a nil result is a delivery.
type fakeNotifier struct {
	clock   *fakeClock
	outcome func(ctx context.Context, call int, a notifiers.Alert) error

	mu    sync.Mutex
	calls int
	sent  []string    // DedupKeys delivered, in order
	when  []time.Time // the fake time of every call
}

func (f *fakeNotifier) Notify(ctx context.Context, a notifiers.Alert) error {
	f.mu.Lock()
	f.calls++
	call := f.calls
	if f.clock != nil {
		f.when = append(f.when, f.clock.Now())
	}
	f.mu.Unlock()
	var err error
	if f.outcome != nil {
		err = f.outcome(ctx, call, a)
	}
	if err == nil {
		f.mu.Lock()
		f.sent = append(f.sent, a.DedupKey)
		f.mu.Unlock()
	}
	return err
}

func (f *fakeNotifier) Sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sent)
}

func (f *fakeNotifier) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeNotifier) When() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.when)
}

// env is one test's outbox file, clock and metrics.
type env struct {
	t     *testing.T
	path  string
	clock *fakeClock
	reg   *prometheus.Registry
	opts  Options
}

func newEnv(t *testing.T) *env {
	t.Helper()
	clock := newFakeClock()
	reg := prometheus.NewRegistry()
	return &env{
		t:     t,
		path:  filepath.Join(t.TempDir(), "state", FileName),
		clock: clock,
		reg:   reg,
		opts: Options{
			Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
			Now:           clock.Now,
			After:         clock.After,
			Rand:          func() float64 { return 0 },
			Registerer:    reg,
			PurgeInterval: -1,
		},
	}
}

// open opens the env's file (or path, if given) and closes it at the end of
// the test.
func (e *env) open(path ...string) *Outbox {
	e.t.Helper()
	p := e.path
	if len(path) > 0 {
		p = path[0]
	}
	o, err := Open(p, e.opts)
	if err != nil {
		e.t.Fatalf("Open(%s): %v", p, err)
	}
	e.t.Cleanup(func() { o.Close() })
	return o
}

// run starts o.Run and returns a stop func that cancels it and waits for
// it; stop also runs at the end of the test.
func run(t *testing.T, o *Outbox, targets map[string]notifiers.Notifier) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx, targets) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Run did not return within 10s of its context being cancelled")
			}
		})
	}
	t.Cleanup(stop)
	waitFor(t, "drainers to start", func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		if !o.running {
			return false
		}
		for _, d := range o.drains {
			if s, _ := d.get(); s == statusStarting {
				return false
			}
		}
		return true
	})
	return stop
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// waitBackoff waits until notifier's drainer is backing off and returns
// when it will try again.
func (e *env) waitBackoff(o *Outbox, notifier string) time.Time {
	e.t.Helper()
	var until time.Time
	waitFor(e.t, notifier+" to back off", func() bool {
		s, u := o.drainer(notifier).get()
		until = u
		return s == statusWaiting && u.After(e.clock.Now())
	})
	return until
}

// quiet reports whether notifier's drainer is blocked on the clock or on an
// empty queue, so that moving the fake clock cannot race with it. A status
// read just before the drainer moves on is told apart by the queue depth
// (idle with entries pending means it has been woken) or by the clock (a
// wait that is due means the timer has fired).
func quiet(o *Outbox, notifier string, now time.Time) (status drainStatus, until time.Time, ok bool) {
	s, u := o.drainer(notifier).get()
	switch s {
	case statusIdle:
		return s, u, o.Depth(notifier) == 0
	case statusWaiting:
		return s, u, u.After(now)
	}
	return s, u, false
}

func (o *Outbox) drainer(name string) *drainer {
	o.mu.Lock()
	defer o.mu.Unlock()
	d, ok := o.drains[name]
	if !ok {
		panic(fmt.Sprintf("no drainer %q", name))
	}
	return d
}

func alert(key string) notifiers.Alert {
	return notifiers.Alert{
		RuleID:    "root-login",
		Title:     "Root console login",
		Severity:  "high",
		DedupKey:  key,
		EventID:   "ev-" + key,
		EventTime: t0.Add(-2 * time.Minute),
		EventName: "ConsoleLogin",
		Event:     []byte(`{"eventName":"ConsoleLogin"}`),
	}
}

func items(notifier string, keys ...string) []Item {
	var out []Item
	for _, k := range keys {
		out = append(out, Item{Key: k, Notifier: notifier, Alert: alert(k)})
	}
	return out
}

func keys(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s%02d", prefix, i))
	}
	return out
}

func mustEnqueue(t *testing.T, o *Outbox, want int, its ...Item) {
	t.Helper()
	got, err := o.Enqueue(context.Background(), its...)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if got != want {
		t.Fatalf("Enqueue added %d, want %d", got, want)
	}
}

func list(t *testing.T, o *Outbox, s State) []Entry {
	t.Helper()
	es, err := o.List(s)
	if err != nil {
		t.Fatalf("List(%s): %v", s, err)
	}
	return es
}

// copyFile copies the outbox file as a crashed process would leave it: the
// copy is opened, the original stays locked and is never closed first.
func copyFile(t *testing.T, src string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("read %s: %v", src, err)
	}
	dst := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatalf("write %s: %v", dst, err)
	}
	return dst
}

// metricValue returns the value of the counter or gauge name with labels,
// or the sample count of a histogram.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

var errRelayDown = errors.New("dial smtp relay: connection refused")
