package decodebench

import (
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/bytedance/sonic"
	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"
	goccy "github.com/goccy/go-json"

	"github.com/trailwatch/trailwatch/internal/benchdata"
	"github.com/trailwatch/trailwatch/internal/corpus"
	"github.com/trailwatch/trailwatch/internal/cputime"
	"github.com/trailwatch/trailwatch/rules"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// A candidate decodes a whole record into ev (which it resets first).
type candidate struct {
	name   string
	decode func(ev *cloudtrail.Event, data []byte) error
	// inexact marks a decoder with other semantics than encoding/json's
	// (measured for comparison; it could not be adopted as it is).
	inexact bool
}

// candidates are the whole-record decoders. Each is used as trailwatch
// would use it: on an error it falls back to cloudtrail.DecodeEventInto
// (encoding/json and its lenient path), so that records with type
// mismatches are coerced in one place.
//
// The rest of what DecodeEventInto does after encoding/json (eventTime
// from a shipper's @timestamp, refusing an object that is no CloudTrail
// record) is rare and left to it, in finish.
var candidates = []candidate{
	{"encoding-json", cloudtrail.DecodeEventInto, false},
	{"goccy-go-json", withFallback(func(data []byte, ev *cloudtrail.Event) error {
		return goccy.Unmarshal(data, ev)
	}), false},
	{"sonic-default", withFallback(func(data []byte, ev *cloudtrail.Event) error {
		// sonic's default config keeps invalid UTF-8 where encoding/json
		// writes U+FFFD: check first, fall back.
		if !utf8.Valid(data) {
			return errInvalidUTF8
		}
		return sonic.Unmarshal(data, ev)
	}), false},
	{"sonic-std", withFallback(func(data []byte, ev *cloudtrail.Event) error {
		return sonic.ConfigStd.Unmarshal(data, ev)
	}), false},
	{"json-v2-v1semantics", withFallback(func(data []byte, ev *cloudtrail.Event) error {
		return jsonv1.Unmarshal(data, ev)
	}), false},
	{"json-v2", withFallback(func(data []byte, ev *cloudtrail.Event) error {
		return jsonv2.Unmarshal(data, ev, jsonv2.MatchCaseInsensitiveNames(true))
	}), true},
}

var errInvalidUTF8 = errors.New("invalid UTF-8")

// withFallback is decode used as trailwatch would use it: into a reset
// Event, with DecodeEventInto on any error and for what finish leaves to
// it.
func withFallback(decode func(data []byte, ev *cloudtrail.Event) error) func(*cloudtrail.Event, []byte) error {
	return func(ev *cloudtrail.Event, data []byte) error {
		*ev = cloudtrail.Event{}
		if decode(data, ev) != nil {
			return cloudtrail.DecodeEventInto(ev, data)
		}
		return finish(ev, data)
	}
}

// finish hands a record that a candidate decoded to DecodeEventInto when
// encoding/json's result would need more than the decode: no eventTime
// (a shipper's @timestamp may stand in), or neither eventVersion nor
// eventID (an error).
func finish(ev *cloudtrail.Event, data []byte) error {
	if ev.EventTime.IsZero() || (ev.EventVersion == "" && ev.EventID == "") {
		return cloudtrail.DecodeEventInto(ev, data)
	}
	return nil
}

// exported is ev's exported fields (its unexported state says where the
// record is, which differs between two decodes of the same bytes).
func exported(ev *cloudtrail.Event) map[string]any {
	v := reflect.ValueOf(ev).Elem()
	out := map[string]any{}
	for i := 0; i < v.NumField(); i++ {
		if f := v.Type().Field(i); f.IsExported() {
			out[f.Name] = v.Field(i).Interface()
		}
	}
	return out
}

func builtin(tb testing.TB) *rules.Set {
	tb.Helper()
	set, err := rules.Load("builtin")
	if err != nil {
		tb.Fatal(err)
	}
	return set
}

// matchedRecords returns the corpus records that raise an alert with the
// built-in rules: the records whose decode the evaluator pays for.
func matchedRecords(tb testing.TB, set *rules.Set) [][]byte {
	alerting := benchdata.Alerting(set)
	var out [][]byte
	for _, r := range corpus.Records(tb) {
		if alerting(r) {
			out = append(out, r)
		}
	}
	return out
}

// TestCandidatesAgree reports, for each whole-record decoder, on how many
// corpus records it gives the same Event as encoding/json (it fails on
// any difference: a decoder that differs cannot be adopted).
func TestCandidatesAgree(t *testing.T) {
	recs := corpus.Records(t)
	for _, c := range candidates[1:] {
		same := 0
		for _, r := range recs {
			var want, got cloudtrail.Event
			werr := cloudtrail.DecodeEventInto(&want, r)
			gerr := c.decode(&got, r)
			if (werr != nil) != (gerr != nil) || !reflect.DeepEqual(exported(&want), exported(&got)) {
				if !c.inexact {
					t.Errorf("%s: differs from encoding/json on %.120s", c.name, r)
				}
				continue
			}
			same++
		}
		t.Logf("%s: the same Event as encoding/json on %d of %d corpus records", c.name, same, len(recs))
	}
}

// BenchmarkDecodeAll decodes every corpus record whole with each decoder.
func BenchmarkDecodeAll(b *testing.B) {
	recs := corpus.Records(b)
	for _, c := range candidates {
		b.Run(c.name, func(b *testing.B) {
			var ev cloudtrail.Event
			cputime.Run(b, len(recs), func() {
				for _, r := range recs {
					_ = c.decode(&ev, r)
				}
			})
		})
	}
}

// BenchmarkMatched is the work the evaluator does for a record that a rule
// matches, with each way of decoding it. Every record's header is scanned
// first (cloudtrail.DecodeHeader: the evaluator needs the eventID to drop
// repeats and the eventName to pick candidate rules); the whole-record
// decoders then decode everything, as the evaluator did before lazy
// decoding; "lazy", what trailwatch does now, decodes only the fields that
// the candidate rules, and the matches' summaries, read. Then the
// candidate rules run and each match's summary is rendered.
func BenchmarkMatched(b *testing.B) {
	set := builtin(b)
	recs := matchedRecords(b, set)
	alert := func(ev *cloudtrail.Event, matched []*rules.Rule) {
		for _, r := range matched {
			_ = r.Summary(ev)
		}
	}
	var dst []*rules.Rule
	for _, c := range candidates {
		b.Run(c.name, func(b *testing.B) {
			var ev cloudtrail.Event
			cputime.Run(b, len(recs), func() {
				for _, r := range recs {
					if _, err := cloudtrail.DecodeHeader(&ev, r); err == nil && c.decode(&ev, r) == nil {
						dst = set.Match(&ev, dst[:0], nil)
						alert(&ev, dst)
					}
				}
			})
		})
	}
	b.Run("lazy", func(b *testing.B) {
		var ev cloudtrail.Event
		cputime.Run(b, len(recs), func() {
			for _, r := range recs {
				complete, err := cloudtrail.DecodeHeader(&ev, r)
				if err == nil {
					dst, _, _ = set.MatchHeader(&ev, complete, dst[:0], nil)
					alert(&ev, dst)
				}
			}
		})
	})
}
