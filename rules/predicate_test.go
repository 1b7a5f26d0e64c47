package rules

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/expr-lang/expr"

	"github.com/trailwatch/trailwatch/internal/corpus"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// conditionPrograms returns every condition of set (rules' conditions and
// their excepts) with a name for messages.
func conditionPrograms(set *Set) (names []string, progs []*program) {
	for _, r := range set.Rules() {
		if r.program != nil {
			names, progs = append(names, r.ID), append(progs, r.program)
		}
		for i, p := range r.except {
			names, progs = append(names, fmt.Sprintf("%s except %d", r.ID, i)), append(progs, p)
		}
	}
	return names, progs
}

// checkPredicates compares, for every condition, run (with its Go form)
// with expr's VM alone on ev: an exact form must give the VM's value, and
// a guard may say false only when the VM says false without an error.
// With raw (the record of ev), each Go form runs first on a fresh
// DecodeHeader of raw, its lazy fields not decoded yet (as run calls it),
// and the VM on ev after Need.
func checkPredicates(t *testing.T, names []string, progs []*program, ev *cloudtrail.Event, where string, raw []byte) {
	t.Helper()
	for i, p := range progs {
		if p.pred == nil {
			continue
		}
		var got bool
		if raw != nil {
			var fresh cloudtrail.Event
			if _, err := cloudtrail.DecodeHeader(&fresh, raw); err != nil {
				continue
			}
			got = p.pred.fn(&fresh)
		}
		if p.fields != 0 {
			if err := ev.Need(p.fields); err != nil {
				continue
			}
		}
		if raw == nil {
			got = p.pred.fn(ev)
		}
		want, err := runVM(p, ev)
		switch {
		case p.pred.exact && (err != nil || want != got):
			t.Errorf("%s: %s: Go form says %v, the VM %v (err %v)", where, names[i], got, want, err)
		case !p.pred.exact && !got && (err != nil || want != false):
			t.Errorf("%s: %s: guard says false, the VM %v (err %v)", where, names[i], want, err)
		}
	}
}

// TestPredicatesAgreeWithVM holds the Go form of every built-in condition
// to expr's VM on every corpus record (decoded by the header and whole)
// and on every event of the rules' own tests, and checks that the rules
// that run on every record have one.
func TestPredicatesAgreeWithVM(t *testing.T) {
	set, err := Load("builtin")
	if err != nil {
		t.Fatal(err)
	}
	names, progs := conditionPrograms(set)
	exact, guarded := 0, 0
	for _, p := range progs {
		switch {
		case p.pred == nil:
		case p.pred.exact:
			exact++
		default:
			guarded++
		}
	}
	t.Logf("%d conditions: %d in Go, %d with a guard", len(progs), exact, guarded)
	for _, r := range set.index.unindexed {
		if r.program != nil && r.program.pred == nil {
			t.Errorf("rule %s runs on every record and has no Go form or guard", r.ID)
		}
	}
	for _, r := range set.Rules() {
		for _, tc := range r.Tests {
			for j, raw := range append(tc.Events, tc.Event) {
				if raw == nil {
					continue
				}
				if ev, err := cloudtrail.DecodeEvent(raw); err == nil {
					checkPredicates(t, names, progs, ev, fmt.Sprintf("%s test %q event %d", r.ID, tc.Name, j), nil)
					var hv cloudtrail.Event
					if _, err := cloudtrail.DecodeHeader(&hv, raw); err == nil {
						checkPredicates(t, names, progs, &hv, fmt.Sprintf("%s test %q event %d (header)", r.ID, tc.Name, j), raw)
					}
				}
			}
		}
	}
	corpus.ForEachRecord(t, func(place string, line []byte) {
		var ev cloudtrail.Event
		if _, err := cloudtrail.DecodeHeader(&ev, line); err == nil {
			checkPredicates(t, names, progs, &ev, place+" (header)", line)
		}
		if whole, err := cloudtrail.DecodeEvent(line); err == nil {
			checkPredicates(t, names, progs, whole, place, nil)
		}
	})
}

