package search

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// record is a small CloudTrail record.
func record(id, name, user string, t time.Time) string {
	return fmt.Sprintf(`{"eventVersion":"1.09","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/%s","userName":%q,"accessKeyId":"AKIA%s"},"eventTime":%q,"eventSource":"iam.amazonaws.com","eventName":%q,"awsRegion":"us-east-1","sourceIPAddress":"192.0.2.1","eventID":%q,"readOnly":false}`,
		user, user, strings.ToUpper(user), t.UTC().Format(time.RFC3339), name, id)
}

func gzipped(t testing.TB, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// writeLogFile writes an S3-layout CloudTrail log file delivered at
// delivered and returns its path.
func writeLogFile(t testing.TB, root string, delivered time.Time, data []byte) string {
	t.Helper()
	d := delivered.UTC()
	dir := filepath.Join(root, "AWSLogs", "111122223333", "CloudTrail", "us-east-1", d.Format("2006"), d.Format("01"), d.Format("02"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("111122223333_CloudTrail_us-east-1_%s_%x.json.gz", d.Format("20060102T1504Z"), d.UnixNano()&0xffffff)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// logFile is a {"Records":[...]} document of records.
func logFile(recs ...string) string {
	return `{"Records":[` + strings.Join(recs, ",") + `]}`
}

func TestFilesPruneS3Layout(t *testing.T) {
	root := t.TempDir()
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return base.Add(d) }

	// Inside the range [12:00, 13:00): events, some delivered late.
	writeLogFile(t, root, at(5*time.Minute), gzipped(t, logFile(record("in-1", "CreateUser", "alice", at(time.Minute)))))
	writeLogFile(t, root, at(70*time.Minute), gzipped(t, logFile(
		record("in-late", "CreateUser", "alice", at(55*time.Minute)), // delivered 15 min late
		record("out-after", "CreateUser", "alice", at(65*time.Minute)))))
	// A file delivered just after Start holds an event from before it.
	writeLogFile(t, root, at(2*time.Minute), gzipped(t, logFile(record("out-before", "CreateUser", "alice", at(-3*time.Minute)))))
	// Corrupt files whose names put them out of range: they would be
	// reported as bad inputs if opened.
	corruptBefore := writeLogFile(t, root, at(-30*time.Minute), []byte("not gzip, not json"))
	corruptAfter := writeLogFile(t, root, at(3*time.Hour), []byte("not gzip, not json"))
	// Whole days outside the range, also corrupt.
	writeLogFile(t, root, at(-48*time.Hour), []byte("corrupt"))
	writeLogFile(t, root, at(72*time.Hour), []byte("corrupt"))
	writeLogFile(t, root, at(-24*365*time.Hour), []byte("corrupt"))
	// Digest files hold no events.
	digest := filepath.Join(root, "AWSLogs", "111122223333", "CloudTrail-Digest", "us-east-1", "2024", "05", "01")
	if err := os.MkdirAll(digest, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(digest, "111122223333_CloudTrail-Digest_us-east-1_x_us-east-1_20240501T120000Z.json.gz"), []byte("corrupt"), 0o644); err != nil {
		t.Fatal(err)
	}

	var skipped, bad []string
	s := New(Query{Start: base, End: at(time.Hour)}, Options{
		SkipFile:   func(p string) { skipped = append(skipped, p) },
		OnBadInput: func(place string, err error) { bad = append(bad, place+": "+err.Error()) },
	})
	if err := s.Files(context.Background(), []string{root}, nil); err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("files outside the range were opened: %v", bad)
	}
	sort.Strings(skipped)
	want := []string{corruptBefore, corruptAfter}
	sort.Strings(want)
	if strings.Join(skipped, "\n") != strings.Join(want, "\n") {
		t.Errorf("skipped files:\n%s\nwant:\n%s", strings.Join(skipped, "\n"), strings.Join(want, "\n"))
	}
	if got := ids(s.Results()); got != "in-late,in-1" {
		t.Errorf("results %s, want in-late,in-1", got)
	}
	st := s.Stats()
	// Two files, the 2024-04-29, 2024-05-04 and 2023 trees, the digest tree.
	if st.Pruned != 6 {
		t.Errorf("pruned %d, want 6", st.Pruned)
	}
	if st.Scanned != 4 {
		t.Errorf("scanned %d records, want 4", st.Scanned)
	}
}

func ids(rs []Result) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Event.EventID)
	}
	return strings.Join(out, ",")
}

