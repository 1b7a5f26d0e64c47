// Package cputime reads the CPU time this process has used, for benchmarks
// on a machine shared with other work: a record costs the same CPU time
// whoever else runs, while its wall time grows with the machine's load.
// With GOMAXPROCS=1 (go test -cpu 1) the CPU time is what one core would
// take if nothing else ran on it (the garbage collector's work included).
package cputime

import (
	"testing"
	"time"
)

// Run runs fn b.N times, each handling records records, and reports
// allocations and throughput (see Report) for them.
func Run(b *testing.B, records int, fn func()) {
	b.ReportAllocs()
	b.ResetTimer()
	start := Process()
	for i := 0; i < b.N; i++ {
		fn()
	}
	b.StopTimer()
	Report(b, records*b.N, start)
}

// Report reports n records' throughput by the CPU time the process used
// since start (a Process() reading) as "records/cpu-s" and "cpu-ns/record",
// beside the wall-clock "records/s" and "ns/record". Call it after the
// benchmark loop.
func Report(b *testing.B, n int, start time.Duration) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/record")
	if cpu := Process() - start; start > 0 && cpu > 0 {
		b.ReportMetric(float64(n)/cpu.Seconds(), "records/cpu-s")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/record")
	}
}
