package files

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
)

// FuzzReadStream feeds arbitrary input to the reader: it must not panic,
// must hand over no record larger than MaxRecordSize, and on a well-formed
// log file must give exactly the records encoding/json finds in it.
func FuzzReadStream(f *testing.F) {
	for _, s := range []string{
		`{"Records":[{"eventID":"a"},{"eventID":"b"}]}`,
		`{"Other":[1,{"x":"]"}],"Records":[{"eventID":"a"}],"Tail":"}"}`,
		`[{"eventID":"q"}, 1, "s", null, [2]]`,
		"{\"eventID\":\"1\"}\n\n{\"eventID\":\"2\"}\r\n",
		"{\n \"eventID\": \"p\"\n}\n{\"eventID\":\"q\"}",
		`{"Records":[{"eventID":"a"},`,
		`{"Records":{}}`,
		"\xef\xbb\xbf{\"Records\":[]}",
		`{"a":"\"}","Records":["\\"]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got []string
		err := Walk(context.Background(), []string{"-"}, Options{Stdin: bytes.NewReader(data)}, func(r Record) error {
			if len(r.Data) == 0 || len(r.Data) > MaxRecordSize {
				t.Fatalf("record of %d bytes", len(r.Data))
			}
			got = append(got, string(r.Data))
			return nil
		}, func(*BadInput) {})
		if err != nil {
			t.Fatalf("Walk: %v", err)
		}
		// Differential check on plain log files: one "Records" member and
		// no escapes (the scanner compares member names byte for byte).
		if !json.Valid(data) || bytes.Count(data, []byte(`"Records"`)) != 1 || bytes.ContainsRune(data, '\\') {
			return
		}
		var doc map[string]json.RawMessage
		if json.Unmarshal(data, &doc) != nil {
			return
		}
		var want []json.RawMessage
		if json.Unmarshal(doc["Records"], &want) != nil {
			return
		}
		if len(got) != len(want) {
			t.Fatalf("got %d records %q, want %d", len(got), got, len(want))
		}
		for i := range want {
			if got[i] != string(want[i]) {
				t.Fatalf("record %d = %q, want %q", i+1, got[i], want[i])
			}
		}
	})
}
