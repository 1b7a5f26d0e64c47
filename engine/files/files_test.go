package files

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func collect(t *testing.T, paths []string, opts Options) (records []string, places []string, bad []string) {
	t.Helper()
	err := Walk(context.Background(), paths, opts, func(r Record) error {
		records = append(records, string(r.Data))
		places = append(places, r.Place())
		return nil
	}, func(b *BadInput) { bad = append(bad, b.Error()) })
	if err != nil {
		t.Fatalf("Walk: %v", err)
	}
	return
}

func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func gz(t *testing.T, s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

func TestWalkFormats(t *testing.T) {
	dir := t.TempDir()
	s3 := `{"Records":[{"eventID":"a"},{"eventID":"b"}]}`
	tests := []struct {
		name        string
		file        string
		data        []byte
		wantRecords []string
		wantPlaces  []string
		wantBad     int
	}{
		{"json lines", "a.jsonl", []byte("{\"eventID\":\"1\"}\n\n{\"eventID\":\"2\"}\r\n{\"eventID\":\"3\"}"),
			[]string{`{"eventID":"1"}`, `{"eventID":"2"}`, `{"eventID":"3"}`}, []string{"a.jsonl:1", "a.jsonl:3", "a.jsonl:4"}, 0},
		{"s3 log file", "b.json", []byte(s3), []string{`{"eventID":"a"}`, `{"eventID":"b"}`}, []string{"b.json: record 1", "b.json: record 2"}, 0},
		{"gzipped s3 log file", "c.json.gz", gz(t, s3), []string{`{"eventID":"a"}`, `{"eventID":"b"}`}, nil, 0},
		{"gzipped json lines", "d.jsonl.gz", gz(t, "{\"eventID\":\"x\"}\n"), []string{`{"eventID":"x"}`}, nil, 0},
		{"pretty s3 file with other keys first", "e.json", []byte("{\n  \"Records\" : [\n {\"eventID\": \"p\"}\n ]\n}"), []string{`{"eventID": "p"}`}, nil, 0},
		{"array", "f.json", []byte(`[{"eventID":"q"}]`), []string{`{"eventID":"q"}`}, nil, 0},
		{"truncated s3 file", "g.json", []byte(`{"Records":[{"eventID":"a"},{"eventID":`), []string{`{"eventID":"a"}`}, nil, 1},
		{"corrupt gzip", "h.json.gz", []byte{0x1f, 0x8b, 0, 1, 2}, nil, nil, 1},
		{"garbage lines pass through to the decoder", "i.jsonl", []byte("hello\n{\"eventID\":\"1\"}\n"), []string{"hello", `{"eventID":"1"}`}, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.file)
			writeFile(t, p, tt.data)
			recs, places, bad := collect(t, []string{p}, Options{})
			if strings.Join(recs, "|") != strings.Join(tt.wantRecords, "|") {
				t.Errorf("records = %q, want %q", recs, tt.wantRecords)
			}
			if tt.wantPlaces != nil {
				for i := range places {
					places[i] = strings.TrimPrefix(places[i], dir+"/")
				}
				if strings.Join(places, "|") != strings.Join(tt.wantPlaces, "|") {
					t.Errorf("places = %q, want %q", places, tt.wantPlaces)
				}
			}
			if len(bad) != tt.wantBad {
				t.Errorf("bad inputs = %q, want %d", bad, tt.wantBad)
			}
		})
	}
}

func TestWalkLongLine(t *testing.T) {
	dir := t.TempDir()
	big := `{"eventID":"big","x":"` + strings.Repeat("a", 600*1024) + `"}`
	huge := `{"x":"` + strings.Repeat("b", MaxRecordSize+10) + `"}`
	p := filepath.Join(dir, "l.jsonl")
	writeFile(t, p, []byte(big+"\n"+huge+"\n{\"eventID\":\"after\"}\n"))
	recs, places, bad := collect(t, []string{p}, Options{})
	if len(recs) != 2 || recs[0] != big || recs[1] != `{"eventID":"after"}` {
		t.Fatalf("got %d records (%v), want the 600 KB one and the one after the oversized line", len(recs), places)
	}
	if len(bad) != 1 || !strings.Contains(bad[0], "l.jsonl:2") {
		t.Errorf("bad = %q, want line 2 reported", bad)
	}
}

