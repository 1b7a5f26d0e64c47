package search

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/trailwatch/trailwatch/engine/files"
	"github.com/trailwatch/trailwatch/engine/s3files"
	"github.com/trailwatch/trailwatch/internal/corpus"
	"github.com/trailwatch/trailwatch/internal/s3test"
	"github.com/trailwatch/trailwatch/rules"
)

// sequentialFiles is Files as it was before it read files on several
// goroutines: one walk, every record offered in turn, the callbacks called
// as the walk meets things. The differential tests hold Files to it. The
// lock is new: S3's listing goroutine calls SkipDir and SkipFile while
// records are offered, which raced (Files now takes the prunes in order).
func sequentialFiles(ctx context.Context, s *Searcher, paths []string) error {
	var mu sync.Mutex
	opts := files.Options{
		SkipDir: func(p string) bool {
			mu.Lock()
			defer mu.Unlock()
			if s.pruneDir(p) {
				s.stats.Pruned++
				return true
			}
			return false
		},
		SkipFile: func(p string) bool {
			mu.Lock()
			defer mu.Unlock()
			if s.pruneFile(p) {
				s.stats.Pruned++
				if s.opts.SkipFile != nil {
					s.opts.SkipFile(p)
				}
				return true
			}
			return false
		},
	}
	current := ""
	s3opts := s3files.Options{Options: opts, Window: s.window(), Client: s.opts.S3}
	return s3files.Walk(ctx, paths, s3opts, func(r files.Record) error {
		mu.Lock()
		defer mu.Unlock()
		if r.File != current {
			current = r.File
			s.stats.Current = current
		}
		s.Offer(r.Data, r.Place(), time.Time{})
		return nil
	}, func(b *files.BadInput) {
		mu.Lock()
		defer mu.Unlock()
		s.bad(b.Place, b.Err)
	})
}

// searchCase is one search of the differential tests.
type searchCase struct {
	name     string
	q        Query
	limit    int
	cancelAt int // cancel from the Progress callback once this many records were read (0: never)
}

