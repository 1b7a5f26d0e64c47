package s3sqs

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailwatch/trailwatch/engine/source"
)

// metrics are the source's Prometheus metrics.
type metrics struct {
	messages   *prometheus.CounterVec
	objects    *prometheus.CounterVec
	records    prometheus.Counter
	bytes      prometheus.Counter
	lag        prometheus.Gauge
	messageAge prometheus.Gauge
	depth      *prometheus.GaugeVec
	extensions prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trailwatch_s3sqs_messages_total",
			Help: "SQS messages settled, by outcome: done (read and deleted), test (s3:TestEvent), ignored (names no CloudTrail log file), dead_lettered (moved to the dead-letter queue), retried (left for a later attempt), released (made visible again at shutdown).",
		}, []string{"outcome"}),
		objects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trailwatch_s3sqs_objects_total",
			Help: "Objects the notifications named, by outcome: read, unreadable (corrupt or gone: dead-lettered), failed (S3 could not be read; retried), skipped_digest, skipped_insight, skipped_other.",
		}, []string{"outcome"}),
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trailwatch_s3sqs_records_total", Help: "CloudTrail records read from S3 objects and handed to the pipeline.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trailwatch_s3sqs_bytes_total", Help: "Bytes of CloudTrail log files read from S3, as stored (gzipped).",
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "trailwatch_s3sqs_lag_seconds",
			Help: "How long before its last record was handled the last object read was stored in S3 (now minus its LastModified).",
		}),
		messageAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "trailwatch_s3sqs_message_age_seconds",
			Help: "Age of the oldest message of the last receive (now minus its SentTimestamp); 0 when the receive found none.",
		}),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trailwatch_s3sqs_queue_messages",
			Help: "Messages in the queue and in its dead-letter queue, visible or in flight (SQS's approximate counts, read every minute).",
		}, []string{"queue", "state"}),
		extensions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trailwatch_s3sqs_visibility_extensions_total", Help: "Visibility timeout extensions of messages whose objects were still being read.",
		}),
	}
	for _, o := range outcomes {
		m.messages.WithLabelValues(string(o))
	}
	for _, o := range []string{"read", "unreadable", "failed", "skipped_digest", "skipped_insight", "skipped_other"} {
		m.objects.WithLabelValues(o)
	}
	if err := source.RegisterMetrics(reg, "s3sqs", m.messages, m.objects, m.records, m.bytes, m.lag, m.messageAge, m.depth, m.extensions); err != nil {
		return nil, err
	}
	return m, nil
}
