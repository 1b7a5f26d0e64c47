package cloudwatch

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/internal/testservers"
)

// BenchmarkSourceMoto measures how fast a first run from "beginning" reads
// a backlog from moto, through the real SDK, in records per second.
func BenchmarkSourceMoto(b *testing.B) {
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
		err := s.Run(ctx, func(_ context.Context, batch []Record) error {
			got += len(batch)
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