// TestPredicateForms checks what compilePred understands, and that it
// gives up on what it must not decide, against the VM.
func TestPredicateForms(t *testing.T) {
	events := []string{
		`{"eventVersion":"1.08","eventName":"ConsoleLogin","userIdentity":{"type":"Root","arn":"arn:aws:iam::1:root"},"readOnly":true,"userAgent":"Mozilla PACU/1.0","sourceIPAddress":"10.1.2.3"}`,
		`{"eventVersion":"1.08","eventName":"GetObject","errorCode":"AccessDenied","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::1:assumed-role/r/i-0123456789abcdef0"},"userAgent":"ÄWS-CLI TruffleHog","sourceIPAddress":"203.0.113.9"}`,
		`{"eventVersion":"1.08","eventName":"","userAgent":"","sourceIPAddress":"::ffff:192.168.0.1","requestParameters":{"x":1}}`,
		`{"eventVersion":"1.08","eventName":"DescribeInstances","userIdentity":{"type":"IAMUser","userName":"IAMUser"},"sourceIPAddress":"cloudformation.amazonaws.com","vpcEndpointAccountId":"IAMUser"}`,
		`{"eventVersion":"1.08","eventName":"GetObject","requestParameters":{"x":"1","bucketName":"b","bucket":{"name":"b"}},"responseElements":{"y":false}}`,
		`{"eventVersion":"1.08","eventName":"GetObject","requestParameters":{"x":true,"bucketName":["b"]},"responseElements":{"y":"false"}}`,
		`{"eventVersion":"1.08","eventName":"GetObject","requestParameters":{"x":null},"responseElements":null}`,
		// Read from the record's bytes (cloudtrail.Event.Member): the last
		// of duplicate keys, escaped keys and values, white space.
		`{"eventVersion":"1.08","eventName":"GetObject","requestParameters":{"x":"1","x":true,"bucketName":"c","bucketName":"b"},"responseElements":{ "y" : false , "y" : "false" }}`,
		`{"eventVersion":"1.08","eventName":"GetObject","requestParameters":{"\u0078":"1","bucketName":"\u0062"},"responseElements":{"\u0079":false}}`,
		`{"eventVersion":"1.08","eventName":"GetObject","requestParameters":{"x":"\u0031","y":"é"},"responseElements":{"y":false,"z":[{"y":true}]}}`,
	}
	cases := []struct {
		src   string
		exact bool
		pred  bool // a Go form or guard is expected
	}{
		{`eventName == "ConsoleLogin"`, true, true},
		{`"ConsoleLogin" != eventName`, true, true},
		{`eventName in ["ConsoleLogin", "GetObject", "A", "B", "C", "D"]`, true, true},
		{`eventName not in ["ConsoleLogin"]`, true, true},
		{`userIdentity.type == "Root" && readOnly`, true, true},
		{`!readOnly || errorCode startsWith "Access"`, true, true},
		{`userIdentity.arn matches ":assumed-role/[^/]+/i-[0-9a-f]{8,17}$"`, true, true},
		{`userIdentity.arn endsWith ":root" or eventName contains "Object"`, true, true},
		{`userIdentity.userName == userIdentity.type`, true, true},
		{`userIdentity.userName == vpcEndpointAccountId`, true, true},
		{`icontains(userAgent, ["pacu", "TRUFFLEHOG"]) && isIP(sourceIPAddress)`, true, true},
		{`isPrivateIP(sourceIPAddress) || inCIDR(sourceIPAddress, "203.0.113.0/24", ["192.168.0.0/16"])`, true, true},
		{`not (eventName == "A")`, true, true},
		{`true && eventName != ""`, true, true},
		{`eventName == "GetObject" && requestParameters.bucketName == "b"`, true, true},
		{`requestParameters.x == "1" || "1" != requestParameters.x`, true, true},
		{`requestParameters.x != true && responseElements.y == false`, true, true},
		{`eventName == "A" || true in some_bools`, true, true},
		{`"a" in some_strings && !("b" in some_strings)`, true, true},
		// Partly understood: a guard from what the VM runs first.
		{`eventName == "GetObject" && requestParameters.bucket.name == "b"`, false, true},
		{`eventName == "ConsoleLogin" && len(userAgent) > 3`, false, true},
		{`(eventName == "A" && len(userAgent) > 3) || errorCode == "AccessDenied"`, false, true},
		// Not understood, or not safe to decide.
		{`len(userAgent) > 3 && eventName == "ConsoleLogin"`, false, false},
		{`!(eventName == "A" && len(userAgent) > 3)`, false, false},
		{`eventName == "A" || len(userAgent) > 3`, false, false},
		{`eventName in ["A", 1]`, false, false},
		{`inCIDR(sourceIPAddress, userAgent)`, false, false},
		{`requestParameters.x.y == "1"`, false, false},
		{`requestParameters.x == 1`, false, false},
	}
	lists := newNames()
	lists.lists["some_bools"] = []any{false}
	lists.lists["some_strings"] = []any{"a", float64(1), true}
	for _, c := range cases {
		p, err := compileCondition(c.src, lists)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		switch {
		case !c.pred && p.pred != nil:
			t.Errorf("%s: has a Go form (exact %v), want none", c.src, p.pred.exact)
			continue
		case c.pred && p.pred == nil:
			t.Errorf("%s: no Go form or guard", c.src)
			continue
		case c.pred && p.pred.exact != c.exact:
			t.Errorf("%s: exact %v, want %v", c.src, p.pred.exact, c.exact)
		}
		for i, raw := range events {
			ev, err := cloudtrail.DecodeEvent([]byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			checkPredicates(t, []string{c.src}, []*program{p}, ev, fmt.Sprintf("event %d", i), nil)
			var hv cloudtrail.Event
			if _, err := cloudtrail.DecodeHeader(&hv, []byte(raw)); err == nil {
				checkPredicates(t, []string{c.src}, []*program{p}, &hv, fmt.Sprintf("event %d (header)", i), []byte(raw))
			}
		}
	}
}

// FuzzPredicates holds every built-in condition's Go form to the VM on
// arbitrary records.
func FuzzPredicates(f *testing.F) {
	for _, s := range []string{
		`{"eventName":"ConsoleLogin","userIdentity":{"type":"Root","invokedBy":""},"eventType":"AwsConsoleSignIn","responseElements":{"ConsoleLogin":"Success"}}`,
		`{"eventType":"AwsVpceEvent","userIdentity":{"accountId":"1"},"vpcEndpointAccountId":"2","sourceIPAddress":"8.8.8.8"}`,
		`{"userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::1:assumed-role/r/i-0123456789abcdef0"},"sourceIPAddress":"1.2.3.4","eventSource":"s3.amazonaws.com"}`,
		`{"userAgent":"kali linux","errorCode":"AccessDenied","readOnly":true,"eventName":"ListBuckets"}`,
	} {
		f.Add([]byte(s))
	}
	set, err := Load("builtin")
	if err != nil {
		f.Fatal(err)
	}
	names, progs := conditionPrograms(set)
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := cloudtrail.DecodeEvent(data)
		if err != nil {
			return
		}
		checkPredicates(t, names, progs, ev, "fuzz", nil)
		var hv cloudtrail.Event
		if _, err := cloudtrail.DecodeHeader(&hv, data); err == nil {
			checkPredicates(t, names, progs, &hv, "fuzz (header)", data)
		}
	})
}

