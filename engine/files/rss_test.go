package files_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// maxBombRSS is the README's promise: replay and search stay under 100 MB
// of resident memory on any input.
const maxBombRSS = 100 * 1000 * 1000

// buildTrailwatch builds the real binary (without the race detector, whose
// shadow memory would swamp the figure being measured) and the maxrss
// helper (engine/files/testdata/maxrss) into dir.
func buildTrailwatch(t *testing.T, dir string) (bin, maxrss string) {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("this test builds trailwatch with the go command, which is not on PATH: %v", err)
	}
	bin, maxrss = filepath.Join(dir, "trailwatch"), filepath.Join(dir, "maxrss")
	for out, pkg := range map[string]string{bin: "./cmd/trailwatch", maxrss: "./engine/files/testdata/maxrss"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	return bin, maxrss
}

// writeGzip writes a gzipped file with what write writes, streaming, so
// that the test itself never holds the inflated content.
func writeGzip(t *testing.T, path string, write func(w *bufio.Writer)) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	w := bufio.NewWriter(zw)
	write(w)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// repeat writes n bytes of c.
func repeat(w *bufio.Writer, c byte, n int) {
	chunk := bytes.Repeat([]byte{c}, 64<<10)
	for left := n; left > 0; left -= len(chunk) {
		w.Write(chunk[:min(left, len(chunk))])
	}
}

// TestBombsBoundedRSS runs the real binary's replay and search over gzip
// bombs — one record, one member before "Records", one JSON Lines line and
// a nest of brackets, each inflating to 200 MiB from about 200 KB — and
// checks that each process's peak resident memory (getrusage's ru_maxrss,
// through engine/files/testdata/maxrss) stays under 100 MB, that the bomb is reported,
// and that the good records around it are still found.
func TestBombsBoundedRSS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and inflates gzip bombs; skipped with -short")
	}
	dir := t.TempDir()
	bin, maxrss := buildTrailwatch(t, dir)
	root := `{"eventVersion":"1.08","eventID":"%s","eventTime":"2024-05-01T08:00:00Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.9","userIdentity":{"type":"Root","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333"},"responseElements":{"ConsoleLogin":"Success"},"recipientAccountId":"111122223333"}`
	before, after := fmt.Sprintf(root, "before"), fmt.Sprintf(root, "after")
	const n = 200 << 20
	bombs := []struct {
		name, prefix string
		fill         byte
		suffix       string
	}{
		{"record.json.gz", `{"Records":[` + before + `,{"eventVersion":"1.08","eventID":"x","requestParameters":{"p":"`, 'a', `"}},` + after + `]}`},
		{"member.json.gz", `{"Padding":"`, 'a', `","Records":[` + before + `,` + after + `]}`},
		{"line.jsonl.gz", before + "\n{\"eventID\":\"x\",\"p\":\"", 'a', "\"}\n" + after + "\n"},
		{"nest.json.gz", `{"Records":[` + before + `,` + after + `,{"x":`, '[', `}]}`},
	}
	names := []string{}
	for _, b := range bombs {
		writeGzip(t, filepath.Join(dir, b.name), func(w *bufio.Writer) {
			w.WriteString(b.prefix)
			repeat(w, b.fill, n)
			w.WriteString(b.suffix)
		})
		names = append(names, b.name)
	}
	run := func(t *testing.T, args ...string) (out, errOut string, rss int64) {
		t.Helper()
		report := filepath.Join(t.TempDir(), "rss")
		cmd := exec.Command(maxrss, append([]string{report, bin}, args...)...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%.2000s", strings.Join(args, " "), err, e.String())
		}
		b, err := os.ReadFile(report)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Sscan(string(b), &rss); err != nil {
			t.Fatal(err)
		}
		return o.String(), e.String(), rss
	}
	for _, name := range names {
		path := filepath.Join(dir, name)
		t.Run("replay "+name, func(t *testing.T) {
			out, errOut, rss := run(t, "replay", "--rules", "builtin:aws", "--output", "json", path)
			t.Logf("replay %s: peak RSS %.1f MB", name, float64(rss)/1e6)
			if rss >= maxBombRSS {
				t.Errorf("replay %s: peak RSS %d bytes, want under %d", name, rss, maxBombRSS)
			}
			for _, w := range []string{`"event_id":"before"`, `"event_id":"after"`} {
				if !strings.Contains(out, w) {
					t.Errorf("replay %s: no alert with %s; stderr:\n%.2000s", name, w, errOut)
				}
			}
			if !strings.Contains(errOut, "skipped") {
				t.Errorf("replay %s: the bomb was not reported; stderr:\n%.2000s", name, errOut)
			}
		})
		t.Run("search "+name, func(t *testing.T) {
			out, errOut, rss := run(t, "search", "--event-name", "ConsoleLogin", "--output", "jsonl", "--limit", "0", path)
			t.Logf("search %s: peak RSS %.1f MB", name, float64(rss)/1e6)
			if rss >= maxBombRSS {
				t.Errorf("search %s: peak RSS %d bytes, want under %d", name, rss, maxBombRSS)
			}
			for _, w := range []string{`"eventID":"before"`, `"eventID":"after"`} {
				if !strings.Contains(out, w) {
					t.Errorf("search %s: no record with %s; stderr:\n%.2000s", name, w, errOut)
				}
			}
		})
	}
}
