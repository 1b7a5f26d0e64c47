package engine

import (
	"bufio"
	"os"
	"path/filepath"
	"testing"

	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
)

// corpusRecords reads every record of ../shared/corpus, or skips.
func corpusRecords(b testing.TB) [][]byte {
	b.Helper()
	files, _ := filepath.Glob("../../shared/corpus/*.jsonl")
	if len(files) == 0 {
		b.Skip("../shared/corpus is absent: the benchmark replays the real CloudTrail corpus beside the repository")
	}
	var out [][]byte
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			out = append(out, append([]byte(nil), sc.Bytes()...))
		}
		fh.Close()
	}
	return out
}

// BenchmarkReplayCorpus measures replay throughput on one core: decoding
// and evaluating every corpus record against all built-in rules. Run with
//
//	go test -run '^$' -bench ReplayCorpus -benchmem -cpu 1 -count 5 ./engine/
func BenchmarkReplayCorpus(b *testing.B) {
	recs := corpusRecords(b)
	set, err := rules.Load("builtin")
	if err != nil {
		b.Fatal(err)
	}
	ev := NewEvaluator(set, EvaluatorOptions{DedupWindow: -1})
	var alerts []notifiers.Alert
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		for _, r := range recs {
			alerts, _ = ev.Evaluate(r, alerts[:0])
			n++
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/record")
}
