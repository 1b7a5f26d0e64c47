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
// reference the fast path must agree with. For each match it gives the
// rule, its summary, its dedup key and its threshold group.
func slowVerdict(set *Set, raw []byte) (string, error) {
	ev, err := cloudtrail.DecodeEvent(raw)
	if err != nil {
		return "", err
	}
	var lines []string
	for _, r := range set.enabled {
		if ok, _ := r.evalQuiet(ev); ok {
			lines = append(lines, matchLine(r, ev))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n"), nil
}

// fastVerdict is slowVerdict by the two tiers: the header, and the lazy
// fields that each rule, summary, dedup key and group reads. The record's
// buffer is overwritten once the rules have matched, as a reader reusing
// its buffer would: the summaries must not see it.
func fastVerdict(set *Set, raw []byte) (string, error) {
	buf := append([]byte(nil), raw...)
	var ev cloudtrail.Event
	complete, err := cloudtrail.DecodeHeader(&ev, buf)
	if err != nil {
		return "", err
	}
	matched, _, err := set.MatchHeader(&ev, complete, nil, nil)
	if err != nil {
		return "", err
	}
	for i := range buf {
		buf[i] = '#'
	}
	var lines []string
	for _, r := range matched {
		lines = append(lines, matchLine(r, &ev))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n"), nil
}

// matchLine describes rule r's match on ev: its id, summary, dedup key and
// threshold group.
func matchLine(r *Rule, ev *cloudtrail.Event) string {
	line := r.ID + " | " + r.Summary(ev)
	if r.Dedup != nil {
		k, err := r.Dedup.keyFor(ev)
		line += fmt.Sprintf(" | dedup %q %v", k, err)
	}
	if r.Threshold != nil {
		g, err := r.Threshold.groupFor(ev)
		line += fmt.Sprintf(" | group %q %v", g, err)
	}
	return line
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
		t.Errorf("%s: full decode matched\n%s\ntwo-tier matched\n%s", place, slow, fast)
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
	f.Add([]byte(`{"eventVersion":"1.08","eventID":"e","eventName":"AuthorizeSecurityGroupIngress","requestParameters":{"ipPermissions":{"items":[{"fromPort":22,"toPort":22,"ipRanges":{"items":[{"cidrIp":"0.0.0.0/0"}]}}]}}}`))
	f.Add([]byte(`{"eventVersion":"1.08","eventID":"e","eventName":"ConsoleLogin","userIdentity":{"type":"Root","sessionContext":{"attributes":{"mfaAuthenticated":"false"}}},"responseElements":{"ConsoleLogin":"Failure"},"additionalEventData":{"MFAUsed":"No"}}`))
	set, err := Load("builtin")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		compareVerdicts(t, set, "fuzz", data)
	})
}

// TestLazyFieldsRead checks which lazy fields a condition decodes: those it
// names, all of them through $env, and none for a header-only one or one
// whose Go form reads a map's member from the record's bytes.
// evalHeader evaluates the condition cond on rec decoded by DecodeHeader,
// wants it true, and returns the event as the evaluation left it.
func evalHeader(t *testing.T, cond string, rec []byte) *cloudtrail.Event {
	t.Helper()
	c, err := CompileCondition(cond)
	if err != nil {
		t.Fatal(err)
	}
	ev := new(cloudtrail.Event)
	if _, err := cloudtrail.DecodeHeader(ev, rec); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Eval(ev); !ok || err != nil {
		t.Fatalf("Eval(%s) = %v, %v; want true", cond, ok, err)
	}
	return ev
}

func TestLazyFieldsRead(t *testing.T) {
	rec := []byte(`{"eventVersion":"1.08","eventID":"e","eventName":"PutBucketPolicy","userIdentity":{"type":"Root","sessionContext":{"sessionIssuer":{"arn":"x"}}},
		"requestParameters":{"bucketName":"b"},"responseElements":{"ok":true},"resources":[{"ARN":"arn:aws:s3:::b"}],"additionalEventData":{"a":1}}`)
	for _, tt := range []struct {
		cond string
		want []string // the lazy fields decoded afterwards
	}{
		{`eventName == "PutBucketPolicy" && userIdentity.sessionContext.sessionIssuer.arn == "x"`, nil},
		{`requestParameters.bucketName == "b" && responseElements.ok == true`, nil},
		{`str(requestParameters.bucketName) == "b"`, []string{"requestParameters"}},
		{`let rp = requestParameters; rp.bucketName == "b" && any(resources, {.ARN != ""})`, []string{"requestParameters", "resources"}},
		{`$env["responseElements"] != nil`, []string{"requestParameters", "responseElements", "additionalEventData", "resources"}},
		{`$env.eventName == "PutBucketPolicy"`, []string{"requestParameters", "responseElements", "additionalEventData", "resources"}},
	} {
		t.Run(tt.cond, func(t *testing.T) {
			ev := evalHeader(t, tt.cond, rec)
			var got []string
			if ev.RequestParameters != nil {
				got = append(got, "requestParameters")
			}
			if ev.ResponseElements != nil {
				got = append(got, "responseElements")
			}
			if ev.AdditionalEventData != nil {
				got = append(got, "additionalEventData")
			}
			if ev.Resources != nil {
				got = append(got, "resources")
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("decoded %v, want %v", got, tt.want)
			}
		})
	}
}
