package source

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestPollTracker(t *testing.T) {
	c := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	tests := []struct {
		name    string
		polls   []string // groups read successfully at the start
		advance time.Duration
		want    string // "" for ready, else a part of the error
	}{
		{"not read yet", nil, 0, "a (not read yet)"},
		{"one group missing", []string{"a"}, 0, "arn:aws:logs:us-east-1:111122223333:log-group:b (not read yet)"},
		{"both read", []string{"a", "arn:aws:logs:us-east-1:111122223333:log-group:b"}, time.Minute, ""},
		{"stale", []string{"a", "arn:aws:logs:us-east-1:111122223333:log-group:b"}, time.Minute + time.Second, "last read 1m1s ago"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPollTracker([]string{"a", "arn:aws:logs:us-east-1:111122223333:log-group:b:*"}, time.Minute, c.Now)
			for _, g := range tt.polls {
				p.Polled(g)
			}
			p.Polled("not-configured")
			c.Advance(tt.advance)
			err := p.Ready(context.Background())
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Ready() = %v, want ready", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Ready() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
