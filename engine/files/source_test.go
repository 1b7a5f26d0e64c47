package files_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/files"
	"github.com/trailwatch/trailwatch/engine/source"
)

// rig runs a files.Source over a temporary directory, one listing at a
// time: the source asks for its timer after each listing (scanned), and
// the next listing starts when the test ticks.
type rig struct {
	t       *testing.T
	dir     string // what the source reads
	state   string
	cfg     files.Config
	logs    bytes.Buffer
	logMu   sync.Mutex
	scanned chan struct{}
	tick    chan time.Time

	mu      sync.Mutex
	got     []string // "place data"
	batches int
	failAt  int // the batch (1-based, over the rig's life) the handler refuses; 0: none

	cancel context.CancelFunc
	done   chan error
}

func newRig(t *testing.T, cfg files.Config) *rig {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir(), state: t.TempDir(), cfg: cfg}
	if len(r.cfg.Paths) == 0 {
		r.cfg.Paths = []string{r.dir}
	}
	r.cfg.SetDefaults()
	if err := r.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return r
}

type syncWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (s syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// start runs a new Source (a new process) on the rig's state directory.
func (r *rig) start() {
	r.t.Helper()
	r.scanned, r.tick = make(chan struct{}, 1), make(chan time.Time)
	src, err := files.NewSource(r.cfg, files.SourceOptions{
		StateDir: r.state,
		Logger:   slog.New(slog.NewTextHandler(syncWriter{&r.logMu, &r.logs}, nil)),
		After: func(time.Duration) <-chan time.Time {
			r.scanned <- struct{}{}
			return r.tick
		},
	})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- src.Run(ctx, r.handle) }()
	r.t.Cleanup(func() { r.stop() })
}

func (r *rig) handle(_ context.Context, b source.Batch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches++
	if r.batches == r.failAt {
		return errors.New("outbox full")
	}
	for _, rec := range b.Records {
		if rec.Place.Object != b.Origin {
			r.t.Errorf("record of %s in a batch of %s", rec.Place.Object, b.Origin)
		}
		r.got = append(r.got, filepath.Base(rec.Place.String())+" "+string(rec.Data))
	}
	return nil
}

// wait waits for the listing in progress to finish (or Run to end, whose
// error it returns).
func (r *rig) wait() error {
	r.t.Helper()
	select {
	case <-r.scanned:
		return nil
	case err := <-r.done:
		r.cancel = nil
		return fmt.Errorf("Run ended: %v", err)
	case <-time.After(20 * time.Second):
		r.t.Fatal("the source never finished a listing")
		return nil
	}
}

// next starts the next listing and waits for it to finish.
func (r *rig) next() {
	r.t.Helper()
	r.tick <- time.Now()
	if err := r.wait(); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		r.t.Errorf("Run: %v", err)
	}
}

// take returns the records handed over since the last take.
func (r *rig) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

