package decide

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	kgzip "github.com/klauspost/compress/gzip"

	"github.com/trailwatch/trailwatch/engine/files"
	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"

	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/internal/corpus"
	"github.com/trailwatch/trailwatch/internal/cputime"
)

// corpusRecords reads every record of ../shared/corpus, or skips.
func corpusRecords(b testing.TB) [][]byte {
	b.Helper()
	paths, _ := filepath.Glob(filepath.Join(corpus.Dir(), "*.jsonl"))
	if len(paths) == 0 {
		b.Skip("../shared/corpus is absent: the benchmark replays the real CloudTrail corpus beside the repository")
	}
	var out [][]byte
	for _, f := range paths {
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

func builtinSet(b testing.TB) *rules.Set {
	b.Helper()
	set, err := rules.Load("builtin")
	if err != nil {
		b.Fatal(err)
	}
	return set
}

func reportRecords(b *testing.B, n int) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/record")
}

// BenchmarkReplayCorpus measures replay throughput on one core: decoding
// and evaluating every corpus record against all built-in rules (the
// two-tier decode, the eventName index, alerts built for every match). Run
// with
//
//	go test -run '^$' -bench 'ReplayCorpus|ReferenceCorpus' -benchmem -cpu 1 -count 5 ./engine/decide/
func BenchmarkReplayCorpus(b *testing.B) {
	recs := corpusRecords(b)
	ev := NewEvaluator(builtinSet(b), EvaluatorOptions{DedupWindow: -1})
	var alerts []Match
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		for _, r := range recs {
			alerts, _ = ev.Evaluate(r, alerts[:0])
			n++
		}
	}
	reportRecords(b, n)
}

// BenchmarkReferenceCorpus is the baseline the replay target is a ratio
// to: the obvious implementation. For every record it decodes the JSON
// twice with encoding/json, to map[string]any (what a generic engine
// works on) and to the typed cloudtrail.Event (what the compiled rules need),
// then runs every enabled built-in rule on it, with no index and no header
// tier, and builds an alert (json.Compact of the record) for each match.
func BenchmarkReferenceCorpus(b *testing.B) {
	recs := corpusRecords(b)
	var enabled []*rules.Rule
	for _, r := range builtinSet(b).Rules() {
		if r.Enabled {
			enabled = append(enabled, r)
		}
	}
	var alerts []notifiers.Alert
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		for _, raw := range recs {
			n++
			var m map[string]any
			if json.Unmarshal(raw, &m) != nil {
				continue
			}
			var ev cloudtrail.Event
			if cloudtrail.DecodeEventInto(&ev, raw) != nil {
				continue
			}
			alerts = alerts[:0]
			for _, r := range enabled {
				if ok, _ := r.Eval(&ev); ok {
					var c bytes.Buffer
					_ = json.Compact(&c, raw)
					alerts = append(alerts, NewAlert(r, &ev, c.Bytes()))
				}
			}
		}
	}
	reportRecords(b, n)
}

