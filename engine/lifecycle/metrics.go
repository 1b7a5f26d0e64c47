package lifecycle

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	evictions     prometheus.Counter
	conflicts     prometheus.Counter
	suppressed    *prometheus.CounterVec
	thresholdHeld *prometheus.CounterVec
	late          *prometheus.CounterVec
	replayed      *prometheus.CounterVec
	silenced      *prometheus.CounterVec
	folded        *prometheus.CounterVec
	untrusted     *prometheus.CounterVec

	// counters are the vectors' counters observe has used, by vector and
	// label: WithLabelValues hashes and checks the label each time, and
	// replay commits a batch per record. The labels are rule IDs,
	// notifier names and reasons: a bounded set. Used under l.mu.
	counters map[counterKey]prometheus.Counter
}

type counterKey struct {
	vec   *prometheus.CounterVec
	label string
}

func newMetrics(reg prometheus.Registerer, l *Lifecycle) *metrics {
	m := &metrics{
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trailwatch_lifecycle_evictions_total",
			Help: "Dedup keys and threshold groups evicted (least recently used first) to keep the state within max_keys.",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trailwatch_lifecycle_conflicts_total",
			Help: "Alerts decided again because another process changed the shared dedup or threshold state first.",
		}),
		suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trailwatch_alerts_suppressed_total",
			Help: "Alerts held back by a dedup window (reported as a count by the next notification), by rule.",
		}, []string{"rule"}),
		thresholdHeld: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trailwatch_threshold_events_total",
			Help: "Matches counted by a threshold rule without reaching its count yet, by rule.",
		}, []string{"rule"}),
		late: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trailwatch_threshold_late_events_total",
			Help: "Matches of threshold rules older than their group's window, not counted, by rule.",
		}, []string{"rule"}),
		replayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trailwatch_lifecycle_replayed_total",
			Help: "Alerts of a (rule, event) already processed (a batch read again), ignored, by rule.",
		}, []string{"rule"}),
		silenced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trailwatch_alerts_silenced_total",
			Help: "Alerts held back by a silence (recorded, not sent), by rule.",
		}, []string{"rule"}),
		untrusted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trailwatch_event_time_untrusted_total",
			Help: "Alerts on records whose eventTime was missing or invalid, or more than 5 minutes ahead of the clock: sent without dedup or threshold windows, by reason (invalid, future).",
		}, []string{"reason"}),
		folded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trailwatch_alerts_folded_total",
			Help: "Alerts folded into a storm digest instead of sent alone, by notifier.",
		}, []string{"notifier"}),
	}
	if reg != nil {
		keys := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "trailwatch_lifecycle_keys",
			Help: "Dedup keys and threshold groups held in memory.",
		}, func() float64 { return float64(l.Len()) })
		reg.MustRegister(m.evictions, m.conflicts, m.suppressed, m.thresholdHeld, m.late, m.replayed, m.silenced, m.folded, m.untrusted, keys)
	}
	return m
}

func (m *metrics) observe(s *batchStats) {
	for _, p := range []struct {
		v *prometheus.CounterVec
		c map[string]int
	}{{m.suppressed, s.suppressed}, {m.thresholdHeld, s.thresholdHeld}, {m.late, s.late},
		{m.replayed, s.replayed}, {m.silenced, s.silenced}, {m.folded, s.folded}, {m.untrusted, s.untrusted}} {
		for k, n := range p.c {
			c, ok := m.counters[counterKey{p.v, k}]
			if !ok {
				if m.counters == nil {
					m.counters = map[counterKey]prometheus.Counter{}
				}
				c = p.v.WithLabelValues(k)
				m.counters[counterKey{p.v, k}] = c
			}
			c.Add(float64(n))
		}
	}
}
