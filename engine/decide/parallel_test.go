package decide

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/internal/corpus"
	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// replayInputs is the corpus with what a replay meets besides records:
// CloudTrail's duplicate deliveries, lines that are not records, records
// broken past their header, and records on which a rule fails at run time.
func replayInputs(t testing.TB) [][]byte {
	recs := corpusRecords(t)
	var in [][]byte
	for i, r := range recs {
		in = append(in, r)
		switch i % 97 {
		case 3:
			in = append(in, r) // delivered twice in a row
		case 11:
			in = append(in, recs[i/2]) // delivered again, much later
		case 29:
			in = append(in, []byte(`not json at all`), []byte(`{"hello":"world"}`))
		case 41:
			in = append(in, []byte(fmt.Sprintf(`{"eventVersion":"1.08","eventID":"broken-%d","eventName":"ConsoleLogin","x":[1,}`, i)))
		case 53:
			in = append(in, []byte(fmt.Sprintf(`{"eventVersion":"1.08","eventID":"err-%d","eventName":"ListBuckets","requestParameters":{"maxResults":"many"}}`, i)))
		}
	}
	return in
}

// withFailingRule is the built-in rules and one rule that fails at run
// time on some records (a string compared with a number).
func withFailingRule(t testing.TB) *rules.Set {
	t.Helper()
	files, err := rules.ResolveFiles("builtin")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, rules.File{Name: "failing.yaml", Data: []byte(`rules:
  - id: many-results
    title: Many results
    severity: low
    when: eventName == "ListBuckets" && requestParameters.maxResults > 5
`)})
	set, err := rules.LoadFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// transcript writes what a replay would show for one record's result.
func transcript(w *bytes.Buffer, place int, matches []Match, err error) {
	if err != nil {
		fmt.Fprintf(w, "#%d malformed: %v\n", place, err)
	}
	for i := range matches {
		m := &matches[i]
		// Parallel leaves the summary to be rendered when the alert goes
		// out (Decision does it so); render it as Decision would.
		a := m.Alert
		lifecycle.Complete(&a, m.Rule, m.Event)
		b, _ := json.Marshal(&a)
		// The match's rule and decoded event travel with the alert: a
		// worker that reused an event handed over would show here.
		fmt.Fprintf(w, "#%d %s rule=%s event=%s/%s/%s\n", place, b, m.Rule.ID, m.Event.EventID, m.Event.EventName, m.Event.EventTime)
	}
}

func sequentialTranscript(set *rules.Set, in [][]byte) string {
	var w bytes.Buffer
	ev := NewEvaluator(set, EvaluatorOptions{OnRuleError: func(me rules.MatchError, e *cloudtrail.Event) {
		fmt.Fprintf(&w, "rule %s failed on %s: %v\n", me.Rule.ID, e.EventID, me.Err)
	}})
	var alerts []Match
	for i, r := range in {
		var err error
		alerts, err = ev.Evaluate(r, alerts[:0])
		transcript(&w, i, alerts, err)
	}
	fmt.Fprintf(&w, "%+v\n", ev.Stats())
	return w.String()
}

func parallelTranscript(t *testing.T, set *rules.Set, in [][]byte, opts ParallelOptions) string {
	var w bytes.Buffer
	ev := NewEvaluator(set, EvaluatorOptions{OnRuleError: func(me rules.MatchError, e *cloudtrail.Event) {
		fmt.Fprintf(&w, "rule %s failed on %s: %v\n", me.Rule.ID, e.EventID, me.Err)
	}})
	p := NewParallel(ev, opts, func(place int, alerts []Match, err error) error {
		transcript(&w, place, alerts, err)
		return nil
	})
	addAll(t, p, in)
	fmt.Fprintf(&w, "%+v\n", ev.Stats())
	return w.String()
}

