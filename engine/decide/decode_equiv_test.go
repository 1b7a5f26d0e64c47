package decide

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/internal/corpus"
	"github.com/trailwatch/trailwatch/rules"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// The evaluator decodes a record in two tiers (the header, then only the
// lazy fields that rules, summaries, dedup keys and group_by read) and
// writes alerts with notifiers.Alert.AppendJSON. These tests hold that to
// the obvious path, encoding/json all the way: the whole record decoded by
// cloudtrail.DecodeEvent, the rules matched on it, the alert built from it
// with json.Compact's copy of the record, the lifecycle (dedup keys,
// threshold groups) run on it, and every output written by json.Marshal.

// equivPaths runs records through both paths, each with its own lifecycle,
// and returns each path's transcript: per record, its matches' alerts and
// the lifecycle's outputs, as JSON.
type equivPaths struct {
	set      *rules.Set
	ev       *Evaluator
	fast     *lifecycle.Lifecycle
	slow     *lifecycle.Lifecycle
	fastLog  strings.Builder
	slowLog  strings.Builder
	recordNo int
}

// equivClock is the lifecycles' clock in the differential tests.
func equivClock() time.Time { return time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC) }

func newEquivPaths(t testing.TB, set *rules.Set) *equivPaths {
	t.Helper()
	open := func() *lifecycle.Lifecycle {
		// One fixed clock for both paths: an alert whose eventTime is not
		// trusted carries the time it was read, which must not differ
		// between the two paths. It is far ahead, so no record is
		// "in the future".
		l, err := lifecycle.Open(lifecycle.Config{DedupWindow: time.Hour}, lifecycle.Options{Now: equivClock})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	return &equivPaths{set: set, ev: NewEvaluator(set, EvaluatorOptions{DedupWindow: -1}), fast: open(), slow: open()}
}

// add runs one record through both paths. The fast path gets the record
// in a buffer that is overwritten as soon as the evaluator returns, as a
// reader reusing its buffer would: nothing it hands on may depend on it.
func (p *equivPaths) add(t testing.TB, raw []byte) {
	t.Helper()
	p.recordNo++
	fmt.Fprintf(&p.fastLog, "record %d\n", p.recordNo)
	fmt.Fprintf(&p.slowLog, "record %d\n", p.recordNo)

	buf := append([]byte(nil), raw...)
	matches, ferr := p.ev.Evaluate(buf, nil)
	for i := range buf {
		buf[i] = '#'
	}
	fb := p.fast.Begin()
	for _, m := range matches {
		writeJSON(t, &p.fastLog, "match", &m.Alert)
		for _, o := range fb.Process(m.Alert, m.Rule, m.Event) {
			fmt.Fprintf(&p.fastLog, "output %s ", o.Key)
			writeAlert(t, &p.fastLog, &o.Alert)
		}
	}
	if err := fb.Commit(); err != nil {
		t.Fatal(err)
	}

	ev, serr := cloudtrail.DecodeEvent(raw)
	if (ferr != nil) != (serr != nil) {
		t.Errorf("record %d: evaluator error %v, encoding/json error %v", p.recordNo, ferr, serr)
	}
	if serr != nil {
		return
	}
	var c bytes.Buffer
	if err := json.Compact(&c, bytes.TrimSpace(raw)); err != nil {
		t.Fatalf("record %d: json.Compact: %v", p.recordNo, err)
	}
	sb := p.slow.Begin()
	for _, r := range p.set.Match(ev, nil, nil) {
		a := NewAlert(r, ev, json.RawMessage(c.Bytes()))
		writeJSON(t, &p.slowLog, "match", &a)
		for _, o := range sb.Process(a, r, ev) {
			fmt.Fprintf(&p.slowLog, "output %s ", o.Key)
			writeJSON(t, &p.slowLog, "", &o.Alert)
		}
	}
	if err := sb.Commit(); err != nil {
		t.Fatal(err)
	}
}

// writeJSON writes v as json.Marshal does, on a line.
func writeJSON(t testing.TB, w *strings.Builder, label string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if label != "" {
		w.WriteString(label + " ")
	}
	w.Write(b)
	w.WriteByte('\n')
}

// writeAlert writes an output alert as replay --output json does
// (AppendJSON).
func writeAlert(t testing.TB, w *strings.Builder, a interface {
	AppendJSON([]byte) ([]byte, error)
}) {
	t.Helper()
	b, err := a.AppendJSON(nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	w.WriteByte('\n')
}

// check compares the transcripts and reports the first difference.
func (p *equivPaths) check(t testing.TB) {
	t.Helper()
	fast, slow := strings.Split(p.fastLog.String(), "\n"), strings.Split(p.slowLog.String(), "\n")
	for i := 0; i < len(fast) || i < len(slow); i++ {
		var f, s string
		if i < len(fast) {
			f = fast[i]
		}
		if i < len(slow) {
			s = slow[i]
		}
		if f != s {
			t.Fatalf("line %d differs:\n two-tier:      %.2000s\n encoding/json: %.2000s", i+1, f, s)
		}
	}
}

// TestAlertsAgreeWithEncodingJSONOnCorpus runs every corpus record, twice
// (so that dedup and thresholds see repeats), through both paths and
// compares every alert field, the event JSON, the dedup keys and the
// threshold groups of every match and of every lifecycle output.
func TestAlertsAgreeWithEncodingJSONOnCorpus(t *testing.T) {
	set, err := rules.Load("builtin")
	if err != nil {
		t.Fatal(err)
	}
	p := newEquivPaths(t, set)
	recs := corpus.Records(t)
	for pass := 0; pass < 2; pass++ {
		for _, r := range recs {
			p.add(t, r)
		}
	}
	p.check(t)
	if n := strings.Count(p.slowLog.String(), "\nmatch "); n < 400 {
		t.Errorf("only %d matches over the corpus: the comparison covers too little", n)
	}
}

// FuzzAlertsAgreeWithEncodingJSON compares the two paths on arbitrary
// records, each run twice.
func FuzzAlertsAgreeWithEncodingJSON(f *testing.F) {
	for _, s := range []string{
		`{"eventVersion":"1.08","eventID":"e1","eventTime":"2024-05-01T08:00:00Z","eventName":"ConsoleLogin","eventSource":"signin.amazonaws.com","userIdentity":{"type":"Root","arn":"arn:aws:iam::1:root","accountId":"1"},"responseElements":{"ConsoleLogin":"Failure"},"additionalEventData":{"MFAUsed":"No"},"sourceIPAddress":"198.51.100.7"}`,
		`{"eventVersion":"1.08","eventID":"e2","eventTime":"2024-05-01T08:00:00Z","eventName":"AuthorizeSecurityGroupIngress","eventSource":"ec2.amazonaws.com","userIdentity":{"type":"AssumedRole","sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::1:role/r","userName":"r"}}},"requestParameters":{"groupId":"sg-1","ipPermissions":{"items":[{"ipProtocol":"tcp","fromPort":22,"toPort":22,"ipRanges":{"items":[{"cidrIp":"0.0.0.0/0"}]}}]}}}`,
		`{"eventVersion":"1.08","eventID":"e3","eventName":"PutBucketPolicy","eventSource":"s3.amazonaws.com","requestParameters":{"bucketName":"b","bucketPolicy":"{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\"}]}"},"resources":[{"ARN":"arn:aws:s3:::b","type":"AWS::S3::Bucket"}]}`,
		`{"eventVersion":"1.08","eventID":"e4","eventName":"StopLogging","eventSource":"cloudtrail.amazonaws.com","errorCode":"AccessDenied","userIdentity":{"type":"IAMUser","userName":"mallory"}} `,
		" {\"eventVersion\":\"1.08\", \"eventID\":\"e5\", \"eventName\":\"DeleteTrail\", \"userAgent\":\"<script>&\\u2028\", \"readOnly\":\"false\"}\n",
	} {
		f.Add([]byte(s))
	}
	set, err := rules.Load("builtin")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := newEquivPaths(t, set)
		p.add(t, data)
		p.add(t, data)
		p.check(t)
	})
}