func TestWalkDirectoryOrderAndPruning(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "AWSLogs", "111122223333", "CloudTrail", "us-east-1", "2024", "05")
	writeFile(t, filepath.Join(base, "02", "b_20240502T0000Z.json.gz"), gz(t, `{"Records":[{"eventID":"day2"}]}`))
	writeFile(t, filepath.Join(base, "01", "a_20240501T0000Z.json.gz"), gz(t, `{"Records":[{"eventID":"day1"}]}`))
	writeFile(t, filepath.Join(base, "01", "notes.txt"), []byte("ignored"))
	writeFile(t, filepath.Join(base, "01", ".hidden.json"), []byte(`{"eventID":"hidden"}`))
	recs, _, _ := collect(t, []string{dir}, Options{})
	if strings.Join(recs, ",") != `{"eventID":"day1"},{"eventID":"day2"}` {
		t.Errorf("records = %v, want day1 then day2", recs)
	}
	recs, _, _ = collect(t, []string{dir}, Options{SkipDir: func(p string) bool { return strings.HasSuffix(p, "/01") }})
	if strings.Join(recs, ",") != `{"eventID":"day2"}` {
		t.Errorf("with day 01 pruned: records = %v", recs)
	}
}

func TestWalkStdinAndMissing(t *testing.T) {
	recs, _, _ := collect(t, []string{"-"}, Options{Stdin: strings.NewReader("{\"eventID\":\"s\"}\n")})
	if len(recs) != 1 {
		t.Errorf("stdin records = %v", recs)
	}
	err := Walk(context.Background(), []string{"/no/such/file"}, Options{}, func(Record) error { return nil }, nil)
	if err == nil {
		t.Error("a missing path must be an error")
	}
}

// gzCorruptCRC gzips s and spoils the checksum in the trailer.
func gzCorruptCRC(t *testing.T, s string) []byte {
	b := gz(t, s)
	b[len(b)-8] ^= 0xff
	return b
}

func TestWalkDamagedDocuments(t *testing.T) {
	dir := t.TempDir()
	long := `{"eventID":"long","x":"` + strings.Repeat("a", MaxRecordSize) + `"}`
	tests := []struct {
		name        string
		data        []byte
		wantRecords []string
		wantBad     []string // substrings, in order
	}{
		{"oversized record in a log file is skipped with its place",
			[]byte(`{"Records":[{"eventID":"a"},` + long + `,{"eventID":"b"}]}`),
			[]string{`{"eventID":"a"}`, `{"eventID":"b"}`}, []string{"record 2: record longer than"}},
		{"other members before Records",
			[]byte(`{"Other":{"Records":"not this one","n":[1,2,{"x":"]"}]},"Records":[{"eventID":"a"}],"More":null}`),
			[]string{`{"eventID":"a"}`}, nil},
		{"truncated after a complete record",
			[]byte(`{"Records":[{"eventID":"a"},{"eventID":"b"}`),
			[]string{`{"eventID":"a"}`, `{"eventID":"b"}`}, []string{"record 3: the log file ends after record 2 without closing"}},
		{"truncated after a comma",
			[]byte(`{"Records":[{"eventID":"a"},`),
			[]string{`{"eventID":"a"}`}, []string{"record 2: the log file ends after record 1"}},
		{"object not closed after the list",
			[]byte(`{"Records":[{"eventID":"a"}]`),
			[]string{`{"eventID":"a"}`}, []string{"record 2: malformed log file"}},
		{"garbage after the document",
			[]byte(`{"Records":[{"eventID":"a"}]} {"eventID":"sneaky"}`),
			[]string{`{"eventID":"a"}`}, []string{"after the end of the log file"}},
		{"bad gzip checksum", gzCorruptCRC(t, `{"Records":[{"eventID":"a"}]}`),
			[]string{`{"eventID":"a"}`}, []string{"gzip: "}},
		{"bad gzip checksum in JSON Lines", gzCorruptCRC(t, "{\"eventID\":\"a\"}\n"),
			[]string{`{"eventID":"a"}`}, []string{"gzip: "}},
		{"gzip cut short", gz(t, `{"Records":[{"eventID":"a"}]}`)[:20],
			nil, []string{"gzip: "}},
		{"Records that is not a list", []byte(`{"Records":{"eventID":"a"}}`),
			nil, []string{`"Records" is not a list`}},
		{"pretty-printed single record", []byte("{\n  \"eventID\": \"p\"\n}\n{\"eventID\":\"q\"}\n"),
			[]string{"{\n  \"eventID\": \"p\"\n}", `{"eventID":"q"}`}, nil},
		{"oversized first line of JSON Lines", []byte(long + "\n{\"eventID\":\"next\"}\n"),
			[]string{`{"eventID":"next"}`}, []string{":1: line longer than"}},
		{"list with strings holding brackets", []byte(`[{"eventID":"a","m":"}]{["},{"eventID":"b\"]"}]`),
			[]string{`{"eventID":"a","m":"}]{["}`, `{"eventID":"b\"]"}`}, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, fmt.Sprintf("f%d.json", i))
			writeFile(t, p, tt.data)
			recs, _, bad := collect(t, []string{p}, Options{})
			if strings.Join(recs, "|") != strings.Join(tt.wantRecords, "|") {
				t.Errorf("records = %.200q, want %q", recs, tt.wantRecords)
			}
			if len(bad) != len(tt.wantBad) {
				t.Fatalf("bad inputs = %q, want %d like %q", bad, len(tt.wantBad), tt.wantBad)
			}
			for j, w := range tt.wantBad {
				if !strings.Contains(bad[j], w) {
					t.Errorf("bad input %d = %q, want it to say %q", j, bad[j], w)
				}
			}
		})
	}
}