func TestSearcherOrderDedupLimit(t *testing.T) {
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	recs := []string{
		record("b", "CreateUser", "alice", base.Add(2*time.Minute)),
		record("a", "CreateUser", "alice", base),
		record("c", "CreateUser", "alice", base.Add(time.Minute)),
		record("b", "CreateUser", "alice", base.Add(2*time.Minute)), // delivered twice
		record("d", "DeleteUser", "alice", base.Add(3*time.Minute)),
		record("e", "CreateUser", "bob", base.Add(4*time.Minute)),
		// Not a record, but holding the literals the queries look for
		// (records that certainly do not match are not decoded at all).
		`{"not":"CreateUser by alice"}`,
	}
	tests := []struct {
		name      string
		q         Query
		limit     int
		want      string
		matched   int
		duplicate int
	}{
		{"newest first, duplicates dropped", Query{EventName: "CreateUser"}, 0, "e,b,c,a", 4, 1},
		{"limit keeps the newest", Query{EventName: "CreateUser"}, 2, "e,b", 4, 1},
		{"combined attributes", Query{EventName: "CreateUser", User: "alice"}, 0, "b,c,a", 3, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := 0
			s := New(tt.q, Options{Limit: tt.limit, OnBadInput: func(string, error) { bad++ }})
			for i, r := range recs {
				s.Offer([]byte(r), fmt.Sprint("line ", i+1), time.Time{})
			}
			if got := ids(s.Results()); got != tt.want {
				t.Errorf("results %s, want %s", got, tt.want)
			}
			st := s.Stats()
			if st.Matched != tt.matched || st.Duplicates != tt.duplicate || st.Scanned != len(recs) {
				t.Errorf("stats %+v, want %d matched, %d duplicates, %d scanned", st, tt.matched, tt.duplicate, len(recs))
			}
			if bad != 1 || st.BadInputs != 1 {
				t.Errorf("bad inputs %d (stats %d), want 1", bad, st.BadInputs)
			}
		})
	}
}

func TestFilesCancelled(t *testing.T) {
	dir := t.TempDir()
	var lines []string
	for i := range 100 {
		lines = append(lines, record(fmt.Sprint(i), "CreateUser", "alice", time.Unix(int64(i), 0)))
	}
	p := filepath.Join(dir, "a.jsonl")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Ctrl-C after the 10th record: the walk stops, what was found stays.
	s := New(Query{}, Options{ProgressEvery: 10, Progress: func(Stats) { cancel() }})
	err := s.Files(ctx, []string{p}, nil)
	if err == nil || ctx.Err() == nil {
		t.Fatalf("got %v, want the context's error", err)
	}
	if got := len(s.Results()); got != 10 {
		t.Errorf("kept %d results after cancellation, want 10", got)
	}
}

// TestStdinRecordsTakenAsRead: standard input may fall quiet for as long
// as its producer likes (a pipe, a terminal). A record read from it is
// taken by the search at once, on every number of workers, not held until
// a chunk fills: so Ctrl-C while trailwatch waits for more keeps it, and
// a live pipe's matches are counted as they come.
func TestStdinRecordsTakenAsRead(t *testing.T) {
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprint("workers=", workers), func(t *testing.T) {
			pr, pw := io.Pipe()
			defer pw.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			seen := make(chan int, 100)
			s := New(Query{}, Options{Workers: workers, ProgressEvery: 1, Progress: func(st Stats) { seen <- st.Scanned }})
			done := make(chan error, 1)
			go func() { done <- s.Files(ctx, []string{"-"}, pr) }()
			for i := 1; i <= 2; i++ {
				if _, err := io.WriteString(pw, record(fmt.Sprint("quiet-", i), "CreateUser", "alice", time.Unix(int64(i), 0))+"\n"); err != nil {
					t.Fatal(err)
				}
				select {
				case n := <-seen:
					if n != i {
						t.Fatalf("scanned %d after writing %d records", n, i)
					}
				case <-time.After(20 * time.Second):
					t.Fatalf("record %d, written to standard input that stays open, was not taken", i)
				}
			}
			// Ctrl-C while standard input stays open: the CLI's reader
			// (interruptible) then ends the read with the context's error.
			cancel()
			pw.CloseWithError(ctx.Err())
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("Files = %v, want the context's error", err)
			}
			if got := ids(s.Results()); got != "quiet-2,quiet-1" {
				t.Errorf("results after Ctrl-C: %q, want both records read before it", got)
			}
		})
	}
}