// TestFoldMatcherIsIcontains compares the compiled icontains with its
// definition, strings.Contains of both sides lowered.
func TestFoldMatcherIsIcontains(t *testing.T) {
	subs := []string{"pacu", "TruffleHog", "k", "", "s3scanner", "kelvin", "ÄWS", "ab", "b"}
	strs := []string{"", "a", "b", "K", "PACU", "xxpAcU", "pac", "aws-cli/2 Trufflehog/3", "\u212aelvin", "\u212a",
		"äws", "ÄWS", "xÄ", "s3scanneR", "Ab", "zzzzzzzzzzzzzzzab", "\xff\xfeab", "ab\xff", "\xffk",
		"Boto3/1.34 md/Botocore#1.34 ua/2.0 os/linux#5.10 pacu/1.5", "Boto3/1.34 md/Botocore#1.34 ua/2.0 os/linux#5.10 pac/1.5",
		strings.Repeat("a", 600) + "pacu", strings.Repeat("b", 511) + "k"}
	// Strings that share their length and the words foldSlot reads, so
	// share a slot of remembered answers, one holding a substring where
	// the slot's hash does not look, one not.
	for _, mid := range []string{"xxPaCuxxxxxxxx", "xxxxxxxxxxxxxx", "xxxxxxxxxxpacu"} {
		strs = append(strs, "Boto3/1.34 "+mid+" md/Botocore#1.34 ua/2.0 os/linux#5.10 linux/5.10 exec-env/x")
	}
	// Twice each, so that remembered answers are checked too.
	strs = append(strs, strs...)
	for i := range subs {
		for j := i; j <= len(subs); j++ {
			set := subs[i:j]
			m := newFoldMatcher(set)
			for _, s := range strs {
				want := false
				for _, sub := range set {
					want = want || strings.Contains(strings.ToLower(s), strings.ToLower(sub))
				}
				if got := m.match(s); got != want {
					t.Errorf("icontains(%q, %q) = %v, want %v", s, set, got, want)
				}
			}
		}
	}
}