func TestWalkJSONLinesNumbersAfterPrettyRecord(t *testing.T) {
	p := filepath.Join(t.TempDir(), "p.jsonl")
	writeFile(t, p, []byte("{\n\"eventID\":\"p\"\n}\n{\"eventID\":\"q\"}\n"))
	_, places, _ := collect(t, []string{p}, Options{})
	if len(places) != 2 || !strings.HasSuffix(places[0], "p.jsonl:1") || !strings.HasSuffix(places[1], "p.jsonl:4") {
		t.Errorf("places = %q, want lines 1 and 4", places)
	}
}

// bombReader yields prefix, then n bytes of fill, then suffix, without ever
// holding the fill.
type bombReader struct {
	prefix, suffix string
	fill           byte
	n              int64
	off            int64
	chunk          []byte
}

func (b *bombReader) Read(p []byte) (int, error) {
	pre, fill := int64(len(b.prefix)), int64(len(b.prefix))+b.n
	total := fill + int64(len(b.suffix))
	if b.off >= total {
		return 0, io.EOF
	}
	var n int
	switch {
	case b.off < pre:
		n = copy(p, b.prefix[b.off:])
	case b.off < fill:
		n = int(min(int64(len(p)), fill-b.off))
		if b.chunk == nil {
			b.chunk = bytes.Repeat([]byte{b.fill}, 64<<10)
		}
		n = min(n, len(b.chunk))
		copy(p, b.chunk[:n])
	default:
		n = copy(p, b.suffix[b.off-fill:])
	}
	b.off += int64(n)
	return n, nil
}

// TestWalkBombsStayBounded reads inputs that inflate in one
// place (24 MiB) each — one record, one string, a member before "Records", a nest
// of brackets, a JSON Lines line — and checks that the records around them
// are read and that the walk allocates a small fraction of the input.
func TestWalkBombsStayBounded(t *testing.T) {
	const n = 24 << 20
	tests := []struct {
		name        string
		r           *bombReader
		wantRecords int
	}{
		{"huge string in a record", &bombReader{prefix: `{"Records":[{"eventID":"a"},{"x":"`, fill: 'a', n: n, suffix: `"},{"eventID":"b"}]}`}, 2},
		{"huge member before Records", &bombReader{prefix: `{"Other":"`, fill: 'a', n: n, suffix: `","Records":[{"eventID":"b"}]}`}, 1},
		{"deep nest in a record", &bombReader{prefix: `{"Records":[{"eventID":"a"},{"x":`, fill: '[', n: n, suffix: `}]}`}, 1},
		{"white space between records", &bombReader{prefix: `{"Records":[{"eventID":"a"},`, fill: ' ', n: n, suffix: `{"eventID":"b"}]}`}, 2},
		{"huge JSON Lines line", &bombReader{prefix: "{\"eventID\":\"a\"}\n{\"x\":\"", fill: 'a', n: n, suffix: "\"}\n{\"eventID\":\"b\"}\n"}, 2},
		{"huge list", &bombReader{prefix: `[{"eventID":"a"},"`, fill: 'a', n: n, suffix: `",{"eventID":"b"}]`}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			got := 0
			err := Walk(context.Background(), []string{"-"}, Options{Stdin: tt.r}, func(r Record) error {
				if len(r.Data) > MaxRecordSize {
					t.Errorf("record of %d bytes handed over", len(r.Data))
				}
				got++
				return nil
			}, func(*BadInput) {})
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.wantRecords {
				t.Errorf("records = %d, want %d", got, tt.wantRecords)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
				t.Errorf("reading %d MiB allocated %d MiB; want under 8 MiB whatever the input", n>>20, alloc>>20)
			}
		})
	}
}

