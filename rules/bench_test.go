package rules

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/trailwatch/trailwatch/internal/corpus"
	"github.com/trailwatch/trailwatch/internal/cputime"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// corpusNames returns the distinct eventNames of the corpus, most
// frequent first (ties by name), with the corpus's records.
func corpusNames(b testing.TB) ([]string, [][]byte) {
	count := map[string]int{}
	var recs [][]byte
	corpus.ForEachRecord(b, func(_ string, line []byte) {
		recs = append(recs, append([]byte(nil), line...))
		var ev cloudtrail.Event
		if _, err := cloudtrail.DecodeHeader(&ev, line); err == nil {
			count[ev.EventName]++
		}
	})
	names := make([]string, 0, len(count))
	for n := range count {
		if n != "" {
			names = append(names, n)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		if count[names[i]] != count[names[j]] {
			return count[names[i]] > count[names[j]]
		}
		return names[i] < names[j]
	})
	return names, recs
}

// generatedRules writes a rule file of n rules shaped like a real
// detection set. 97% are filed under eventName: each under a name drawn
// from a universe of 1,500 API calls, of which the corpus's own names are
// part (a large set watches many calls a given trail rarely makes); 3% are
// not indexed and run on every record (error codes, user agents). With
// wholeDecode, half of the indexed rules read the request
// (requestParameters), so a record they name needs that field decoded
// (see cloudtrail.Event.Need); else every condition is decided from the
// header. Almost none match, so the
// benchmark measures the cost of the rules, not of alerts.
func generatedRules(n int, names []string, wholeDecode bool) string {
	const universe = 1500
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range n {
		k := (i*7919 + 13) % universe
		name := fmt.Sprintf("SyntheticCall%04d", k)
		if k < len(names) {
			name = names[k]
		}
		var when string
		switch {
		case i%100 < 3:
			if i%2 == 0 {
				when = fmt.Sprintf(`errorCode == "SyntheticError%d"`, i)
			} else {
				when = fmt.Sprintf(`userAgent startsWith "synthetic-tool-%d/"`, i)
			}
		case i%2 == 0 || !wholeDecode:
			when = fmt.Sprintf(`eventName == %q && userIdentity.userName == "nobody-%d" && errorCode == ""`, name, i)
		default:
			when = fmt.Sprintf(`eventName in [%q, "SyntheticOther%d"] && requestParameters.bucketName == "nobody-%d"`, name, i, i)
		}
		fmt.Fprintf(&b, "  - id: gen-%04d\n    title: Generated rule %d\n    severity: low\n    when: '%s'\n", i, i, when)
	}
	return b.String()
}