// addAll adds the records in to p, the i-th with meta i, from one buffer
// that is overwritten as soon as Add returns, as files.Walk's is, and
// closes p.
func addAll(t testing.TB, p *Parallel[int], in [][]byte) {
	t.Helper()
	buf := make([]byte, 0, 1<<16)
	for i, r := range in {
		buf = append(buf[:0], r...)
		if err := p.Add(buf, i); err != nil {
			t.Fatal(err)
		}
		clear(buf)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestParallelEqualsSequential checks that evaluating on several
// goroutines gives the same alerts, errors, rule error reports and
// counters, in the same order and byte for byte, as Evaluate record by
// record.
func TestParallelEqualsSequential(t *testing.T) {
	set := withFailingRule(t)
	in := replayInputs(t)
	want := sequentialTranscript(set, in)
	if !strings.Contains(want, "malformed") || !strings.Contains(want, "failed on") || !strings.Contains(want, `"rule_id"`) {
		t.Fatalf("the inputs do not exercise every kind of result:\n%.2000s", want)
	}
	for _, opts := range []ParallelOptions{
		{Workers: 1},
		{Workers: 2},
		{Workers: 4, BatchRecords: 7},
		{Workers: 3, BatchRecords: 1},
		{Workers: 5, BatchBytes: 3000},
		{},
		{Workers: 1, ReuseEvents: true},
		{Workers: 3, BatchRecords: 5, ReuseEvents: true},
	} {
		t.Run(fmt.Sprintf("workers %d batch %d records %d bytes reuse %v", opts.Workers, opts.BatchRecords, opts.BatchBytes, opts.ReuseEvents), func(t *testing.T) {
			got := parallelTranscript(t, set, in, opts)
			if got != want {
				t.Errorf("parallel output differs from sequential:\n%s", firstDiff(got, want))
			}
		})
	}
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var a, b string
		if i < len(g) {
			a = g[i]
		}
		if i < len(w) {
			b = w[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\n got: %.500s\nwant: %.500s", i+1, a, b)
		}
	}
	return "(equal)"
}

// TestParallelPassKeepsPlace checks that metas handed to Pass come back
// between the records they were passed between, and that an error from
// emit stops the run and comes back from Add and Close.
func TestParallelPassKeepsPlace(t *testing.T) {
	ev := NewEvaluator(testSet(t), EvaluatorOptions{DedupWindow: -1})
	rec := []byte(`{"eventVersion":"1.08","eventID":"e","eventName":"X","errorCode":"AccessDenied"}`)
	var got []string
	stop := fmt.Errorf("stop")
	p := NewParallel(ev, ParallelOptions{Workers: 3, BatchRecords: 2}, func(m string, alerts []Match, err error) error {
		got = append(got, m)
		if m == "stop" {
			return stop
		}
		return nil
	})
	var want []string
	for i := range 20 {
		m := fmt.Sprintf("r%d", i)
		if err := p.Add(rec, m); err != nil {
			t.Fatal(err)
		}
		want = append(want, m)
		if i%3 == 0 {
			p.Pass(fmt.Sprintf("pass%d", i))
			want = append(want, fmt.Sprintf("pass%d", i))
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got order %v, want %v", got, want)
	}

	got = nil
	p = NewParallel(ev, ParallelOptions{Workers: 2, BatchRecords: 1}, func(m string, alerts []Match, err error) error {
		got = append(got, m)
		if m == "stop" {
			return stop
		}
		return nil
	})
	var addErr error
	for _, m := range []string{"a", "stop", "b", "c", "d", "e", "f"} {
		if addErr = p.Add(rec, m); addErr != nil {
			break
		}
	}
	if err := p.Close(); err != stop {
		t.Errorf("Close() = %v, want %v", err, stop)
	}
	if strings.Join(got, " ") != "a stop" {
		t.Errorf("emitted %v after the error, want [a stop]", got)
	}
}

// indexedOnly is a rule set whose rules are all filed under eventName,
// so a record none of them names has no candidate at all.
func indexedOnly(t testing.TB) *rules.Set {
	t.Helper()
	set, err := rules.LoadFiles([]rules.File{{Name: "indexed.yaml", Data: []byte(`rules:
  - id: trail-stopped
    title: Trail stopped
    severity: high
    when: eventName in ["StopLogging", "DeleteTrail"] && errorCode == ""
  - id: key-deleted
    title: Key pair deleted
    severity: medium
    when: eventName == "DeleteKeyPair" && requestParameters.keyName != ""
`)}})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestNoCandidatePathAllocatesNothing checks that a record no rule can
// match costs no allocation: the header scan, the dedup window and the
// index lookup allocate nothing.
func TestNoCandidatePathAllocatesNothing(t *testing.T) {
	if raceEnabled {
		// .ci/run runs this test again without -race.
		t.Skip("allocation counts are not meaningful under -race (sync.Pool drops items at random); run without -race")
	}
	builtin, err := rules.Load("builtin")
	if err != nil {
		t.Fatal(err)
	}
	// The built-in rules filed under no eventName run on every record: in
	// Go, they allocate nothing either (rules/predicate.go).
	for _, c := range []struct {
		name  string
		set   *rules.Set
		dedup int
	}{{"indexed", indexedOnly(t), -1}, {"indexed", indexedOnly(t), 0}, {"builtin", builtin, -1}} {
		set, dedup := c.set, c.dedup
		ev := NewEvaluator(set, EvaluatorOptions{DedupWindow: dedup})
		rec := []byte(noCandidateRecord)
		if a, _ := ev.Evaluate(rec, nil); len(a) != 0 {
			t.Fatalf("the record raised %d alerts; it must match no rule", len(a))
		}
		allocs := testing.AllocsPerRun(200, func() {
			if _, err := ev.Evaluate(rec, nil); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s rules, dedup window %d: Evaluate allocated %v times per no-candidate record, want 0", c.name, dedup, allocs)
		}
	}
}

// noCandidateRecord is a typical bulk record (a KMS GenerateDataKey by a
// service role) that no built-in rule names.
const noCandidateRecord = `{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLE:i-0abc","arn":"arn:aws:sts::111122223333:assumed-role/app/i-0abc","accountId":"111122223333","accessKeyId":"ASIAEXAMPLE","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROAEXAMPLE","arn":"arn:aws:iam::111122223333:role/app","accountId":"111122223333","userName":"app"},"attributes":{"creationDate":"2024-05-01T07:00:00Z","mfaAuthenticated":"false"},"ec2RoleDelivery":"2.0"}},"eventTime":"2024-05-01T08:00:00Z","eventSource":"kms.amazonaws.com","eventName":"GenerateDataKey","awsRegion":"us-east-1","sourceIPAddress":"10.0.1.23","userAgent":"aws-sdk-go-v2/1.30.0 os/linux lang/go#1.22.5 md/GOOS#linux md/GOARCH#amd64 api/kms#1.35.0","requestParameters":{"encryptionContext":{"aws:s3:arn":"arn:aws:s3:::bucket/key"},"encryptionAlgorithm":"SYMMETRIC_DEFAULT"},"responseElements":null,"requestID":"0f8e4d1a-1b2c-4d3e-8f9a-0b1c2d3e4f5a","eventID":"5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e","readOnly":true,"resources":[{"accountId":"111122223333","type":"AWS::KMS::Key","ARN":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management","tlsDetails":{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"kms.us-east-1.amazonaws.com"}}`

// TestParallelReusesEvents checks that with ReuseEvents the matches'
// events are decoded into again once emit returned (a record a rule
// matches costs no new Event), and that without it each record a rule
// matches keeps its own.
func TestParallelReusesEvents(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race; run without -race")
	}
	set := builtinSet(t)
	recs := corpusRecords(t)
	for _, reuse := range []bool{false, true} {
		ev := NewEvaluator(set, EvaluatorOptions{DedupWindow: -1})
		events := map[*cloudtrail.Event]bool{}
		matched := 0
		p := NewParallel(ev, ParallelOptions{Workers: 1, ReuseEvents: reuse}, func(_ int, ms []Match, _ error) error {
			if len(ms) > 0 {
				matched++
				events[ms[0].Event] = true
			}
			return nil
		})
		for i, r := range recs {
			if err := p.Add(r, i); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		switch {
		case matched < 100:
			t.Fatalf("only %d records matched: the corpus does not exercise this", matched)
		case !reuse && len(events) != matched:
			t.Errorf("without ReuseEvents %d matched records shared %d events, want one each", matched, len(events))
		case reuse && len(events) > matched/2:
			t.Errorf("with ReuseEvents %d matched records used %d events, want them reused", matched, len(events))
		}
	}
}

// TestParallelReuseThroughTheLifecycle decides the corpus ×3 (unique
// eventIDs) with a lifecycle, a router and storm control, record by
// record as replay does, once from Evaluate (events that own their
// records, a Decision each) and once from Parallel with ReuseEvents, whose
// events and alerts read the batch's buffer, reused batch after batch,
// by DecideMatches (which reuses its decision's memory). What the
// lifecycle keeps across records (threshold samples, storm digests) must
// be its own copy: the outputs, written as JSON when they go out, later
// batches' buffers overwritten, must be the same byte for byte.
func TestParallelReuseThroughTheLifecycle(t *testing.T) {
	var all bytes.Buffer
	if err := corpus.Copies(&all, corpusRecords(t), 3); err != nil {
		t.Fatal(err)
	}
	in := bytes.Split(bytes.TrimSpace(all.Bytes()), []byte("\n"))
	set := builtinSet(t)
	newDecider := func() *Decider {
		lc, err := lifecycle.Open(lifecycle.Config{DedupWindow: time.Hour, Samples: 3},
			lifecycle.Options{Storm: map[string]lifecycle.StormConfig{"storm": {Max: 2, Per: time.Hour}}, Now: equivClock})
		if err != nil {
			t.Fatal(err)
		}
		route := func(a *notifiers.Alert, r *rules.Rule) []string { return []string{"plain", "storm"} }
		return New(NewEvaluator(set, EvaluatorOptions{}), route, Options{Lifecycle: lc})
	}
	write := func(w *bytes.Buffer, res Result) {
		for _, o := range res.Alerts {
			b, _ := json.Marshal(o)
			fmt.Fprintf(w, "alert %s\n", b)
		}
		for _, it := range res.Items {
			b, _ := json.Marshal(it)
			fmt.Fprintf(w, "item %s\n", b)
		}
	}
	decideOne := func(d *Decider, w *bytes.Buffer, feed func(x *Decision), flush bool) {
		x := d.Begin(context.Background())
		defer x.Rollback()
		feed(x)
		res, err := x.Finish(flush)
		if err != nil {
			t.Fatal(err)
		}
		write(w, res)
		if err := x.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	var want bytes.Buffer
	d := newDecider()
	for _, r := range in {
		decideOne(d, &want, func(x *Decision) { x.Record(r) }, false)
	}
	decideOne(d, &want, func(*Decision) {}, true)
	for _, s := range []string{`"samples":[{`, `"Notifier":"storm"`, `Alert storm: `} {
		if !strings.Contains(want.String(), s) {
			t.Fatalf("the inputs do not exercise the lifecycle's memory: no %s in the outputs", s)
		}
	}
	for _, workers := range []int{1, 3} {
		t.Run(fmt.Sprintf("workers %d", workers), func(t *testing.T) {
			var got bytes.Buffer
			d := newDecider()
			p := NewParallel(d.Evaluator(), ParallelOptions{Workers: workers, BatchRecords: 4, ReuseEvents: true},
				func(_ int, ms []Match, _ error) error {
					// As replay decides: one call a record.
					res, err := d.DecideMatches(context.Background(), ms, false)
					write(&got, res)
					return err
				})
			addAll(t, p, in)
			res, err := d.DecideMatches(context.Background(), nil, true)
			if err != nil {
				t.Fatal(err)
			}
			write(&got, res)
			if got.String() != want.String() {
				t.Errorf("decided from Parallel with ReuseEvents, the outputs differ:\n%s", firstDiff(got.String(), want.String()))
			}
		})
	}
}
