package cloudtrail

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/trailwatch/trailwatch/internal/corpus"
)

// membersDiff decodes raw with DecodeEvent and, for every lazy map field,
// with DecodeHeader then NeedMembers of keys (and of each member the
// record has, one at a time, plus one it lacks): the partial map must read
// like the whole one for those keys (present or missing, same value) and
// hold nothing else; a Need afterwards must give the whole map, as a
// Complete of a fresh header-decoded Event does.
func membersDiff(raw []byte, keys []string) (diffs []string) {
	full, err := DecodeEvent(raw)
	if err != nil {
		return nil
	}
	var probe Event
	if complete, err := DecodeHeader(&probe, raw); err != nil || complete {
		return nil // the whole decode took it: no lazy fields
	}
	for i := 0; Fields(1)<<i < fieldResources; i++ { // the map fields
		f := Fields(1) << i
		want := *full.lazyMap(f)
		lists := [][]string{keys, {"absent-key"}}
		for _, k := range slices.Sorted(maps.Keys(want)) {
			lists = append(lists, []string{k, "absent-key"})
		}
		for _, keys := range lists {
			var ev Event
			if _, err := DecodeHeader(&ev, raw); err != nil {
				return []string{fmt.Sprintf("DecodeHeader: %v", err)}
			}
			if err := ev.NeedMembers(f, keys); err != nil {
				diffs = append(diffs, fmt.Sprintf("%s %q: NeedMembers: %v", lazyNames[i], keys, err))
				continue
			}
			got := *ev.lazyMap(f)
			if (got == nil) != (want == nil) {
				diffs = append(diffs, fmt.Sprintf("%s %q: nil %v, whole decode nil %v", lazyNames[i], keys, got == nil, want == nil))
			}
			if ev.lazy.partial&f != 0 {
				for k, v := range got {
					if !slices.Contains(keys, k) {
						diffs = append(diffs, fmt.Sprintf("%s %q: holds %q, not asked for", lazyNames[i], keys, k))
					} else if w, ok := want[k]; !ok || !reflect.DeepEqual(v, w) {
						diffs = append(diffs, fmt.Sprintf("%s %q: %q = %#v, whole decode %#v (present %v)", lazyNames[i], keys, k, v, w, ok))
					}
				}
			}
			for _, k := range keys {
				if _, ok := want[k]; ok {
					if _, ok := got[k]; !ok {
						diffs = append(diffs, fmt.Sprintf("%s %q: %q missing", lazyNames[i], keys, k))
					}
				}
			}
			// Then whole, as if never partial.
			if err := ev.Complete(); err != nil {
				diffs = append(diffs, fmt.Sprintf("%s %q: Complete: %v", lazyNames[i], keys, err))
				continue
			}
			if !reflect.DeepEqual(exportedFields(&ev), exportedFields(full)) {
				diffs = append(diffs, fmt.Sprintf("%s %q: after Complete the event differs from DecodeEvent's", lazyNames[i], keys))
			}
		}
	}
	return diffs
}

func checkMembers(t *testing.T, place string, raw []byte, keys ...string) {
	t.Helper()
	for _, d := range membersDiff(raw, keys) {
		t.Errorf("%s: %s", place, d)
	}
}

// TestNeedMembersAgreesOnCorpus: a lazy map decoded member by member
// reads like the whole decode on every real record.
func TestNeedMembersAgreesOnCorpus(t *testing.T) {
	n := 0
	corpus.ForEachRecord(t, func(place string, line []byte) {
		n++
		checkMembers(t, place, line, "instanceType", "userData", "bucketName")
	})
	if n == 0 {
		t.Fatal("no records compared")
	}
}

// TestNeedMembers: duplicate keys, keys with escapes or bytes outside
// ASCII (which may decode to a key asked for), null, empty and nested
// values, and a partial map that a later Need makes whole.
func TestNeedMembers(t *testing.T) {
	for _, rp := range []string{
		`{"a":1,"b":{"c":[1,"x",null]},"a":"last"}`,
		`{"\u0061":"escaped","b":2}`,
		`{"é":1,"a":2}`,
		`{"a":"caf\u00e9","b":"\ud800"}`,
		`null`,
		`{}`,
		` { "a" : [ ] , "b" : { } } `,
		`{"b":1}`,
	} {
		raw := []byte(`{"eventVersion":"1.08","eventID":"e","requestParameters":` + rp + `,"responseElements":` + rp + `}`)
		checkMembers(t, rp, raw, "a")
		checkMembers(t, rp, raw, "a", "b", "é")
	}
	raw := []byte(`{"eventVersion":"1.08","eventID":"e","requestParameters":{"a":1,"b":2,"c":3}}`)
	var ev Event
	if _, err := DecodeHeader(&ev, raw); err != nil {
		t.Fatal(err)
	}
	keys := []string{"a", "c"}
	if err := ev.NeedMembers(fieldRequestParameters, keys); err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"a": 1.0, "c": 3.0}; !reflect.DeepEqual(ev.RequestParameters, want) {
		t.Fatalf("partial map %v, want %v", ev.RequestParameters, want)
	}
	partial := ev.RequestParameters
	// Another expression's members join the partial map.
	if err := ev.NeedMembers(fieldRequestParameters, []string{"b"}); err != nil {
		t.Fatal(err)
	}
	if len(ev.RequestParameters) != 3 {
		t.Fatalf("after a second NeedMembers: %v", ev.RequestParameters)
	}
	clear(partial)
	partial["a"] = 1.0
	if err := ev.Need(fieldRequestParameters); err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"a": 1.0, "b": 2.0, "c": 3.0}; !reflect.DeepEqual(ev.RequestParameters, want) {
		t.Fatalf("after Need %v, want %v", ev.RequestParameters, want)
	}
	if len(partial) != 1 {
		t.Fatal("Need wrote into the partial map (a copy of the Event may share it)")
	}
}
