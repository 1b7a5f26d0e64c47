package file

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/notifiers"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the current output")

func testAlert() notifiers.Alert {
	return notifiers.Alert{
		RuleID:      "aws-s3-bucket-public",
		Title:       "S3 bucket made public",
		Severity:    "high",
		Summary:     "bob put a public ACL on bucket reports",
		DedupKey:    "aws-s3-bucket-public/9c8b7a6f-5e4d-4c3b-2a19-08f7e6d5c4b3",
		EventID:     "9c8b7a6f-5e4d-4c3b-2a19-08f7e6d5c4b3",
		EventTime:   time.Date(2024, 5, 1, 12, 34, 56, 0, time.UTC),
		EventName:   "PutBucketAcl",
		EventSource: "s3.amazonaws.com",
		Principal:   "arn:aws:iam::123456789012:user/bob",
		UserName:    "bob",
		SourceIP:    "198.51.100.9",
		UserAgent:   "line\nbreak <!channel>",
		AWSRegion:   "us-west-2",
		AccountID:   "123456789012",
		Count:       1,
		Event:       json.RawMessage(`{"eventID":"9c8b7a6f-5e4d-4c3b-2a19-08f7e6d5c4b3"}`),
	}
}

func TestNotifyLineMatchesGolden(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alerts.jsonl")
	n, err := New(Config{Path: path, Fsync: true})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer n.Close()
	if err := n.Notify(context.Background(), testAlert()); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "alert.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("line differs from %s (run with -update if intended)\ngot:  %s\nwant: %s", golden, got, want)
	}
	if bytes.Count(got, []byte("\n")) != 1 {
		t.Errorf("an alert with a newline in a field took %d lines", bytes.Count(got, []byte("\n")))
	}
}

func TestNotifyAppends(t *testing.T) {
	tests := []struct {
		name  string
		fsync bool
	}{
		{"without fsync", false},
		{"with fsync", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "alerts.jsonl")
			if err := os.WriteFile(path, []byte("{\"existing\":true}\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				n, err := New(Config{Path: path, Fsync: tt.fsync})
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if err := n.Notify(context.Background(), testAlert()); err != nil {
					t.Fatalf("Notify: %v", err)
				}
				if err := n.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
			}
			lines := readLines(t, path)
			if len(lines) != 3 || lines[0] != `{"existing":true}` {
				t.Errorf("file has lines %q, want the existing one and two alerts", lines)
			}
		})
	}
}

func TestConcurrentNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alerts.jsonl")
	n, err := New(Config{Path: path})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer n.Close()

	const workers, each = 8, 25
	big := strings.Repeat("x", 64<<10) // bigger than a pipe buffer, to catch split writes
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				a := testAlert()
				a.DedupKey = fmt.Sprintf("k-%d-%d", w, i)
				a.UserAgent = big
				if err := n.Notify(context.Background(), a); err != nil {
					t.Errorf("Notify: %v", err)
				}
			}
		})
	}
	wg.Wait()

	seen := map[string]bool{}
	for i, line := range readLines(t, path) {
		var a notifiers.Alert
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("line %d is not an alert: %v", i+1, err)
		}
		if seen[a.DedupKey] {
			t.Errorf("alert %s written twice", a.DedupKey)
		}
		seen[a.DedupKey] = true
	}
	if len(seen) != workers*each {
		t.Errorf("file holds %d alerts, want %d", len(seen), workers*each)
	}
}

func TestStdout(t *testing.T) {
	var buf bytes.Buffer
	n, err := New(Config{Path: Stdout, Fsync: true}, WithStdout(&buf))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := n.Notify(context.Background(), testAlert()); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	if err := n.Reopen(); err != nil {
		t.Errorf("Reopen on stdout: %v", err)
	}
	var a notifiers.Alert
	if err := json.Unmarshal(buf.Bytes(), &a); err != nil || a.DedupKey != testAlert().DedupKey {
		t.Errorf("stdout got %q (%v), want the alert", buf.String(), err)
	}
}

func TestReopenAfterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "alerts.jsonl")
	n, err := New(Config{Path: path})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer n.Close()
	ctx := context.Background()
	if err := n.Notify(ctx, testAlert()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := n.Reopen(); err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	if err := n.Notify(ctx, testAlert()); err != nil {
		t.Fatal(err)
	}
	if got := len(readLines(t, path)); got != 1 {
		t.Errorf("new file has %d lines, want 1", got)
	}
	if got := len(readLines(t, path+".1")); got != 1 {
		t.Errorf("rotated file has %d lines, want 1", got)
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		run  func() error
		want string
	}{
		{"empty path", func() error { _, err := New(Config{}); return err }, "path is required"},
		{"missing directory", func() error {
			_, err := New(Config{Path: filepath.Join(dir, "nope", "alerts.jsonl")})
			return err
		}, "open alert file"},
		{"cancelled context", func() error {
			n, err := New(Config{Path: filepath.Join(dir, "c.jsonl")})
			if err != nil {
				return err
			}
			defer n.Close()
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return n.Notify(ctx, testAlert())
		}, "context canceled"},
		{"after close", func() error {
			n, err := New(Config{Path: filepath.Join(dir, "d.jsonl")})
			if err != nil {
				return err
			}
			_ = n.Close()
			return n.Notify(context.Background(), testAlert())
		}, "closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}
