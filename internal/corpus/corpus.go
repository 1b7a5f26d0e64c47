// Package corpus finds and reads the real CloudTrail corpus that tests and
// benchmarks use: ../shared/corpus/*.jsonl beside the repository's root, or
// the directory $TRAILWATCH_CORPUS names (never copied into the
// repository). Whoever needs it calls Files or
// ForEachRecord, which skip the test with a clear message when it is absent.
package corpus

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Dir returns the corpus directory: $TRAILWATCH_CORPUS when set, else
// shared/corpus beside the nearest directory above the working directory
// that holds a go.mod and has one (the repository's root, or a nested
// module's), else "".
func Dir() string {
	if d := os.Getenv("TRAILWATCH_CORPUS"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			c := filepath.Join(filepath.Dir(dir), "shared", "corpus")
			if _, err := os.Stat(c); err == nil {
				return c
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Files returns the corpus's JSON Lines files, skipping tb with a clear
// message when the corpus is not beside the repository.
func Files(tb testing.TB) []string {
	tb.Helper()
	var files []string
	if d := Dir(); d != "" {
		files, _ = filepath.Glob(filepath.Join(d, "*.jsonl"))
	}
	if len(files) == 0 {
		tb.Skip("the CloudTrail corpus is absent: this test reads real CloudTrail records from the folder $TRAILWATCH_CORPUS names, else ../shared/corpus beside the repository (README, \"First two commands\")")
	}
	return files
}

// ForEachRecord calls fn with every corpus record (one line) and its place,
// "file.jsonl:line". The line's bytes are valid only during the call.
func ForEachRecord(tb testing.TB, fn func(place string, line []byte)) {
	tb.Helper()
	for _, f := range Files(tb) {
		if err := forEachLine(f, fn); err != nil {
			tb.Fatal(err)
		}
	}
}

// Records returns a copy of every corpus record, in file order, skipping
// tb when the corpus is absent.
func Records(tb testing.TB) [][]byte {
	tb.Helper()
	var out [][]byte
	ForEachRecord(tb, func(_ string, line []byte) {
		out = append(out, append([]byte(nil), line...))
	})
	return out
}

// Read returns a copy of every record of the *.jsonl files in dir, in file
// order, for programs (tests use Records).
func Read(dir string) ([][]byte, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err == nil && len(files) == 0 {
		err = fmt.Errorf("no *.jsonl file in %s", dir)
	}
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, f := range files {
		if err := forEachLine(f, func(_ string, line []byte) {
			out = append(out, append([]byte(nil), line...))
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func forEachLine(path string, fn func(place string, line []byte)) error {
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		fn(filepath.Base(path)+":"+strconv.Itoa(n), sc.Bytes())
	}
	return sc.Err()
}

// Copies writes copies passes over records to w, one record a line, every
// record's eventID prefixed with its pass ("c7-...") so that no two records
// share one (a replay would drop repeats). This is the "corpus ×30" input
// of docs/performance.md's end-to-end figures.
func Copies(w io.Writer, records [][]byte, copies int) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	for c := 1; c <= copies; c++ {
		prefix := []byte(`"eventID":"c` + strconv.Itoa(c) + `-`)
		for _, r := range records {
			if err := writeLine(bw, r, prefix); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

// Mix writes n records to w, a production-like mix: one record in every
// alertEvery is taken, in turn, from the records that raise an alert
// (alerts reports which), the others, in turn, from those that do not.
// Each record's eventID is made unique ("m123-..."), as in Copies.
func Mix(w io.Writer, records [][]byte, alerts func([]byte) bool, n, alertEvery int) error {
	var hot, cold [][]byte
	for _, r := range records {
		if alerts(r) {
			hot = append(hot, r)
		} else {
			cold = append(cold, r)
		}
	}
	if len(hot) == 0 || len(cold) == 0 {
		return fmt.Errorf("corpus mix: %d alerting and %d quiet records; need some of each", len(hot), len(cold))
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	h, c := 0, 0
	for i := 0; i < n; i++ {
		var r []byte
		if alertEvery > 0 && i%alertEvery == alertEvery-1 {
			r, h = hot[h%len(hot)], h+1
		} else {
			r, c = cold[c%len(cold)], c+1
		}
		if err := writeLine(bw, r, []byte(`"eventID":"m`+strconv.Itoa(i)+`-`)); err != nil {
			return err
		}
	}
	return bw.Flush()
}

var eventIDKey = []byte(`"eventID":"`)

// writeLine writes r with its first `"eventID":"` replaced by prefix, and
// a newline.
func writeLine(w *bufio.Writer, r, prefix []byte) error {
	if i := bytes.Index(r, eventIDKey); i >= 0 {
		w.Write(r[:i])
		w.Write(prefix)
		w.Write(r[i+len(eventIDKey):])
	} else {
		w.Write(r)
	}
	return w.WriteByte('\n')
}
