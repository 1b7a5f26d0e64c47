package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/trailwatch/trailwatch/internal/corpus"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// slowVerdict decodes the whole record with encoding/json and evaluates
// every enabled rule directly, without the index or the header: the
// reference the fast path must agree with.
func slowVerdict(set *Set, raw []byte) (string, error) {
	ev, err := cloudtrail.DecodeEvent(raw)
	if err != nil {
		return "", err
	}
	var ids []string
	for _, r := range set.enabled {
		if ok, _ := r.evalQuiet(ev); ok {
			ids = append(ids, r.ID)
		}
	}
	sort.Strings(ids)
	return strings.Join(ids, ","), nil
}

func fastVerdict(set *Set, raw []byte) (string, error) {
	var ev cloudtrail.Event
	complete, err := cloudtrail.DecodeHeader(&ev, raw)
	if err != nil {
		return "", err
	}
	matched, _, err := set.MatchHeader(&ev, complete, nil, nil)
	if err != nil {
		return "", err
	}
	var ids []string
	for _, r := range matched {
		ids = append(ids, r.ID)
	}
	sort.Strings(ids)
	return strings.Join(ids, ","), nil
}

func compareVerdicts(t *testing.T, set *Set, place string, raw []byte) {
	t.Helper()
	slow, serr := slowVerdict(set, raw)
	fast, ferr := fastVerdict(set, raw)
	if (serr != nil) != (ferr != nil) {
		t.Errorf("%s: malformed verdicts differ: full decode %v, two-tier %v", place, serr, ferr)
		return
	}
	if slow != fast {
		t.Errorf("%s: full decode matched [%s], two-tier matched [%s]", place, slow, fast)
	}
}

// TestTwoTierAgreesOnCorpus checks that deciding records from the header
// gives every rule the same verdict as decoding every record whole, on
// every real record.
func TestTwoTierAgreesOnCorpus(t *testing.T) {
	set, err := Load("builtin")
	if err != nil {
		t.Fatal(err)
	}
	// Disabled rules too: enable every rule for the comparison.
	for _, r := range set.rules {
		r.Enabled = true
	}
	set.enabled = set.rules
	set.index = buildIndex(set.rules)
	n := 0
	corpus.ForEachRecord(t, func(place string, line []byte) {
		n++
		compareVerdicts(t, set, place, line)
		// The same record with every whitespace variant the scanner must
		// take: pretty-printed.
		var pretty bytes.Buffer
		if json.Indent(&pretty, line, "", "  ") == nil {
			compareVerdicts(t, set, place+" (indented)", pretty.Bytes())
		}
	})
	if n == 0 {
		t.Fatal("no records compared")
	}
}

func TestTwoTierEdgeCases(t *testing.T) {
	set, err := Load("builtin")
	if err != nil {
		t.Fatal(err)
	}
	cases := []string{
		`{"eventVersion":"1.08","eventName":"ConsoleLogin","userIdentity":{"type":"Root"},"responseElements":{"ConsoleLogin":"Success"}}`,
		`{"eventVersion":"1.08","eventName":"Console\u004cogin","userIdentity":{"type":"Root"}}`,
		`{"eventVersion":"1.08","eventName":"X","errorCode":"AccessDenied"}`,
		`{"eventVersion":"1.08","eventName":"X","errorCode":5}`,
		`{"eventVersion":"1.08","eventName":"X","readOnly":"True","errorCode":"Client.UnauthorizedOperation"}`,
		`{"eventVersion":"1.08","userIdentity":null,"errorCode":"AccessDenied"}`,
		`{"eventVersion":"1.08","userIdentity":"weird","errorCode":"AccessDenied"}`,
		`{"eventVersion":"1.08","userIdentity":{"type":"Root","type":"IAMUser"},"eventName":"ConsoleLogin"}`,
		`{"eventVersion":"1.08","eventName":"X","bad":[1,2,}`,
		`{"eventVersion":"1.08","eventName":"X"} trailing`,
		`{"eventVersion":"1.08","eventName":"X","n":-0.5e+3,"m":01}`,
		`{"eventVersion":"1.08","eventName":"X","s":"tab	inside"}`,
		`{"eventVersion":"1.08","eventTime":"not a time","userIdentity":{"type":"Root"}}`,
		`{"eventID":"only-id","userIdentity":{"type":"Root","invokedBy":""}}`,
		`{"hello":"world"}`,
		`  {"eventVersion":"1.08","eventName":"StopLogging","eventSource":"cloudtrail.amazonaws.com"}  `,
	}
	for i, c := range cases {
		compareVerdicts(t, set, fmt.Sprintf("case %d %s", i, c), []byte(c))
	}
}

// FuzzTwoTier checks the two decoding tiers against each other on
// arbitrary input.
func FuzzTwoTier(f *testing.F) {
	f.Add([]byte(`{"eventVersion":"1.08","eventName":"ConsoleLogin","userIdentity":{"type":"Root"}}`))
	f.Add([]byte(`{"eventVersion":"1.08","errorCode":"AccessDenied","userIdentity":{"type":"IAMUser","invokedBy":"x"}}`))
	f.Add([]byte(`{"eventVersion":"1","readOnly":"True","n":[1,{"a":"\u00e9"}]}`))
	set, err := Load("builtin")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		compareVerdicts(t, set, "fuzz", data)
	})
}
