package cloudwatch

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the source's Prometheus metrics, all labelled by log group.
type metrics struct {
	calls      *prometheus.CounterVec
	throttles  *prometheus.CounterVec
	retries    *prometheus.CounterVec
	records    *prometheus.CounterVec
	duplicates *prometheus.CounterVec
	rereads    *prometheus.CounterVec
	late       *prometheus.CounterVec
	position   *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"log_group"})
	}
	m := &metrics{
		calls:      counter("trailwatch_filterlogevents_calls_total", "FilterLogEvents requests sent, including failed ones."),
		throttles:  counter("trailwatch_filterlogevents_throttles_total", "FilterLogEvents requests refused with ThrottlingException."),
		retries:    counter("trailwatch_filterlogevents_retries_total", "FilterLogEvents requests that failed with a retryable error (throttling, 5xx, network) and were retried."),
		records:    counter("trailwatch_source_records_total", "New, deduplicated records handed on to the engine."),
		duplicates: counter("trailwatch_source_duplicates_total", "Records dropped because a record with the same CloudTrail eventID was already handed on (a second delivery)."),
		rereads:    counter("trailwatch_source_rereads_total", "Log events read again by an overlapping window and dropped; the price of the lookback."),
		late:       counter("trailwatch_source_late_records_total", "Records ingested later than the lookback after their timestamp; such records may be missed."),
		position: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trailwatch_source_position_seconds",
			Help: "Unix time up to which the log group has been read completely (minus the lookback for late records).",
		}, []string{"log_group"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	for _, c := range []**prometheus.CounterVec{&m.calls, &m.throttles, &m.retries, &m.records, &m.duplicates, &m.rereads, &m.late} {
		if *c, err = register(reg, *c); err != nil {
			return nil, err
		}
	}
	if m.position, err = register(reg, m.position); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// its name so that several Sources can share one registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("register cloudwatch source metrics: %w", err)
	}
	return c, nil
}
