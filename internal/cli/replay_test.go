package cli

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trailwatch/trailwatch/internal/corpus"
)

// replayTree lays out, in a temp dir, the corpus as replay meets real
// input: JSON Lines files, a gzipped S3-layout log file, a broken gzip
// file, and lines that are not records.
func replayTree(t *testing.T) string {
	t.Helper()
	corpus := corpus.Files(t)
	dir := t.TempDir()
	var all [][]byte
	for i, f := range corpus {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
		all = append(all, lines...)
		// A bad line in every file, and the file's first record again
		// (CloudTrail delivers some records twice).
		data = append(append(data, "not a record\n"...), append(lines[0], '\n')...)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%02d.jsonl", i)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s3 := filepath.Join(dir, "AWSLogs", "111122223333", "CloudTrail", "us-east-1", "2024", "05", "01")
	if err := os.MkdirAll(s3, 0o755); err != nil {
		t.Fatal(err)
	}
	var doc bytes.Buffer
	doc.WriteString(`{"Records":[`)
	for i, r := range all[:len(all)/3] {
		if i > 0 {
			doc.WriteByte(',')
		}
		doc.Write(bytes.Replace(r, []byte(`"eventID":"`), []byte(`"eventID":"s3-`), 1))
	}
	doc.WriteString(`]}`)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(doc.Bytes())
	zw.Close()
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(s3, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("111122223333_CloudTrail_us-east-1_20240501T0000Z_a.json.gz", gz.Bytes())
	write("111122223333_CloudTrail_us-east-1_20240501T0005Z_b.json.gz", gz.Bytes()[:gz.Len()/2])
	return dir
}

// TestReplayOutputIndependentOfWorkers checks that replay prints the same
// alerts and the same reports, byte for byte and in the same order,
// whatever the number of goroutines evaluating records: with the alert
// lifecycle and without, as text and as JSON.
func TestReplayOutputIndependentOfWorkers(t *testing.T) {
	dir := replayTree(t)
	for _, mode := range [][]string{
		{"--output", "json"},
		{"--output", "text"},
		{"--output", "json", "--raw", "--dedup-window", "1h"},
	} {
		t.Run(strings.Join(mode, " "), func(t *testing.T) {
			args := append([]string{"replay"}, mode...)
			wantCode, wantOut, wantErr := runArgs(t, append(args, "--workers", "1", dir)...)
			if wantCode != 0 || !strings.Contains(wantOut, "aws-") || !strings.Contains(wantErr, "skipped") {
				t.Fatalf("the sequential replay did not exercise alerts and bad input: exit %d\n%.1000s\n%.1000s", wantCode, wantOut, wantErr)
			}
			for _, workers := range []string{"3", "0"} {
				code, out, errs := runArgs(t, append(args, "--workers", workers, dir)...)
				if code != wantCode {
					t.Errorf("--workers %s: exit %d, want %d", workers, code, wantCode)
				}
				if out != wantOut {
					t.Errorf("--workers %s: stdout differs from --workers 1 at byte %d", workers, diffAt(out, wantOut))
				}
				if errs != wantErr {
					t.Errorf("--workers %s: stderr differs from --workers 1:\n got: %s\nwant: %s", workers, errs, wantErr)
				}
			}
		})
	}
}

func diffAt(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