// TestFieldsReadIgnoresTheBudget: the budget's rewriting passes $env to
// its functions, which read no field; the fields an expression needs
// decoded are those it names itself, as compiled without the budget.
func TestFieldsReadIgnoresTheBudget(t *testing.T) {
	for _, src := range []string{
		`any(requestParameters.items, {# == "a"})`,
		`str(responseElements.x) + "y" == "zy"`,
		`join([eventName], ",") == ""`,
		`len(filter(resources, {.ARN startsWith "x"})) + len(repeat(eventName, 2)) > 0`,
		`$env.requestParameters != nil`,
		`len(toJSON($env)) > 0`,
		`eventName == "A"`,
	} {
		plain, err := expr.Compile(src, exprOptions(expr.AsBool())...)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		p, err := compileCondition(src, nil)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if want := fieldsRead(plain.Node()); p.fields != want {
			t.Errorf("%s: fields %b, compiled without the budget %b", src, p.fields, want)
		}
	}
}

// valuePrograms returns every value expression of set (summary
// placeholders, dedup keys, group_by) that has a Go form (valueOf or dynOf).
func valuePrograms(set *Set) (names []string, progs []*program) {
	add := func(name string, p *program) {
		if p != nil && (p.value != nil || p.dyn != nil) {
			names, progs = append(names, name), append(progs, p)
		}
	}
	for _, r := range set.Rules() {
		if r.summary != nil {
			for _, part := range r.summary.parts {
				add(r.ID+" summary {{ "+part.src+" }}", part.program)
			}
		}
		if r.Dedup != nil {
			add(r.ID+" dedup key", r.Dedup.program)
		}
		if r.Threshold != nil {
			for i, p := range r.Threshold.programs {
				add(fmt.Sprintf("%s group_by %d", r.ID, i), p)
			}
		}
	}
	return names, progs
}

// checkValues compares each value's Go form with the VM's value: a
// string form's, which must be a string (so that every format gives it as
// is), and the value a dynOf form gives, when it gives one, which must be
// the VM's, type and all.
func checkValues(t *testing.T, names []string, progs []*program, ev *cloudtrail.Event, where string) {
	t.Helper()
	for i, p := range progs {
		if p.fields != 0 {
			if err := ev.Need(p.fields); err != nil {
				continue
			}
		}
		want, err := runVM(p, ev)
		if p.value != nil {
			if s, ok := want.(string); err != nil || !ok || s != p.value(ev) {
				t.Errorf("%s: %s: Go form gives %q, the VM %#v (err %v)", where, names[i], p.value(ev), want, err)
			}
			continue
		}
		got, ok := p.dyn(ev)
		if ok && (err != nil || !reflect.DeepEqual(got, want) || reflect.TypeOf(got) != reflect.TypeOf(want)) {
			t.Errorf("%s: %s: Go form gives %#v, the VM %#v (err %v)", where, names[i], got, want, err)
		}
	}
}

