package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness condition of the service.
type Check struct {
	// Name names the condition in /readyz's answer.
	Name string
	// Func returns nil when the condition holds. Its error is shown to
	// whoever asks /readyz: it must hold no secret.
	Func func(ctx context.Context) error
}

// NewHTTPHandler returns the service's HTTP endpoints: /metrics (the
// metrics of g), /healthz (200 while the process serves), and /readyz (200
// when every check passes, 503 naming the failing ones otherwise).
func NewHTTPHandler(g prometheus.Gatherer, logger *slog.Logger, checks ...Check) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		var b strings.Builder
		ready := true
		for _, c := range checks {
			if err := c.Func(ctx); err != nil {
				ready = false
				fmt.Fprintf(&b, "%s: %v\n", c.Name, err)
				continue
			}
			fmt.Fprintf(&b, "%s: ok\n", c.Name)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprint(w, b.String())
	})
	return mux
}

// DirWritable returns a check that creates and removes a file in dir.
func DirWritable(dir string) func(context.Context) error {
	return func(context.Context) error {
		f, err := os.CreateTemp(dir, ".readyz-*")
		if err != nil {
			return fmt.Errorf("state dir is not writable: %w", err)
		}
		name := f.Name()
		err = f.Close()
		if rerr := os.Remove(name); err == nil {
			err = rerr
		}
		if err != nil {
			return fmt.Errorf("state dir is not writable: %w", err)
		}
		return nil
	}
}

// PollTracker remembers each log group's last successful read, so that
// readiness can say whether the source is reading. It is safe for
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

// Check returns an error naming each group without a successful read
// within the maximum age.
func (p *PollTracker) Check(context.Context) error {
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