func (r *rig) write(name, data string) {
	r.t.Helper()
	p := filepath.Join(r.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) appendTo(name, data string) {
	r.t.Helper()
	f, err := os.OpenFile(filepath.Join(r.dir, name), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(data); err != nil {
		r.t.Fatal(err)
	}
}

func gzipped(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	zw.Close()
	return b.String()
}

func expect(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: handed over\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestFilesSourceReadsEachRecordOnce follows a directory through new
// files, an appended file and a restart: every record is handed over
// once, in file order, in batches of batch_records.
func TestFilesSourceReadsEachRecordOnce(t *testing.T) {
	r := newRig(t, files.Config{BatchRecords: 2})
	r.write("a.jsonl", `{"eventID":"a1"}`+"\n"+`{"eventID":"a2"}`+"\n"+`{"eventID":"a3"}`+"\n")
	r.write("AWSLogs/b.json.gz", gzipped(t, `{"Records":[{"eventID":"b1"},{"eventID":"b2"}]}`))
	r.write(".partial.jsonl", `{"eventID":"hidden"}`+"\n")
	r.write("notes.txt", "not an event file\n")
	r.start()
	if err := r.wait(); err != nil {
		t.Fatal(err)
	}
	expect(t, "the first listing", r.take(),
		`b.json.gz: record 1 {"eventID":"b1"}`, `b.json.gz: record 2 {"eventID":"b2"}`,
		`a.jsonl:1 {"eventID":"a1"}`, `a.jsonl:2 {"eventID":"a2"}`, `a.jsonl:3 {"eventID":"a3"}`)
	if r.batches != 3 {
		t.Errorf("%d batches, want 3 (b; a1 a2; a3)", r.batches)
	}

	r.next()
	expect(t, "a listing with nothing new", r.take())

	r.appendTo("a.jsonl", `{"eventID":"a4"}`+"\n")
	r.write("c.jsonl", `{"eventID":"c1"}`+"\n")
	r.next()
	expect(t, "a listing after an append and a new file", r.take(), `a.jsonl:4 {"eventID":"a4"}`, `c.jsonl:1 {"eventID":"c1"}`)

	// A new process on the same state directory goes on where this one
	// stopped.
	r.stop()
	r.appendTo("c.jsonl", `{"eventID":"c2"}`+"\n")
	r.start()
	if err := r.wait(); err != nil {
		t.Fatal(err)
	}
	expect(t, "the listing after a restart", r.take(), `c.jsonl:2 {"eventID":"c2"}`)
}

// TestFilesSourceResumesAfterARefusedBatch checks the contract: a batch
// the handler refused stops Run, and the next Run hands it over again,
// and nothing that was accepted before it.
func TestFilesSourceResumesAfterARefusedBatch(t *testing.T) {
	r := newRig(t, files.Config{BatchRecords: 2})
	r.write("a.jsonl", strings.Repeat("x\n", 5))
	r.failAt = 2
	r.start()
	if err := r.wait(); err == nil || !strings.Contains(err.Error(), "outbox full") {
		t.Fatalf("Run with a refused batch: %v, want the handler's error", err)
	}
	expect(t, "before the refusal", r.take(), "a.jsonl:1 x", "a.jsonl:2 x")
	r.start()
	if err := r.wait(); err != nil {
		t.Fatal(err)
	}
	expect(t, "after the restart", r.take(), "a.jsonl:3 x", "a.jsonl:4 x", "a.jsonl:5 x")
}

// TestFilesSourceStartNow checks that start: now leaves the files present
// at the first start, and reads what comes after.
func TestFilesSourceStartNow(t *testing.T) {
	r := newRig(t, files.Config{Start: "now"})
	r.write("old.jsonl", "old\n")
	r.start()
	if err := r.wait(); err != nil {
		t.Fatal(err)
	}
	expect(t, "the first listing", r.take())
	r.appendTo("old.jsonl", "later\n")
	r.write("new.jsonl", "new\n")
	r.next()
	expect(t, "the next listing", r.take(), "new.jsonl:1 new", "old.jsonl:2 later")
	// start only applies to the first run.
	r.stop()
	r.write("after-restart.jsonl", "x\n")
	r.start()
	if err := r.wait(); err != nil {
		t.Fatal(err)
	}
	expect(t, "after a restart", r.take(), "after-restart.jsonl:1 x")
}

// TestFilesSourceReplacedFile checks that a file replaced by a shorter one
// is read from its start.
func TestFilesSourceReplacedFile(t *testing.T) {
	r := newRig(t, files.Config{})
	r.write("a.jsonl", "one\ntwo\n")
	r.start()
	if err := r.wait(); err != nil {
		t.Fatal(err)
	}
	r.take()
	r.write("a.jsonl", "3\n")
	r.next()
	expect(t, "the replaced file", r.take(), "a.jsonl:1 3")
}

// TestFilesSourceReportsABadInputOnce checks that an input that cannot be
// read is logged (with its place) once, not at every listing, and that
// the rest is still read.
func TestFilesSourceReportsABadInputOnce(t *testing.T) {
	r := newRig(t, files.Config{})
	r.write("cut.json.gz", gzipped(t, `{"Records":[{"eventID":"x"}]}`)[:20])
	r.write("good.jsonl", "ok\n")
	r.start()
	if err := r.wait(); err != nil {
		t.Fatal(err)
	}
	r.write("cut.json.gz", gzipped(t, `{"Records":[{"eventID":"y"}]}`)[:20]) // rewritten: read again
	r.next()
	r.next()
	expect(t, "the records", r.take(), "good.jsonl:1 ok")
	r.logMu.Lock()
	logs := r.logs.String()
	r.logMu.Unlock()
	if n := strings.Count(logs, "cut.json.gz"); n != 1 {
		t.Errorf("the bad input was logged %d times, want once:\n%s", n, logs)
	}
}

// TestFilesSourceHeldByAnotherRun checks that a second run on the same
// state directory refuses to start rather than read alongside.
func TestFilesSourceHeldByAnotherRun(t *testing.T) {
	r := newRig(t, files.Config{})
	r.start()
	if err := r.wait(); err != nil {
		t.Fatal(err)
	}
	src, err := files.NewSource(r.cfg, files.SourceOptions{StateDir: r.state})
	if err != nil {
		t.Fatal(err)
	}
	err = src.Run(context.Background(), func(context.Context, source.Batch) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "another trailwatch holds it") {
		t.Errorf("a second Run = %v, want it refused", err)
	}
}

// TestFilesConfig checks the block's defaults and every problem at once.
func TestFilesConfig(t *testing.T) {
	c := files.Config{Paths: []string{"a"}}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if c.PollInterval != files.DefaultPollInterval || c.BatchRecords != files.DefaultBatchRecords || c.Start != files.DefaultStart {
		t.Errorf("defaults = %+v", c)
	}
	bad := files.Config{Paths: []string{"", "-", "s3://b/k", "a", "a/"}, PollInterval: time.Millisecond, BatchRecords: -1, Start: "yesterday"}
	err := bad.Validate()
	for _, want := range []string{
		"paths[0]: empty path", "paths[1]: standard input", "paths[2]: s3://b/k is not a local path", "paths[4]: a/ is given twice",
		"poll_interval: 1ms", "batch_records: -1", `start: "yesterday"`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want it to contain %q", err, want)
		}
	}
	if err := (&files.Config{}).Validate(); err == nil || !strings.Contains(err.Error(), "paths: at least one") {
		t.Errorf("Validate of no paths = %v", err)
	}
}

// TestFilesSourceCheck checks that Check names each path it cannot read.
func TestFilesSourceCheck(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	cfg := files.Config{Paths: []string{dir, missing}}
	cfg.SetDefaults()
	src, err := files.NewSource(cfg, files.SourceOptions{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	err = src.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), missing) || strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("Check = %v, want the missing path alone", err)
	}
}
