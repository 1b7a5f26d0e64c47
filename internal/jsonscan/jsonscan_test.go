package jsonscan

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// valid reports whether data is one JSON value by the scanner.
func valid(data []byte) bool {
	s := Scanner{Data: data}
	return s.valid()
}

// valid reports whether s.Data is one JSON value by s.
func (s *Scanner) valid() bool {
	s.WS()
	if s.Skip() != nil {
		return false
	}
	s.WS()
	return s.I == len(s.Data)
}

// TestSkipAgreesWithValid checks the scanner against json.Valid.
func TestSkipAgreesWithValid(t *testing.T) {
	for _, in := range []string{
		``, ` `, `{}`, `[]`, `{"a":1}`, `{"a":}`, `[1,]`, `"\u00e9\n"`, `"\x"`, "\"\x01\"", `-0.5e+3`, `01`, `1.`,
		`-`, `{"a" 1}`, `{"a":"b"}`, `{"a":"b\"}`, "{\"a\":\"b\x7f\u00e9\"}", "[\"\xff\\u12\"]", `[1,{"a":[]},[[{}]],"x",-0.0e-0]`, `tru`, `nulls`, `"\ud800"`, strings.Repeat("[", 9999) + strings.Repeat("]", 9999),
		strings.Repeat("[", 10000) + strings.Repeat("]", 10000), strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000),
		strings.Repeat(`{"a":[`, 5000) + "1" + strings.Repeat("]}", 5000), strings.Repeat(`{"a":[`, 5001) + strings.Repeat("]}", 5001),
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001), "\"\xff\"", ` {"a" : [ true , false , null ] } `,
	} {
		want := json.Valid([]byte(in))
		if got := valid([]byte(in)); got != want {
			t.Errorf("valid(%.40q) = %v, json.Valid says %v", in, got, want)
		}
		withEachClassify(t, func(t *testing.T) {
			if got := markedValid([]byte(in)); got != want {
				t.Errorf("marked valid(%.40q) = %v, json.Valid says %v", in, got, want)
			}
		})
	}
}

// FuzzSkip checks the scanner against json.Valid on arbitrary input, and
// that Spaced is set exactly when compacting would change valid input.
func FuzzSkip(f *testing.F) {
	f.Add([]byte(`{"a":[1,2.5e3,{"b":null}],"c":"\u00e9"}`))
	f.Add([]byte(" [ \"x\" ,\n1 ] "))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := Scanner{Data: data}
		s.WS()
		ok := s.Skip() == nil
		s.WS()
		ok = ok && s.I == len(data)
		want := json.Valid(data)
		if ok != want {
			t.Fatalf("scanner says valid=%v, json.Valid says %v for %q", ok, want, data)
		}
		// With marks, made by each classify this machine has.
		for _, name := range Classifiers() {
			prev := UseClassifier(name)
			got := markedValid(data)
			UseClassifier(prev)
			if got != want {
				t.Fatalf("marked scanner (classify %s) says valid=%v, json.Valid says %v for %q", name, got, want, data)
			}
		}
		if ok {
			var cb bytes.Buffer
			if err := json.Compact(&cb, data); err != nil {
				t.Fatal(err)
			}
			if changed := cb.String() != string(data); changed != s.Spaced {
				t.Fatalf("Spaced = %v, but compacting changes the input: %v (%q)", s.Spaced, changed, data)
			}
		}
	})
}