// BenchmarkNoCandidate measures one record that no indexed rule names (a
// KMS GenerateDataKey, the bulk of a real trail): with rules that are all
// indexed ("indexed", the no-candidate path: header scan and index lookup
// only) and with the built-in rules ("builtin", whose three unindexed
// rules are decided from the header by expr on every record). -benchmem
// shows the allocations of each.
func BenchmarkNoCandidate(b *testing.B) {
	for _, c := range []struct {
		name string
		set  *rules.Set
	}{{"indexed", indexedOnly(b)}, {"builtin", builtinSet(b)}} {
		b.Run(c.name, func(b *testing.B) {
			ev := NewEvaluator(c.set, EvaluatorOptions{DedupWindow: -1})
			rec := []byte(noCandidateRecord)
			b.ReportAllocs()
			b.SetBytes(int64(len(rec)))
			for b.Loop() {
				if _, err := ev.Evaluate(rec, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParallelCorpus is BenchmarkReplayCorpus through Parallel, with
// as many workers as -cpu gives: compare -cpu 1 with -cpu 2,4 for the
// scaling (results are handed back in order on the benchmark's goroutine,
// as replay does).
func BenchmarkParallelCorpus(b *testing.B) {
	recs := corpusRecords(b)
	ev := NewEvaluator(builtinSet(b), EvaluatorOptions{DedupWindow: -1})
	alerts := 0
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		p := NewParallel(ev, ParallelOptions{}, func(_ struct{}, a []Match, _ error) error {
			alerts += len(a)
			return nil
		})
		for _, r := range recs {
			if err := p.Add(r, struct{}{}); err != nil {
				b.Fatal(err)
			}
			n++
		}
		if err := p.Close(); err != nil {
			b.Fatal(err)
		}
	}
	reportRecords(b, n)
}

var replayBytes = flag.Int64("replay.bytes", 16<<20,
	"uncompressed size of the S3-layout tree BenchmarkReplayGzipTree generates (1<<30 for the 1 GB memory target)")

// gzTree is the generated S3-layout tree, made once per process.
var gzTree struct {
	once    sync.Once
	root    string
	records int
	bytes   int64
	err     error
}

// s3Tree writes, once, gzipped CloudTrail log files in the S3 layout
// (AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/...json.gz) holding
// *replayBytes of corpus records, each with its own eventID. It streams:
// the generator itself holds one file's worth of data at a time.
func s3Tree(b *testing.B) (root string, records int, size int64) {
	recs := corpusRecords(b)
	gzTree.once.Do(func() {
		root, err := os.MkdirTemp("", "trailwatch-bench-")
		if err != nil {
			gzTree.err = err
			return
		}
		gzTree.root = root
		dir := filepath.Join(root, "AWSLogs", "111122223333", "CloudTrail", "us-east-1", "2024", "05", "01")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			gzTree.err = err
			return
		}
		const perFile = 2000 // a busy account's five-minute file
		var buf bytes.Buffer
		for f := 0; gzTree.bytes < *replayBytes; f++ {
			name := filepath.Join(dir, fmt.Sprintf("111122223333_CloudTrail_us-east-1_20240501T%02d%02dZ_%06d.json.gz", f/60%24, f%60, f))
			buf.Reset()
			buf.WriteString(`{"Records":[`)
			for i := 0; i < perFile && gzTree.bytes < *replayBytes; i++ {
				r := recs[(f*perFile+i)%len(recs)]
				if i > 0 {
					buf.WriteByte(',')
				}
				before := buf.Len()
				// A distinct eventID, so that dedup keeps every record.
				if j := bytes.Index(r, []byte(`"eventID":"`)); j >= 0 {
					buf.Write(r[:j+len(`"eventID":"`)])
					buf.WriteString(strconv.Itoa(f) + "-" + strconv.Itoa(i) + "-")
					buf.Write(r[j+len(`"eventID":"`):])
				} else {
					buf.Write(r)
				}
				gzTree.bytes += int64(buf.Len() - before)
				gzTree.records++
			}
			buf.WriteString(`]}`)
			fh, err := os.Create(name)
			if err != nil {
				gzTree.err = err
				return
			}
			zw, _ := kgzip.NewWriterLevel(fh, kgzip.BestSpeed)
			_, werr := zw.Write(buf.Bytes())
			cerr := zw.Close()
			if err := fh.Close(); werr != nil || cerr != nil || err != nil {
				gzTree.err = fmt.Errorf("write %s: %v %v %v", name, werr, cerr, err)
				return
			}
		}
	})
	if gzTree.err != nil {
		b.Fatal(gzTree.err)
	}
	return gzTree.root, gzTree.records, gzTree.bytes
}

func TestMain(m *testing.M) {
	code := m.Run()
	if gzTree.root != "" {
		os.RemoveAll(gzTree.root)
	}
	os.Exit(code)
}

// peakRSS returns the process's peak resident set (VmHWM), in bytes.
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return -1
}

// BenchmarkReplayGzipTree replays a generated tree of gzipped S3-layout
// log files as trailwatch replay does (files.Walk, Parallel with
// GOMAXPROCS workers, all built-in rules) and reports the process's peak
// resident memory. The tree is -replay.bytes uncompressed (16 MiB by
// default, so CI's -benchtime 20x stays quick); the 1 GB target is
//
//	go test -run '^$' -bench ReplayGzipTree -benchtime 1x -cpu 1 ./engine/decide/ -args -replay.bytes=1073741824
func BenchmarkReplayGzipTree(b *testing.B) {
	root, records, size := s3Tree(b)
	ev := NewEvaluator(builtinSet(b), EvaluatorOptions{DedupWindow: -1})
	runtime.GC()
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		p := NewParallel(ev, ParallelOptions{}, func(struct{}, []Match, error) error { return nil })
		err := files.Walk(context.Background(), []string{root}, files.Options{}, func(r files.Record) error {
			n++
			return p.Add(r.Data, struct{}{})
		}, func(bad *files.BadInput) { b.Errorf("bad input: %v", bad) })
		if cerr := p.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	if n != records*b.N {
		b.Fatalf("replayed %d records, want %d", n, records*b.N)
	}
	reportRecords(b, n)
	b.ReportMetric(float64(peakRSS())/(1<<20), "peak-RSS-MiB")
}

// BenchmarkGunzip compares the two gzip decoders on the generated tree's
// files: github.com/klauspost/compress/gzip (what engine/files uses) and
// the standard library's compress/gzip.
func BenchmarkGunzip(b *testing.B) {
	root, _, size := s3Tree(b)
	paths, err := files.List(root, files.Options{})
	if err != nil {
		b.Fatal(err)
	}
	var blobs [][]byte
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		blobs = append(blobs, data)
	}
	decoders := []struct {
		name string
		open func(io.Reader) (io.Reader, error)
	}{
		{"klauspost", func(r io.Reader) (io.Reader, error) { return kgzip.NewReader(r) }},
		{"stdlib", func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }},
	}
	for _, d := range decoders {
		b.Run(d.name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				for _, blob := range blobs {
					zr, err := d.open(bytes.NewReader(blob))
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.Copy(io.Discard, zr); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkDecideReplay measures what replay does after evaluation, per
// rule match: each record's matches decided by DecideMatches through a
// lifecycle (dedup, thresholds, group_by; record by record, as replay
// does) and the alerts that go out written as JSON (AppendJSON). The
// matches are those of the corpus ×30 (unique eventIDs), evaluated before
// the timer starts. Its "records" are the matches: cpu-ns/record is the
// CPU time (the collector's included) per match.
//
//	go test -run '^$' -bench DecideReplay -benchmem -cpu 1 -count 5 ./engine/decide/
func BenchmarkDecideReplay(b *testing.B) {
	var all bytes.Buffer
	if err := corpus.Copies(&all, corpusRecords(b), 30); err != nil {
		b.Fatal(err)
	}
	ev := NewEvaluator(builtinSet(b), EvaluatorOptions{})
	var recs [][]Match
	matches := 0
	// Without ReuseEvents the matches' events are their own: they can be
	// kept; their summaries and records are left for the decision, as
	// replay's are.
	p := NewParallel(ev, ParallelOptions{Workers: 1}, func(_ int, ms []Match, _ error) error {
		recs = append(recs, slices.Clone(ms))
		matches += len(ms)
		return nil
	})
	for i, r := range bytes.Split(bytes.TrimSpace(all.Bytes()), []byte("\n")) {
		if err := p.Add(r, i); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		b.Fatal(err)
	}
	var buf []byte
	cputime.Run(b, matches, func() {
		// replay's defaults: dedup only for the rules that ask for it.
		lc, err := lifecycle.Open(lifecycle.Config{}, lifecycle.Options{})
		if err != nil {
			b.Fatal(err)
		}
		d := New(ev, nil, Options{Lifecycle: lc})
		for _, ms := range recs {
			res, err := d.DecideMatches(context.Background(), ms, false)
			if err != nil {
				b.Fatal(err)
			}
			for i := range res.Alerts {
				if buf, err = res.Alerts[i].Alert.AppendJSON(buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
