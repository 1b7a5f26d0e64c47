// Package benchdata holds what the generated benchmark inputs need from the
// rules: which corpus records raise an alert (internal/corpus.Mix takes it,
// and so do the benchmarks that measure alerting records alone).
package benchdata

import (
	"github.com/trailwatch/trailwatch/rules"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// Alerting returns a function that reports whether a record raises an
// alert with set: it decodes as a CloudTrail record and a rule matches it.
func Alerting(set *rules.Set) func(record []byte) bool {
	return func(record []byte) bool {
		ev, err := cloudtrail.DecodeEvent(record)
		return err == nil && len(set.Match(ev, nil, nil)) > 0
	}
}
