package search

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/internal/cputime"
)

// BenchmarkSearchGzip measures records scanned per second from gzipped
// CloudTrail log files in the S3 layout, with a selective query (the
// usual investigation: one access key). The files are read on
// GOMAXPROCS goroutines (-cpu); records/s is wall clock, cpu-ns/record
// the process's CPU time, which the machine's other load does not change.
func BenchmarkSearchGzip(b *testing.B) {
	root := b.TempDir()
	const files, perFile = 20, 1000
	base := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	for f := range files {
		recs := make([]string, perFile)
		for i := range recs {
			user := "alice"
			if i%100 == 0 {
				user = "mallory"
			}
			ts := base.Add(time.Duration(f*perFile+i) * time.Second)
			recs[i] = record(fmt.Sprintf("%d-%d", f, i), "GetObject", user, ts)
		}
		writeLogFile(b, root, base.Add(time.Duration((f+1)*perFile)*time.Second), gzipped(b, logFile(recs...)))
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := cputime.Process()
	scanned := 0
	for b.Loop() {
		s := New(Query{AccessKey: "AKIAMALLORY"}, Options{})
		if err := s.Files(context.Background(), []string{root}, nil); err != nil {
			b.Fatal(err)
		}
		if got := s.Stats().Matched; got != files*perFile/100 {
			b.Fatalf("matched %d", got)
		}
		scanned += s.Stats().Scanned
	}
	cputime.Report(b, scanned, start)
}
