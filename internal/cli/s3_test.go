package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/internal/faultproxy"
	"github.com/trailwatch/trailwatch/internal/s3test"
)

// listCounter puts a proxy in front of the rig's moto for trailwatch's own
// clients (AWS_ENDPOINT_URL) and counts the ListObjectsV2 calls through it.
func listCounter(t *testing.T, rig *s3test.Rig) *atomic.Int64 {
	t.Helper()
	var lists atomic.Int64
	proxy := faultproxy.Start(t, rig.Moto.Endpoint, func(r *http.Request, _ []byte, _ int) faultproxy.Fault {
		if r.Method == http.MethodGet && r.URL.Query().Get("list-type") == "2" {
			lists.Add(1)
		}
		return faultproxy.Forward
	})
	t.Setenv("AWS_ENDPOINT_URL", proxy.URL)
	return &lists
}

// summary is search's count of matches and records scanned.
var summary = regexp.MustCompile(`\d+ matching records[^;]*; \d+ records scanned, \d+ duplicates dropped`)

// TestSearchS3 searches a trail's tree in S3 and the same tree on disk:
// the same records, and with a time range only the day prefixes the range
// needs are listed.
func TestSearchS3(t *testing.T) {
	rig := s3test.Start(t)
	lists := listCounter(t, rig)
	dir := t.TempDir()
	s3test.WriteTrail(t, dir, s3test.TrailOptions{End: time.Date(2024, 5, 8, 0, 0, 0, 0, time.UTC)})
	rig.Bucket("trail")
	rig.UploadTree("trail", "", dir)
	ctx := context.Background()

	tests := []struct {
		name  string
		flags string
		lists int64 // List calls, 0: not checked
	}{
		// AWSLogs/, two accounts, their CloudTrail/ and CloudTrail-Insight/
		// folders, and the one day of each of four regions and two
		// Insights regions: see s3files' TestListPrunesByTime.
		{"one hour", "--start 2024-05-03T12:00 --end 2024-05-03T13:00", 1 + 2 + 2 + 4 + 2 + 2},
		{"since, open at the end", "--since 120h", 0},
		{"everything", "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := "search --event-name ConsoleLogin --limit 0 --output jsonl " + tt.flags + " "
			// --since counts back from now: fix now for both runs.
			if strings.Contains(tt.flags, "--since") {
				args = strings.Replace(args, "--since 120h", "--start 2024-05-02T00:00", 1)
			}
			code, wantOut, wantErr := runCLI(t, ctx, args+filepath.Join(dir, "AWSLogs"))
			if code != 0 || strings.Count(wantOut, "\n") == 0 {
				t.Fatalf("local search: exit %d, %d records\n%s", code, strings.Count(wantOut, "\n"), wantErr)
			}
			lists.Store(0)
			code, out, errs := runCLI(t, ctx, args+"s3://trail/AWSLogs/")
			if code != 0 {
				t.Fatalf("s3 search: exit %d\n%s", code, errs)
			}
			if out != wantOut {
				t.Errorf("s3 search gave\n%s\nthe local copy\n%s", out, wantOut)
			}
			if got, want := summary.FindString(errs), summary.FindString(wantErr); got != want || got == "" {
				t.Errorf("s3 summary %q, local %q", got, want)
			}
			if tt.lists > 0 && lists.Load() != tt.lists {
				t.Errorf("%d List calls, want %d", lists.Load(), tt.lists)
			}
			if !strings.Contains(errs, "List calls") {
				t.Errorf("stderr does not say what was read from S3:\n%s", errs)
			}
		})
	}
}

// TestReplayS3 replays the corpus tree (JSON Lines files, an S3 log file,
// a corrupt one, lines that are not records) from S3 and from disk: the
// same alerts, in the same order, and the same problems at the same
// places.
func TestReplayS3(t *testing.T) {
	dir := replayTree(t)
	rig := s3test.Start(t)
	listCounter(t, rig)
	rig.Bucket("incident")
	rig.UploadTree("incident", "2024-05-01/", dir)
	for _, mode := range []string{"--output json", "--output text"} {
		t.Run(mode, func(t *testing.T) {
			code, wantOut, wantErr := runCLI(t, context.Background(), "replay "+mode+" "+dir)
			if code != 0 || !strings.Contains(wantOut, "aws-") || !strings.Contains(wantErr, "skipped") {
				t.Fatalf("the local replay did not exercise alerts and bad input: exit %d\n%.1000s\n%.1000s", code, wantOut, wantErr)
			}
			code, out, errs := runCLI(t, context.Background(), "replay "+mode+" s3://incident/2024-05-01/")
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, errs)
			}
			if out != wantOut {
				t.Errorf("stdout differs from the local replay's at byte %d", diffAt(out, wantOut))
			}
			// The same reports, at the same places.
			local := strings.ReplaceAll(wantErr, dir+"/", "s3://incident/2024-05-01/")
			s3 := regexp.MustCompile(`(?m)^trailwatch: read \d+ objects .*\n`).ReplaceAllString(errs, "")
			if s3 != local {
				t.Errorf("stderr:\n%s\nwant the local replay's:\n%s", s3, local)
			}
		})
	}
}

// TestReplayS3Progress replays a bucket with stderr on a terminal and
// stdout redirected: a progress line says how many records and objects
// were read, and is erased before the summary.
func TestReplayS3Progress(t *testing.T) {
	rig := s3test.Start(t)
	dir := t.TempDir()
	s3test.WriteTrail(t, dir, s3test.TrailOptions{Records: 100})
	rig.Bucket("trail")
	rig.UploadTree("trail", "", dir)
	var out, errs bytes.Buffer
	tw := terminalWidth
	t.Cleanup(func() { terminalWidth = tw })
	terminalWidth = func(w io.Writer) (int, bool) { return 200, w == &errs }
	every := replayProgressEvery
	t.Cleanup(func() { replayProgressEvery = every })
	replayProgressEvery = 0

	code := Main(context.Background(), []string{"replay", "--quiet", "s3://trail/AWSLogs/"}, Stdio{In: strings.NewReader(""), Out: &out, Err: &errs})
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, errs.String())
	}
	got := errs.String()
	if !regexp.MustCompile(`\r\x1b\[Kread 1024 records \([^)]*/s\) and \d+ objects \(0 MiB\) from S3: s3://trail/AWSLogs/`).MatchString(got) {
		t.Errorf("no progress line on the terminal:\n%q", got)
	}
	if !strings.Contains(got, "\r\x1b[Ktrailwatch: read ") {
		t.Errorf("the progress line is not erased before the summary:\n%q", got)
	}
	if strings.Contains(out.String(), "\x1b") {
		t.Error("the progress line went to stdout")
	}
}
