package source

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// PollTracker remembers each origin's last successful read (a log group's
// FilterLogEvents, a stream's lease refresh), so that a source can say
// whether it is reading (see Ready). It is safe for
// concurrent use.
type PollTracker struct {
	maxAge time.Duration
	now    func() time.Time
	mu     sync.Mutex
	last   map[string]time.Time
}

var lastPollDesc = prometheus.NewDesc("trailwatch_source_last_poll_success_timestamp_seconds",
	"Unix time of the last successful read (FilterLogEvents) of the log group.", []string{"log_group"}, nil)

// NewPollTracker tracks groups; Check fails while any of them has had no
// successful read within maxAge. now is the clock (nil: time.Now). A log
// group configured by ARN may be reported by its ARN with or without the
// trailing ":*".
func NewPollTracker(groups []string, maxAge time.Duration, now func() time.Time) *PollTracker {
	if now == nil {
		now = time.Now
	}
	p := &PollTracker{maxAge: maxAge, now: now, last: map[string]time.Time{}}
	for _, g := range groups {
		p.last[pollKey(g)] = time.Time{}
	}
	return p
}

func pollKey(group string) string { return strings.TrimSuffix(group, ":*") }

// Polled records a successful read of group now.
func (p *PollTracker) Polled(group string) {
	k := pollKey(group)
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.last[k]; ok {
		p.last[k] = p.now()
	}
}

// Ready returns an error naming each origin without a successful read
// within the maximum age. A PollTracker is a source.Ready: a source's
// Open hands it over with WithReady to say whether the source reads.
func (p *PollTracker) Ready(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	var stale []string
	for g, t := range p.last {
		switch {
		case t.IsZero():
			stale = append(stale, g+" (not read yet)")
		case now.Sub(t) > p.maxAge:
			stale = append(stale, fmt.Sprintf("%s (last read %s ago)", g, now.Sub(t).Round(time.Second)))
		}
	}
	if len(stale) == 0 {
		return nil
	}
	sort.Strings(stale)
	return errors.New("no successful read within " + p.maxAge.String() + ": " + strings.Join(stale, ", "))
}

// Describe implements prometheus.Collector.
func (p *PollTracker) Describe(ch chan<- *prometheus.Desc) { ch <- lastPollDesc }

// Collect implements prometheus.Collector: the time of each group's last
// successful read (groups not read yet are left out).
func (p *PollTracker) Collect(ch chan<- prometheus.Metric) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for g, t := range p.last {
		if t.IsZero() {
			continue
		}
		ch <- prometheus.MustNewConstMetric(lastPollDesc, prometheus.GaugeValue, float64(t.UnixNano())/1e9, g)
	}
}
