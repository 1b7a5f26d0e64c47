package decide

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
)

// Metrics are the pipeline's Prometheus metrics.
type Metrics struct {
	RecordsRead    prometheus.Counter
	RecordsSkipped prometheus.Counter
	Alerts         *prometheus.CounterVec
	EventLag       prometheus.Gauge
}

// NewMetrics registers the pipeline's metrics with reg, and a collector
// that reports each rule's matches and run-time errors from the current
// rule set of ev.
func NewMetrics(reg prometheus.Registerer, ev *Evaluator) *Metrics {
	m := &Metrics{
		RecordsRead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trailwatch_records_read_total", Help: "CloudTrail records read and evaluated.",
		}),
		RecordsSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trailwatch_records_skipped_total", Help: "Log events skipped because they are not CloudTrail records.",
		}),
		Alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trailwatch_alerts_raised_total", Help: "Alerts raised, by rule and severity.",
		}, []string{"rule", "severity"}),
		EventLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "trailwatch_event_lag_seconds", Help: "Age (now - eventTime) of the newest record that raised an alert or was processed last.",
		}),
	}
	reg.MustRegister(m.RecordsRead, m.RecordsSkipped, m.Alerts, m.EventLag, &ruleCollector{ev: ev})
	return m
}

func (m *Metrics) observeAlert(a *notifiers.Alert, now time.Time) {
	m.Alerts.WithLabelValues(a.RuleID, a.Severity).Inc()
	if !a.EventTime.IsZero() {
		m.EventLag.Set(now.Sub(a.EventTime).Seconds())
	}
}

var (
	ruleMatchesDesc = prometheus.NewDesc("trailwatch_rule_matches_total", "Events each rule of the current rule set matched since it loaded.", []string{"rule"}, nil)
	ruleErrorsDesc  = prometheus.NewDesc("trailwatch_rule_errors_total", "Run-time expression errors of each rule of the current rule set since it loaded.", []string{"rule"}, nil)
)

// ruleCollector reads the per-rule counters of the current rule set at
// scrape time, so nothing per event touches Prometheus.
type ruleCollector struct{ ev *Evaluator }

func (c *ruleCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- ruleMatchesDesc
	ch <- ruleErrorsDesc
}

func (c *ruleCollector) Collect(ch chan<- prometheus.Metric) {
	var set *rules.Set = c.ev.Rules()
	for _, r := range set.Rules() {
		m, e := r.Stats()
		ch <- prometheus.MustNewConstMetric(ruleMatchesDesc, prometheus.CounterValue, float64(m), r.ID)
		ch <- prometheus.MustNewConstMetric(ruleErrorsDesc, prometheus.CounterValue, float64(e), r.ID)
	}
}