// TestValuesAgreeWithVM holds the Go form of every built-in value
// expression to the VM on the corpus and the rules' test events.
func TestValuesAgreeWithVM(t *testing.T) {
	set, err := Load("builtin")
	if err != nil {
		t.Fatal(err)
	}
	names, progs := valuePrograms(set)
	dyn := 0
	for _, p := range progs {
		if p.dyn != nil {
			dyn++
		}
	}
	if len(progs) < 100 || dyn < 50 {
		t.Errorf("only %d value expressions have a Go form, %d of them of dynOf's", len(progs), dyn)
	}
	for _, r := range set.Rules() {
		for _, tc := range r.Tests {
			for j, raw := range append(tc.Events, tc.Event) {
				if ev, err := cloudtrail.DecodeEvent(raw); raw != nil && err == nil {
					checkValues(t, names, progs, ev, fmt.Sprintf("%s test %q event %d", r.ID, tc.Name, j))
				}
			}
		}
	}
	corpus.ForEachRecord(t, func(place string, line []byte) {
		var ev cloudtrail.Event
		if _, err := cloudtrail.DecodeHeader(&ev, line); err == nil {
			checkValues(t, names, progs, &ev, place)
		}
	})
	for _, c := range []struct {
		src  string
		fast bool
	}{
		{`eventName`, true},
		{`userIdentity.sessionContext.sessionIssuer.userName`, true},
		{`principal(userIdentity)`, true},
		{`userIdentity.userName ?? principal(userIdentity)`, true},
		{`userIdentity.userName ?? userIdentity.arn ?? "someone"`, true},
		{`"x"`, true},
		{`readOnly`, false},
		{`principal(userIdentity.sessionContext)`, false},
		{`requestParameters.bucketName`, false},
		{`requestParameters.bucketName ?? eventName`, false},
		{`eventName + "x"`, false},
	} {
		p, err := compileValue(c.src, nil)
		if err != nil {
			if !c.fast {
				continue // principal of a sessionContext does not type-check, say
			}
			t.Fatalf("%s: %v", c.src, err)
		}
		if (p.value != nil) != c.fast {
			t.Errorf("%s: Go form %v, want %v", c.src, p.value != nil, c.fast)
		}
	}
	for _, c := range []struct {
		src string
		dyn bool
	}{
		{`requestParameters.bucketName`, true},
		{`requestParameters.a.b ?? responseElements.c ?? "-"`, true},
		{`requestParameters.bucketName ?? eventName`, true},
		{`eventName + "x"`, true},
		{`errorCode != "" ? " (failed: " + errorCode + ")" : ""`, true},
		{`requestParameters.x != nil ? "for " + str(requestParameters.x) : ""`, true},
		{`readOnly`, false},
		{`requestParameters.items[0]`, false},
		{`len(requestParameters)`, false},
	} {
		p, err := compileValue(c.src, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		if (p.dyn != nil) != c.dyn {
			t.Errorf("%s: dynOf form %v, want %v", c.src, p.dyn != nil, c.dyn)
		}
	}
}

// FuzzValues holds the Go form of every built-in value expression
// (summary placeholders, dedup keys, group_by) to the VM on arbitrary
// records.
func FuzzValues(f *testing.F) {
	for _, s := range []string{
		`{"eventName":"RunInstances","requestParameters":{"instanceId":"i-1","name":["a"],"path":null},"errorCode":"X"}`,
		`{"eventName":"GetSecretValue","requestParameters":{"secretId":1.5e300,"a":{"b":[1,{"c":2}]}},"responseElements":null}`,
		`{"eventName":"CreateRoute","requestParameters":"{\"destinationCidrBlock\":\"0.0.0.0/0\"}","userIdentity":{"arn":"a"}}`,
	} {
		f.Add([]byte(s))
	}
	set, err := Load("builtin")
	if err != nil {
		f.Fatal(err)
	}
	names, progs := valuePrograms(set)
	f.Fuzz(func(t *testing.T, data []byte) {
		if ev, err := cloudtrail.DecodeEvent(data); err == nil {
			checkValues(t, names, progs, ev, "fuzz")
		}
		var hv cloudtrail.Event
		if _, err := cloudtrail.DecodeHeader(&hv, data); err == nil {
			checkValues(t, names, progs, &hv, "fuzz (header)")
		}
	})
}
