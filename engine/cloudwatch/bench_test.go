package cloudwatch

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/decide"
	"github.com/trailwatch/trailwatch/engine/source"
	"github.com/trailwatch/trailwatch/internal/testservers"
	"github.com/trailwatch/trailwatch/rules"
)

// BenchmarkSourceMoto measures how many records per second the source and
// the rules keep up with: a first run from "beginning" reads a backlog from
// moto through the real SDK, and every record is evaluated against all
// built-in rules, as the service does. moto (a Python server) is the limit;
// against CloudWatch Logs, FilterLogEvents' 5 requests/s of up to 10,000
// records each is.
func BenchmarkSourceMoto(b *testing.B) {
	set, err := rules.Load("builtin")
	if err != nil {
		b.Fatal(err)
	}
	evaluator := decide.NewEvaluator(set, decide.EvaluatorOptions{DedupWindow: -1})
	var matches []decide.Match
	m := testservers.StartMoto(b)
	c := clientFor(b, m.Endpoint)
	const perGroup = 10000
	base := time.Now().Add(-time.Hour)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		group := fmt.Sprintf("bench-%d", i)
		createGroup(b, c, group, "s")
		evs := make([]event, perGroup)
		for j := range evs {
			evs[j] = ct(fmt.Sprintf("%d-%d", i, j), base.Add(time.Duration(j)*time.Millisecond))
		}
		put(b, c, group, "s", evs...)
		s := newSource(b, c, testConfig("beginning", group), testOptions(b, b.TempDir(), nil))
		ctx, cancel := context.WithCancel(context.Background())
		got := 0
		b.StartTimer()
		err := s.Run(ctx, func(_ context.Context, b source.Batch) error {
			got += len(b.Records)
			for i := range b.Records {
				matches, _ = evaluator.Evaluate(b.Records[i].Data, matches[:0])
			}
			if got >= perGroup {
				cancel()
			}
			return nil
		})
		b.StopTimer()
		cancel()
		if err != nil || got != perGroup {
			b.Fatalf("Run = %v after %d records, want %d", err, got, perGroup)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(perGroup*b.N)/b.Elapsed().Seconds(), "records/s")
}
