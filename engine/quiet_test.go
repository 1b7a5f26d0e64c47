package engine

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/decide"
	"github.com/trailwatch/trailwatch/engine/source"
	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
)

// quietClock is a settable clock whose After hands each timer to the test,
// which fires it when it chooses.
type quietClock struct {
	mu     sync.Mutex
	now    time.Time
	timers chan chan time.Time
}

func newQuietClock() *quietClock {
	return &quietClock{now: time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC), timers: make(chan chan time.Time, 16)}
}

func (c *quietClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *quietClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *quietClock) After(time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.timers <- ch
	return ch
}

// fire waits for the service's next timer and fires it.
func (c *quietClock) fire(t *testing.T) {
	t.Helper()
	select {
	case ch := <-c.timers:
		ch <- c.Now()
	case <-time.After(10 * time.Second):
		t.Fatal("the service set no timer")
	}
}

func TestQuietWatch(t *testing.T) {
	type step struct {
		advance time.Duration
		seen    string // a group that delivers records
		want    string // rule ids and groups of the alerts due, "," separated
		mark    bool   // mark the due alerts as raised
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"nothing before the limit", []step{
			{advance: 29 * time.Minute, want: ""},
		}},
		{"quiet at the limit, once", []step{
			{advance: 30 * time.Minute, want: "quiet:a,quiet:b", mark: true},
			{advance: time.Hour, want: ""},
		}},
		{"records keep a group awake", []step{
			{advance: 20 * time.Minute, seen: "a"},
			{advance: 20 * time.Minute, want: "quiet:b", mark: true},
			{advance: 10 * time.Minute, want: "quiet:a", mark: true},
		}},
		{"an unmarked alert is due again", []step{
			{advance: 31 * time.Minute, want: "quiet:a,quiet:b"},
			{advance: time.Minute, want: "quiet:a,quiet:b"},
		}},
		{"resumed after quiet, then quiet again", []step{
			{advance: 31 * time.Minute, want: "quiet:a,quiet:b", mark: true},
			{advance: time.Minute, seen: "a", want: "resumed:a"},
			{advance: 29 * time.Minute, want: ""},
			{advance: time.Minute, want: "quiet:a", mark: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newQuietClock()
			q := NewQuietWatch(30*time.Minute, []string{"b", "a", "a"}, c.Now)
			for i, s := range tt.steps {
				c.Advance(s.advance)
				var got []string
				if s.seen != "" {
					if a, ok := q.Resumed(s.seen); ok {
						got = append(got, "resumed:"+s.seen)
						checkBuiltIn(t, a, ResumedRuleID, s.seen)
					}
					q.Seen(s.seen)
				}
				due := q.Due()
				for _, a := range due {
					g := groupOf(a)
					got = append(got, "quiet:"+g)
					checkBuiltIn(t, a, QuietRuleID, g)
					if s.mark {
						q.MarkQuiet(g)
					}
				}
				if g := strings.Join(got, ","); g != s.want {
					t.Fatalf("step %d: got %q, want %q", i, g, s.want)
				}
			}
		})
	}
}

func groupOf(a notifiers.Alert) string {
	// The dedup key is rule:group:millis.
	g, _, _ := strings.Cut(strings.TrimPrefix(a.DedupKey, a.RuleID+":"), ":")
	return g
}

func checkBuiltIn(t *testing.T, a notifiers.Alert, rule, group string) {
	t.Helper()
	if a.RuleID != rule || a.Severity != QuietSeverity || !strings.Contains(a.Summary, group) || a.DedupKey == "" || a.EventTime.IsZero() {
		t.Errorf("alert %+v: want rule %s, severity %s, summary naming %s, a dedup key and a time", a, rule, QuietSeverity, group)
	}
}

// chanSource is a source fed by the test.
type chanSource chan source.Batch

func (c chanSource) Check(context.Context) error { return nil }

func (c chanSource) Run(ctx context.Context, handle source.Handler) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case b := <-c:
			if err := handle(ctx, b); err != nil {
				return err
			}
		}
	}
}

// recorder is a notifier that keeps what it gets.
type recorder struct {
	mu  sync.Mutex
	got []notifiers.Alert
}

func (r *recorder) Notify(_ context.Context, a notifiers.Alert) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, a)
	return nil
}

func (r *recorder) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []string
	for _, a := range r.got {
		s = append(s, strings.TrimPrefix(a.RuleID, "trailwatch-log-group-")+":"+groupOf(a))
	}
	return strings.Join(s, ",")
}

// TestServiceDeadMansSwitch runs the service with a fake clock: quiet log
// groups raise an alert through the outbox, and their records a resumed
// alert.
func TestServiceDeadMansSwitch(t *testing.T) {
	c := newQuietClock()
	ob, set := outboxAndNoRules(t)
	src := make(chanSource)
	rec := &recorder{}
	svc := &Service{
		Source: src,
		Decider: decide.New(decide.NewEvaluator(set, decide.EvaluatorOptions{}), func(a *notifiers.Alert, _ *rules.Rule) []string {
			if a.Severity == QuietSeverity {
				return []string{"pager"}
			}
			return nil
		}, decide.Options{}),
		Outbox:    ob,
		Notifiers: map[string]notifiers.Notifier{"pager": rec},
		Now:       c.Now,
		After:     c.After,
		Quiet:     NewQuietWatch(30*time.Minute, []string{"trail-a", "trail-b"}, c.Now),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for rec.summary() != want {
			if time.Now().After(deadline) {
				t.Fatalf("notifier got %q, want %q", rec.summary(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	record := []byte(`{"eventVersion":"1.08","eventTime":"2024-05-01T08:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","eventID":"e1","awsRegion":"us-east-1"}`)

	c.fire(t) // first check: nothing due yet
	c.Advance(31 * time.Minute)
	c.fire(t)
	waitFor("quiet:trail-a,quiet:trail-b")

	src <- source.Batch{Origin: "trail-a", Records: []source.Record{{Data: record}}}
	waitFor("quiet:trail-a,quiet:trail-b,resumed:trail-a")
	// The notifier may hear of it before the batch returns: wait until the
	// watch has seen the records, at the clock's present time.
	for deadline := time.Now().Add(10 * time.Second); svc.Quiet.Quiet("trail-a"); {
		if time.Now().After(deadline) {
			t.Fatal("trail-a is still reported quiet after its records")
		}
		time.Sleep(5 * time.Millisecond)
	}

	c.Advance(time.Minute)
	c.fire(t) // trail-b is reported already; trail-a just resumed
	c.Advance(29 * time.Minute)
	c.fire(t)
	waitFor("quiet:trail-a,quiet:trail-b,resumed:trail-a,quiet:trail-a")
	if !svc.Quiet.Quiet("trail-a") || !svc.Quiet.Quiet("trail-b") {
		t.Error("both groups should be reported quiet")
	}
}