// BenchmarkRuleCount measures the per-record cost of the two-tier match
// (header scan, index, header-decided rules, whole decode when a rule
// needs it) over the corpus with 100 and with 1,000 generated rules: the
// target is that 1,000 rules cost at most twice what 100 do. "mixed" has
// rules that need the whole record, "header" only rules decided from the
// header. Run with
//
//	go test -run '^$' -bench RuleCount -benchmem -cpu 1 -count 5 ./rules/
func BenchmarkRuleCount(b *testing.B) {
	names, recs := corpusNames(b)
	for _, kind := range []string{"mixed", "header"} {
		for _, n := range []int{100, 1000} {
			set, err := LoadFiles([]File{{Name: fmt.Sprintf("gen%d.yaml", n), Data: []byte(generatedRules(n, names, kind == "mixed"))}})
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("%s/rules=%d", kind, n), func(b *testing.B) {
				var ev cloudtrail.Event
				var dst []*Rule
				matched, whole, lazy := 0, 0, 0
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					for _, r := range recs {
						complete, err := cloudtrail.DecodeHeader(&ev, r)
						if err != nil {
							continue
						}
						dst, complete, _ = set.MatchHeader(&ev, complete, dst[:0], nil)
						matched += len(dst)
						if complete {
							whole++
						} else if ev.RequestParameters != nil || ev.ResponseElements != nil || ev.Resources != nil {
							lazy++
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
				b.ReportMetric(float64(matched)/float64(b.N), "matches/op")
				b.ReportMetric(float64(whole)/float64(b.N*len(recs)), "whole-decodes/record")
				b.ReportMetric(float64(lazy)/float64(b.N*len(recs)), "field-decodes/record")
			})
		}
	}
}

// BenchmarkDecodeHeader measures the first tier alone over the corpus:
//
//	go test -run '^$' -bench 'DecodeHeader$' -benchmem -cpu 1 -count 5 ./rules/
//
// cpu-ns/record (the process's CPU time) is the figure to compare on a
// busy machine.
func BenchmarkDecodeHeader(b *testing.B) {
	_, recs := corpusNames(b)
	size := 0
	for _, r := range recs {
		size += len(r)
	}
	var ev cloudtrail.Event
	b.SetBytes(int64(size))
	cputime.Run(b, len(recs), func() {
		for _, r := range recs {
			if _, err := cloudtrail.DecodeHeader(&ev, r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecodeEvent measures the whole decode (encoding/json into the
// typed Event) over the corpus, for comparison with BenchmarkDecodeHeader.
func BenchmarkDecodeEvent(b *testing.B) {
	_, recs := corpusNames(b)
	var ev cloudtrail.Event
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range recs {
			if err := cloudtrail.DecodeEventInto(&ev, r); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
}

// BenchmarkLoadBuiltin is what every command pays before its first record:
// loading, checking and compiling the built-in rules, without their tests
// (run, replay, search: "commands") and with them (test, validate). A load
// without tests compiles the built-in packs' expressions on first use;
// "commands-compiled" adds compiling every condition, summary
// placeholder, dedup key and group_by of it (what a long run may come to).
//
//	go test -run '^$' -bench LoadBuiltin -benchmem -cpu 1 -count 5 ./rules/
func BenchmarkLoadBuiltin(b *testing.B) {
	for _, c := range []struct {
		name    string
		opts    Options
		compile bool
	}{{"commands", Options{SkipTests: true}, false}, {"commands-compiled", Options{SkipTests: true}, true}, {"tests", Options{}, false}} {
		b.Run(c.name, func(b *testing.B) {
			// One "record" is one load: cpu-ns/record is the CPU time of
			// a load, whatever else the machine runs.
			cputime.Run(b, 1, func() {
				set, err := LoadWith(c.opts, "builtin")
				if err != nil {
					b.Fatal(err)
				}
				if c.compile {
					for _, p := range setPrograms(set) {
						if err := p.load(); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		})
	}
}

// setPrograms returns every program of set's rules: conditions, excepts,
// summary placeholders, dedup keys and group_by.
func setPrograms(set *Set) []*program {
	var out []*program
	for _, r := range set.Rules() {
		if r.program != nil {
			out = append(out, r.program)
		}
		out = append(out, r.except...)
		if r.summary != nil {
			for _, part := range r.summary.parts {
				if part.program != nil {
					out = append(out, part.program)
				}
			}
		}
		if r.Dedup != nil && r.Dedup.program != nil {
			out = append(out, r.Dedup.program)
		}
		if r.Threshold != nil {
			out = append(out, r.Threshold.programs...)
		}
	}
	return out
}

// BenchmarkMatchBuiltin measures what the built-in rules cost per corpus
// record in the two-tier match (header scan, index, Go forms, VM, the
// decodes rules ask for), with each match's summary rendered, as replay
// does:
//
//	go test -run '^$' -bench MatchBuiltin -benchmem -cpu 1 -count 5 ./rules/
func BenchmarkMatchBuiltin(b *testing.B) {
	_, recs := corpusNames(b)
	set, err := LoadWith(Options{SkipTests: true}, "builtin")
	if err != nil {
		b.Fatal(err)
	}
	var ev cloudtrail.Event
	var dst []*Rule
	cputime.Run(b, len(recs), func() {
		for _, r := range recs {
			complete, err := cloudtrail.DecodeHeader(&ev, r)
			if err != nil {
				continue
			}
			dst, _, _ = set.MatchHeader(&ev, complete, dst[:0], nil)
			for _, m := range dst {
				m.Summary(&ev)
			}
		}
	})
}