// transcript runs a search and writes down everything it shows: every
// callback in order (skipped inputs, failed --where, pruned files,
// progress with the counters at that moment), the error, the counters,
// and the results with their places, as JSON and as a table.
func transcript(t *testing.T, c searchCase, paths []string, workers int, seq bool) string {
	t.Helper()
	var b strings.Builder
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := New(c.q, Options{
		Limit: c.limit, Workers: workers, ProgressEvery: 7,
		OnBadInput:   func(p string, err error) { fmt.Fprintf(&b, "skipped %s: %v\n", p, err) },
		OnWhereError: func(p string, err error) { fmt.Fprintf(&b, "where failed on %s: %v\n", p, err) },
		SkipFile:     func(p string) { fmt.Fprintf(&b, "pruned %s\n", p) },
		Progress: func(st Stats) {
			fmt.Fprintf(&b, "progress %+v\n", st)
			if c.cancelAt > 0 && st.Scanned >= c.cancelAt {
				cancel()
			}
		},
	})
	var err error
	if seq {
		err = sequentialFiles(ctx, s, paths)
	} else {
		err = s.Files(ctx, paths, nil)
	}
	fmt.Fprintf(&b, "error: %v\nstats: %+v\n", err, s.Stats())
	results := s.Results()
	for _, r := range results {
		fmt.Fprintf(&b, "%s\n", r.Place)
	}
	for _, format := range []string{FormatJSON, FormatTable} {
		if err := Render(&b, results, RenderOptions{Format: format, Width: 200}); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// writeMessyTree writes an S3-layout trail of gzipped log files over two
// days, with what real trees hold and what breaks readers: events
// delivered twice (in another file), an eventID reused by another event,
// elements that are not CloudTrail records, a corrupt and a truncated
// file, an empty one, a digest folder, hidden files, and beside the tree
// a JSON Lines file with bad lines. It returns the trail's time span.
func writeMessyTree(t *testing.T, root string) (start, end time.Time) {
	t.Helper()
	rng := rand.New(rand.NewPCG(13, 17))
	base := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	users := []string{"alice", "bob", "carol", "mallory"}
	names := []string{"CreateUser", "GetObject", "ConsoleLogin", "DeleteUser", "AssumeRole"}
	var earlier []string
	n := 0
	for f := range 40 {
		delivered := base.Add(time.Duration(f) * 71 * time.Minute)
		var recs []string
		for range rng.IntN(40) {
			switch k := rng.IntN(100); {
			case k < 8 && len(earlier) > 0: // delivered again
				recs = append(recs, earlier[rng.IntN(len(earlier))])
			case k < 10 && len(earlier) > 0: // an eventID reused by another event
				r := earlier[rng.IntN(len(earlier))]
				recs = append(recs, strings.Replace(r, `"eventName":"`, `"eventName":"Re`, 1))
			case k < 12:
				recs = append(recs, `{"eventTime":7,"eventName":"CreateUser","userIdentity":{"userName":"alice"}}`)
			case k < 13:
				recs = append(recs, `"CreateUser by alice"`)
			case k < 15: // a time that is not one: --where and ranges see it
				recs = append(recs, fmt.Sprintf(`{"eventVersion":"1.09","eventName":"CreateUser","eventID":"nt-%d","userIdentity":{"userName":"alice","accessKeyId":"AKIAALICE"}}`, n))
				n++
			default:
				ts := delivered.Add(-time.Duration(rng.IntN(40)) * time.Minute)
				r := record(fmt.Sprintf("ev-%d", n), names[rng.IntN(len(names))], users[rng.IntN(len(users))], ts)
				n++
				recs = append(recs, r)
				earlier = append(earlier, r)
			}
		}
		data := gzipped(t, logFile(recs...))
		switch f {
		case 7:
			data = []byte("not gzip, not json")
		case 11:
			data = data[:len(data)/2]
		case 19:
			data = nil
		}
		writeLogFile(t, root, delivered, data)
	}
	end = base.Add(40 * 71 * time.Minute)
	digest := filepath.Join(root, "AWSLogs", "111122223333", "CloudTrail-Digest", "us-east-1", "2024", "05", "01")
	if err := os.MkdirAll(digest, 0o755); err != nil {
		t.Fatal(err)
	}
	lines := []string{
		record("l-1", "CreateUser", "alice", base.Add(3*time.Hour)),
		`{"eventName": "CreateUser", "userIdentity": `,
		record("ev-3", "CreateUser", "alice", base.Add(4*time.Hour)), // an eventID of the tree
		`[1, 2]`,
		record("l-2", "GetObject", "mallory", base.Add(30*time.Hour)),
	}
	for _, f := range []struct{ path, data string }{
		{filepath.Join(digest, "111122223333_CloudTrail-Digest_us-east-1_x.json.gz"), "{}"},
		{filepath.Join(root, "AWSLogs", ".hidden.json"), "garbage"},
		{filepath.Join(root, "lines.jsonl"), strings.Join(lines, "\n") + "\n"},
	} {
		if err := os.WriteFile(f.path, []byte(f.data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return base, end
}

// searchCases are searches over writeMessyTree's trail: everything, a
// limit, Event History's lookups, a time range that prunes, a --where
// that fails on some records, and interruptions.
func searchCases(t *testing.T, start, end time.Time) []searchCase {
	t.Helper()
	where, err := rules.CompileCondition(`int(userIdentity.userName) > 0 || eventName == "GetObject"`)
	if err != nil {
		t.Fatal(err)
	}
	mid := start.Add(end.Sub(start) / 2)
	return []searchCase{
		{name: "everything", q: Query{}},
		{name: "limit 1", q: Query{}, limit: 1},
		{name: "limit 7", q: Query{EventName: "CreateUser"}, limit: 7},
		{name: "user", q: Query{User: "alice"}, limit: 100},
		{name: "access key", q: Query{AccessKey: "AKIAMALLORY"}},
		{name: "time range", q: Query{Start: mid.Add(-3 * time.Hour), End: mid.Add(2 * time.Hour)}},
		{name: "time range and user", q: Query{User: "bob", Start: mid}, limit: 3},
		{name: "where fails", q: Query{Where: where}},
		{name: "interrupted early", q: Query{}, cancelAt: 20},
		{name: "interrupted late", q: Query{EventName: "CreateUser"}, cancelAt: 500},
	}
}

// small makes chunks tiny, so that every input is cut into many.
func small(t *testing.T) {
	items, records := chunkItems, chunkRecords
	chunkItems, chunkRecords = 3, 5
	t.Cleanup(func() { chunkItems, chunkRecords = items, records })
}

// TestFilesParallelIsSequential holds Files on several goroutines to the
// sequential search, byte for byte, over a messy trail, the real corpus
// (plain and gzipped), with limits, time ranges, --where errors, bad
// inputs, interruptions and a missing path.
func TestFilesParallelIsSequential(t *testing.T) {
	root := t.TempDir()
	start, end := writeMessyTree(t, root)
	cases := searchCases(t, start, end)
	check := func(t *testing.T, paths []string, cases []searchCase, workers ...int) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				want := transcript(t, c, paths, 1, true)
				if c.cancelAt == 0 && !strings.Contains(want, "error: <nil>") && !strings.Contains(want, "no such file") {
					t.Fatalf("the sequential search failed:\n%s", want)
				}
				for _, workers := range workers {
					if got := transcript(t, c, paths, workers, false); got != want {
						t.Errorf("%d workers: the output differs from the sequential search's\n%s", workers, diff(got, want))
					}
				}
			})
		}
	}
	t.Run("trail", func(t *testing.T) {
		check(t, []string{root}, cases, 1, 2, 3, 8)
	})
	t.Run("trail in small chunks", func(t *testing.T) {
		small(t)
		check(t, []string{root}, cases, 1, 2, 3, 8)
	})
	t.Run("missing path after the trail", func(t *testing.T) {
		small(t)
		check(t, []string{root, filepath.Join(root, "absent"), root}, cases[:2], 1, 2, 3, 8)
	})
	t.Run("corpus", func(t *testing.T) {
		// The corpus's records gzipped, as CloudTrail's S3 log files are
		// (reading them plain differs only in the gzip layer).
		dir := t.TempDir()
		for i, p := range corpus.Files(t) {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d.jsonl.gz", i)), gzipped(t, string(data)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		where, err := rules.CompileCondition(`errorCode == "AccessDenied" || eventName startsWith "Delete"`)
		if err != nil {
			t.Fatal(err)
		}
		check(t, []string{dir}, []searchCase{
			{name: "everything, newest 100", q: Query{}, limit: 100},
			{name: "where", q: Query{Where: where}},
			{name: "event source", q: Query{EventSource: "iam"}, limit: 20},
			{name: "time range", q: Query{Start: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)}},
			{name: "interrupted", q: Query{}, cancelAt: 3000},
		}, 2, 8)
	})
}

// TestFilesParallelFromS3 holds Files to the sequential search over the
// trail in a bucket (moto), where objects are fetched ahead and read on
// several goroutines. The S3 listing runs ahead of the reading on a
// goroutine of its own, in the sequential search too, so when a pruned
// object is reported among the records is not fixed: the transcripts
// leave those reports out (the final count of pruned objects stays in).
func TestFilesParallelFromS3(t *testing.T) {
	root := t.TempDir()
	start, end := writeMessyTree(t, root)
	rig := s3test.Start(t)
	rig.Bucket("trail")
	rig.UploadTree("trail", "", root)
	cases := searchCases(t, start, end)
	for _, c := range []searchCase{cases[0], cases[2], cases[4], cases[5]} {
		t.Run(c.name, func(t *testing.T) {
			want := withoutPrunes(transcript(t, c, []string{"s3://trail/AWSLogs/"}, 1, true))
			if !strings.Contains(want, "error: <nil>") {
				t.Fatalf("the sequential search failed:\n%s", want)
			}
			for _, workers := range []int{2, 5} {
				if got := withoutPrunes(transcript(t, c, []string{"s3://trail/AWSLogs/"}, workers, false)); got != want {
					t.Errorf("%d workers: the output differs from the sequential search's\n%s", workers, diff(got, want))
				}
			}
		})
	}
}

// TestFilesStopLeavesNoGoroutine stops a parallel search every way it
// can stop early (interrupted from the progress callback, a missing path,
// a context already ended) and checks that no goroutine outlives Files:
// the workers, the listing and the fetches ahead all end.
func TestFilesStopLeavesNoGoroutine(t *testing.T) {
	root := t.TempDir()
	writeMessyTree(t, root)
	small(t)
	before := goleak.IgnoreCurrent()
	for _, tt := range []struct {
		name   string
		paths  []string
		cancel int // cancel once this many records were read; -1: before
	}{
		{"interrupted", []string{root}, 30},
		{"missing path", []string{filepath.Join(root, "absent"), root}, 0},
		{"interrupted before", []string{root, root}, -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel < 0 {
				cancel()
			}
			s := New(Query{}, Options{Workers: 4, ProgressEvery: 10, Progress: func(st Stats) {
				if tt.cancel > 0 && st.Scanned >= tt.cancel {
					cancel()
				}
			}})
			if err := s.Files(ctx, tt.paths, nil); err == nil {
				t.Fatal("Files returned nil, want an error")
			}
			goleak.VerifyNone(t, before)
		})
	}
}

// withoutPrunes drops a transcript's reports of pruned files and their
// count in progress reports.
func withoutPrunes(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "pruned ") {
			continue
		}
		if strings.HasPrefix(l, "progress ") {
			l = prunedCount.ReplaceAllString(l, "Pruned:? ")
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

var prunedCount = regexp.MustCompile(`Pruned:\d+ `)

// diff shows the first line where got and want part.
func diff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			return fmt.Sprintf("line %d:\n got: %s\nwant: %s", i+1, g[i], w[i])
		}
	}
	return fmt.Sprintf("got %d lines, want %d", len(g), len(w))
}
