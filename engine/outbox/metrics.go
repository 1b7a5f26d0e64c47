package outbox

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
)

// Outcomes counted by trailwatch_alerts_total.
const (
	outcomeSent  = "sent"
	outcomeRetry = "retry"
	outcomeDead  = "dead"
)

type metrics struct {
	alerts     *prometheus.CounterVec
	depth      *prometheus.GaugeVec
	eventDelay *prometheus.HistogramVec
	queueDelay *prometheus.HistogramVec
	evictions  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	// CloudTrail itself takes minutes to deliver; outages last up to the
	// max age, so the buckets run from a second to about 9 hours.
	buckets := prometheus.ExponentialBuckets(1, 2, 16)
	m := &metrics{
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trailwatch_alerts_total",
			Help: "Delivery attempts of alerts from the outbox, by notifier and outcome (sent, retry, dead).",
		}, []string{"notifier", "outcome"}),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trailwatch_outbox_depth",
			Help: "Alerts waiting in the outbox to be delivered, by notifier.",
		}, []string{"notifier"}),
		eventDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "trailwatch_alert_delivery_delay_seconds",
			Help:    "Time from the CloudTrail event to the alert's delivery, by notifier.",
			Buckets: buckets,
		}, []string{"notifier"}),
		queueDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "trailwatch_outbox_queue_delay_seconds",
			Help:    "Time from the alert's enqueue in the outbox to its delivery, by notifier.",
			Buckets: buckets,
		}, []string{"notifier"}),
	}
	m.evictions = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "trailwatch_outbox_evictions_total",
		Help: "Delivered entries dropped, oldest first, to keep the outbox under its size cap (outbox.max_bytes).",
	})
	var err error
	if m.evictions, err = register(reg, m.evictions); err != nil {
		return nil, err
	}
	m.alerts, err = register(reg, m.alerts)
	if err != nil {
		return nil, err
	}
	if m.depth, err = register(reg, m.depth); err != nil {
		return nil, err
	}
	if m.eventDelay, err = register(reg, m.eventDelay); err != nil {
		return nil, err
	}
	if m.queueDelay, err = register(reg, m.queueDelay); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the identical collector already
// registered, so that reopening an outbox on the same registry works.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("register outbox metrics: %w", err)
	}
	return c, nil
}

var (
	parkedDesc = prometheus.NewDesc("trailwatch_notifier_parked",
		"1 while the notifier is parked: its head alert waits on a retry put off by a minute or more (a server's Retry-After, or a long backoff), else 0.",
		[]string{"notifier"}, nil)
	parkedSecondsDesc = prometheus.NewDesc("trailwatch_notifier_parked_seconds",
		"Seconds until a parked notifier's head alert is tried again (0 when not parked).",
		[]string{"notifier"}, nil)
	bytesDesc = prometheus.NewDesc("trailwatch_outbox_bytes",
		"What the outbox's entries take up in its file, near enough (the size cap counts this).", nil, nil)
	maxBytesDesc = prometheus.NewDesc("trailwatch_outbox_max_bytes",
		"The outbox's size cap (negative: none).", nil, nil)
)

// parkedCollector reports, when scraped, which notifiers are parked.
type parkedCollector struct{ o *Outbox }

// Describe implements prometheus.Collector.
func (c parkedCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- parkedDesc
	ch <- parkedSecondsDesc
	ch <- bytesDesc
	ch <- maxBytesDesc
}

// Collect implements prometheus.Collector: every notifier that is running
// or has pending alerts, parked or not.
func (c parkedCollector) Collect(ch chan<- prometheus.Metric) {
	o := c.o
	parked, err := o.Parked()
	if err != nil {
		return // closed, or unreadable: absent rather than wrong
	}
	var size int64
	if o.view(func(tx *bolt.Tx) error { size = storedBytes(tx); return nil }) == nil {
		ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.GaugeValue, float64(size))
	}
	ch <- prometheus.MustNewConstMetric(maxBytesDesc, prometheus.GaugeValue, float64(o.opts.MaxBytes))
	now := o.opts.Now()
	names := map[string]*Parked{}
	o.mu.Lock()
	for n := range o.drains {
		names[n] = nil
	}
	for n := range o.depth {
		names[n] = nil
	}
	o.mu.Unlock()
	for i := range parked {
		names[parked[i].Notifier] = &parked[i]
	}
	for n, p := range names {
		v, wait := 0.0, 0.0
		if p != nil {
			v, wait = 1, max(p.Until.Sub(now).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(parkedDesc, prometheus.GaugeValue, v, n)
		ch <- prometheus.MustNewConstMetric(parkedSecondsDesc, prometheus.GaugeValue, wait, n)
	}
}
