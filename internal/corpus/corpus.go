// Package corpus finds and reads the real CloudTrail corpus that tests and
// benchmarks use: ../shared/corpus/*.jsonl beside the repository's root
// (never copied into the repository). Whoever needs it calls Files or
// ForEachRecord, which skip the test with a clear message when it is absent.
package corpus

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Dir returns the corpus directory, ../shared/corpus beside the module's
// root (found by walking up from the working directory to go.mod), or ""
// when there is no go.mod above the working directory.
func Dir() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(filepath.Dir(dir), "shared", "corpus")
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
		tb.Skip("../shared/corpus is absent: this test reads the real CloudTrail corpus beside the repository")
	}
	return files
}

// ForEachRecord calls fn with every corpus record (one line) and its place,
// "file.jsonl:line". The line's bytes are valid only during the call.
func ForEachRecord(tb testing.TB, fn func(place string, line []byte)) {
	tb.Helper()
	for _, f := range Files(tb) {
		fh, err := os.Open(f)
		if err != nil {
			tb.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		n := 0
		for sc.Scan() {
			n++
			fn(filepath.Base(f)+":"+strconv.Itoa(n), sc.Bytes())
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			tb.Fatal(err)
		}
	}
}

// Records returns a copy of every corpus record, in file order.
func Records(tb testing.TB) [][]byte {
	tb.Helper()
	var out [][]byte
	ForEachRecord(tb, func(_ string, line []byte) {
		out = append(out, append([]byte(nil), line...))
	})
	return out
}
