package kinesis

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailwatch/trailwatch/engine/source"
)

// metrics are the source's Prometheus metrics.
type metrics struct {
	held      prometheus.Gauge
	takeovers prometheus.Counter
	records   *prometheus.CounterVec
	skipped   prometheus.Counter
	behind    *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "trailwatch_kinesis_leases_held", Help: "Shard leases this instance holds.",
		}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trailwatch_kinesis_lease_takeovers_total",
			Help: "Shard leases taken from another instance: after it stopped renewing them, or to even out the load.",
		}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trailwatch_kinesis_records_total", Help: "Kinesis records read, by shard.",
		}, []string{"shard"}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trailwatch_kinesis_records_skipped_total",
			Help: "Kinesis records skipped because they are not CloudWatch Logs subscription payloads.",
		}),
		behind: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trailwatch_kinesis_millis_behind_latest",
			Help: "How far the last read of a shard this instance holds was behind the tip of the stream, in milliseconds.",
		}, []string{"shard"}),
	}
	if err := source.RegisterMetrics(reg, "kinesis", m.held, m.takeovers, m.records, m.skipped, m.behind); err != nil {
		return nil, err
	}
	return m, nil
}