func TestWalkSkipsWhatCannotBeRead(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.json"), []byte(`{"Records":[{"eventID":"a"}]}`))
	writeFile(t, filepath.Join(dir, "z.json"), []byte(`{"Records":[{"eventID":"z"}]}`))
	if err := os.Symlink(filepath.Join(dir, "gone.json"), filepath.Join(dir, "b-dangling.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "c-loop.json"), filepath.Join(dir, "c-loop.json")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "d-fifo.json"), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var recs, bad []string
	go func() {
		defer close(done)
		recs, _, bad = collect(t, []string{dir}, Options{})
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the walk blocked (on the FIFO?)")
	}
	if strings.Join(recs, ",") != `{"eventID":"a"},{"eventID":"z"}` {
		t.Errorf("records = %q, want a and z", recs)
	}
	want := []string{"b-dangling.json", "c-loop.json", "d-fifo.json: not a regular file"}
	if len(bad) != len(want) {
		t.Fatalf("bad = %q, want %d reports", bad, len(want))
	}
	for i, w := range want {
		if !strings.Contains(bad[i], w) {
			t.Errorf("bad[%d] = %q, want it to name %q", i, bad[i], w)
		}
	}
}

func TestWalkNamedFIFOHonoursContext(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fifo.json")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- Walk(ctx, []string{p}, Options{}, func(Record) error { return nil }, nil)
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Walk = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Walk on a FIFO nobody writes ignored its context")
	}
}

// TestWalkJSONLinesAcrossBufferBoundaries reads JSON Lines whose lines
// end at every offset around the read buffer's edges, from a file and from
// a reader that returns odd short reads: a line inside the buffer is
// handed over from there, one that spans reads is joined first; both must
// give every record, whole, with its line number. The file is long enough
// for the buffer to grow (bigBufSize) and be crossed a few times after.
func TestWalkJSONLinesAcrossBufferBoundaries(t *testing.T) {
	var in strings.Builder
	var want []string
	for i := 0; in.Len() < bigFills*bufSize+3*bigBufSize; i++ {
		// Lengths 2 to ~1.2 KB, with blank and CRLF lines between.
		rec := fmt.Sprintf(`{"eventID":"e%d","x":"%s"}`, i, strings.Repeat("y", (i*37)%1200))
		want = append(want, rec)
		in.WriteString(rec)
		switch i % 5 {
		case 1:
			in.WriteString("\r\n")
		case 2:
			in.WriteString("\n\n")
		default:
			in.WriteString("\n")
		}
	}
	data := in.String()
	check := func(name string, recs, places []string, bad []string) {
		t.Helper()
		if len(bad) > 0 {
			t.Fatalf("%s: bad inputs %q", name, bad)
		}
		if len(recs) != len(want) {
			t.Fatalf("%s: %d records, want %d", name, len(recs), len(want))
		}
		line := 1
		for i := range want {
			if recs[i] != want[i] {
				t.Fatalf("%s: record %d = %.80q, want %.80q", name, i, recs[i], want[i])
			}
			if !strings.HasSuffix(places[i], fmt.Sprintf(":%d", line)) {
				t.Fatalf("%s: record %d at %s, want line %d", name, i, places[i], line)
			}
			line++
			if i%5 == 2 {
				line++ // the blank line
			}
		}
	}
	p := filepath.Join(t.TempDir(), "b.jsonl")
	writeFile(t, p, []byte(data))
	recs, places, bad := collect(t, []string{p}, Options{})
	check("file", recs, places, bad)
	recs, places, bad = collect(t, []string{"-"}, Options{Stdin: &oddReader{r: strings.NewReader(data)}})
	check("short reads", recs, places, bad)
	// The same records as a log file ({"Records":[...]}), read through
	// the growing buffer too.
	doc := `{"Records":[` + strings.Join(want, ",\n") + "]}"
	p = filepath.Join(t.TempDir(), "b.json")
	writeFile(t, p, []byte(doc))
	recs, _, bad = collect(t, []string{p}, Options{})
	if len(bad) > 0 || !slices.Equal(recs, want) {
		t.Fatalf("log file: %d records (bad %q), want %d the same", len(recs), bad, len(want))
	}
}

// oddReader returns reads of 1 to 9,999 bytes, never a whole buffer.
type oddReader struct {
	r io.Reader
	n int
}

func (o *oddReader) Read(p []byte) (int, error) {
	o.n = (o.n*7919 + 13) % 9999
	if len(p) > o.n+1 {
		p = p[:o.n+1]
	}
	return o.r.Read(p)
}
