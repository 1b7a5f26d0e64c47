package cli

import (
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trailwatch/trailwatch/internal/benchdata"
	"github.com/trailwatch/trailwatch/internal/corpus"
	"github.com/trailwatch/trailwatch/internal/cputime"
	"github.com/trailwatch/trailwatch/rules"
)

var (
	replayCopies = flag.Int("replay.copies", 30, "BenchmarkReplayJSON: passes over the corpus in its corpus input")
	replayMix    = flag.Int("replay.mix", 100000, "BenchmarkReplayJSON: records in its production-like mix")
)

// replayBenchInputs writes the benchmark's generated inputs into a temp
// dir: the corpus ×copies and the production-like mix.
func replayBenchInputs(b *testing.B) (corpusFile, mixFile string, nCorpus, nMix int) {
	b.Helper()
	recs := corpus.Records(b)
	set, err := rules.Load("builtin")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	write := func(name string, fn func(io.Writer) error) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		err = fn(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	corpusFile = write("corpus.jsonl", func(w io.Writer) error { return corpus.Copies(w, recs, *replayCopies) })
	mixFile = write("mix.jsonl", func(w io.Writer) error { return corpus.Mix(w, recs, benchdata.Alerting(set), *replayMix, 200) })
	return corpusFile, mixFile, len(recs) * *replayCopies, *replayMix
}

// BenchmarkReplayJSON is `trailwatch replay --output json` in-process, all
// built-in rules, the lifecycle on, output discarded: the end-to-end replay
// path of issue 13's targets. "corpus" is the real corpus ×30 (about
// 100,000 records, 12% of them alerting, every eventID unique); "mix" is a
// production-like mix of 100,000 corpus records in which one in 200
// raises an alert. With -cpu 1 the replay runs on one core:
//
//	go test -run '^$' -bench ReplayJSON -benchmem -cpu 1 -count 5 ./internal/cli/
func BenchmarkReplayJSON(b *testing.B) {
	corpusFile, mixFile, nCorpus, nMix := replayBenchInputs(b)
	for _, in := range []struct {
		name string
		file string
		n    int
	}{{"corpus", corpusFile, nCorpus}, {"mix", mixFile, nMix}} {
		b.Run(in.name, func(b *testing.B) {
			var errs strings.Builder
			cputime.Run(b, in.n, func() {
				errs.Reset()
				code := Main(context.Background(), []string{"replay", "--output", "json", in.file}, Stdio{In: strings.NewReader(""), Out: io.Discard, Err: &errs})
				if code != 0 {
					b.Fatalf("replay exited %d: %s", code, errs.String())
				}
			})
		})
	}
}
