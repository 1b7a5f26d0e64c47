package pattern

import (
	"errors"
	"testing"
)

// FuzzParse checks that Parse never panics, that its errors are positioned
// inside the source, and that the canonical text round-trips and means the
// same thing on a sample record.
func FuzzParse(f *testing.F) {
	for _, c := range cisPatterns {
		f.Add(c.pattern)
	}
	for _, s := range []string{
		`{ $.arrayKey[*] = %val.{2}% }`,
		`{ $.* = %111\.111\.111\.1[0-9]{1,2}% }`,
		`{ $.['cluster.name'] = "c" }`,
		`{ $.latency >= 500 && $.numbers[0] < 10e-3 }`,
		`{ $.a IS NULL || $.b NOT EXISTS || $.c IS TRUE }`,
		`{ $.a = "x\"y\\" }`,
		`{ ($.a = x }`,
		`{ $.a == b }`,
		`{ $.a = } x`,
		"{\n$.a = \"é\" }",
	} {
		f.Add(s)
	}
	sample := decode(f, docRecord, true)
	f.Fuzz(func(t *testing.T, src string) {
		p, err := Parse(src)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) error %T, want *SyntaxError", src, err)
			}
			if se.Offset < 0 || se.Offset > len(src) || se.Line < 1 || se.Col < 1 {
				t.Fatalf("Parse(%q) error position %+v out of range", src, se)
			}
			return
		}
		s1 := p.String()
		q, err := Parse(s1)
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q does not parse: %v", src, s1, err)
		}
		if s2 := q.String(); s2 != s1 {
			t.Fatalf("round trip of %q: %q then %q", src, s1, s2)
		}
		if p.Match(sample) != plainEval(p.root, sample) {
			t.Fatalf("%q: optimised and plain evaluation disagree on the sample record", src)
		}
		if p.Match(sample) != q.Match(sample) {
			t.Fatalf("%q and its canonical form %q disagree on the sample record", src, s1)
		}
		_ = p.Fields()
		_ = p.EqualityConstraints()
	})
}
