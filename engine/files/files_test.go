package files

import (
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
