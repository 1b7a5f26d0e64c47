package rules

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

func evalOn(t *testing.T, src, record string) bool {
	t.Helper()
	c, err := CompileCondition(src)
	if err != nil {
		t.Fatalf("compile %q: %v", src, err)
	}
	ev, err := cloudtrail.DecodeEvent([]byte(record))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	ok, err := c.Eval(ev)
	if err != nil {
		t.Fatalf("eval %q: %v", src, err)
	}
	return ok
}

func TestHelperFunctions(t *testing.T) {
	rec := `{"eventVersion":"1.08","eventID":"x","eventName":"AuthorizeSecurityGroupIngress",
	  "sourceIPAddress":"10.1.2.3","userAgent":"Boto3/1.34 Python/3.12",
	  "userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/Admin/alice"},
	  "requestParameters":{"ipPermissions":{"items":[{"ipProtocol":"tcp","fromPort":22,"toPort":22,
	    "ipRanges":{"items":[{"cidrIp":"0.0.0.0/0"}]}}]},
	    "policyDocument":"%7B%22Statement%22%3A%5B%5D%7D","actions":"s3:GetObject"}}`
	tests := []struct {
		expr string
		want bool
	}{
		{`inCIDR(sourceIPAddress, "10.0.0.0/8")`, true},
		{`inCIDR(sourceIPAddress, "192.168.0.0/16", "10.1.2.3")`, true},
		{`inCIDR(sourceIPAddress, "192.168.0.0/16")`, false},
		{`inCIDR("ec2.amazonaws.com", "0.0.0.0/0")`, false},
		{`inCIDR("253.252.51.07", "0.0.0.0/0")`, false},
		{`inCIDR(sourceIPAddress, "not-a-cidr")`, false},
		{`isIP(sourceIPAddress)`, true},
		{`isIP("AWS Internal")`, false},
		{`isPrivateIP(sourceIPAddress)`, true},
		{`isPrivateIP("8.8.8.8")`, false},
		{`isPrivateIP("100.64.1.1")`, true},
		{`glob(eventName, "Authorize*")`, true},
		{`glob(eventName, "Revoke*", "*Ingress")`, true},
		{`glob(eventName, "Authorize?")`, false},
		{`glob(userIdentity.arn, "arn:aws:sts::*:assumed-role/Admin/*")`, true},
		{`glob("a[b]", "a[b]")`, true},
		{`iglob(userAgent, "boto3/*")`, true},
		{`iequals(userIdentity.type, "assumedrole")`, true},
		{`icontains(userAgent, "PYTHON")`, true},
		{`icontains(userAgent, ["nmap", "PYTHON"])`, true},
		{`icontains(userAgent, "nmap", "kali")`, false},
		{`icontains(userAgent, [])`, false},
		{`any(requestParameters.ipPermissions.items, any(toList(#.ipRanges?.items), isOpenCIDR(#.cidrIp)))`, true},
		{`any(requestParameters.ipPermissions.items, portInRange(22, #.fromPort, #.toPort))`, true},
		{`any(requestParameters.ipPermissions.items, portInRange(3389, #.fromPort, #.toPort))`, false},
		{`portInRange(443, -1, -1)`, true},
		{`"s3:GetObject" in toList(requestParameters.actions)`, true},
		{`len(toList(requestParameters.missing)) == 0`, true},
		{`dig(requestParameters, "ipPermissions.items[0].ipRanges.items[0].cidrIp") == "0.0.0.0/0"`, true},
		{`dig(requestParameters, "ipPermissions.items[7].x") == nil`, true},
		{`urlDecode(requestParameters.policyDocument) == '{"Statement":[]}'`, true},
		{`arnAccount(userIdentity.arn) == "111122223333"`, true},
		{`arnService(userIdentity.arn) == "sts"`, true},
		{`arnResource(userIdentity.arn) == "assumed-role/Admin/alice"`, true},
		{`arnAccount("garbage") == ""`, true},
		{`str(requestParameters.ipPermissions.items[0].fromPort) == "22"`, true},
		{`requestParameters.no.such.path == nil`, true},
		{`responseElements.ConsoleLogin == nil`, true},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			if got := evalOn(t, tt.expr, rec); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTemplate(t *testing.T) {
	ev, _ := cloudtrail.DecodeEvent([]byte(`{"eventVersion":"1.08","eventID":"x","eventTime":"2024-05-01T08:00:00Z",
	  "sourceIPAddress":"1.2.3.4","userAgent":"evil\nnewline","responseElements":{"ConsoleLogin":"Success","n":3}}`))
	tests := []struct{ tmpl, want string }{
		{`Sign-in from {{ sourceIPAddress }}: {{ responseElements?.ConsoleLogin }}`, `Sign-in from 1.2.3.4: Success`},
		{`{{responseElements.n}} at {{ eventTime }}`, `3 at 2024-05-01T08:00:00Z`},
		{`missing: {{ requestParameters.x }} / {{ errorCode }}.`, `missing: - / .`},
		{`agent {{ userAgent }}`, `agent evil newline`},
		{`no placeholders`, `no placeholders`},
		{`{{ responseElements }}`, `{"ConsoleLogin":"Success","n":3}`},
	}
	for _, tt := range tests {
		t.Run(tt.tmpl, func(t *testing.T) {
			if got := renderTemplate(t, tt.tmpl, ev); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	for _, bad := range []string{`{{ }}`, `{{ x`, `a }} b`, `{{ eventNmae }}`} {
		if _, err := parseTemplate(bad); err == nil {
			t.Errorf("parseTemplate(%q) succeeded, want an error", bad)
		}
	}
}

// TestRuntimeErrorIsCountedNotFatal checks that a rule whose expression
// fails on one event reports the error, counts it, and still matches the
// next event.
func TestRuntimeErrorIsCountedNotFatal(t *testing.T) {
	set, err := LoadFiles([]File{{Name: "r.yaml", Data: []byte(`rules:
  - id: compare
    title: t
    severity: low
    when: requestParameters.maxResults > 5
`)}})
	if err != nil {
		t.Fatal(err)
	}
	bad, _ := cloudtrail.DecodeEvent([]byte(`{"eventVersion":"1","requestParameters":{"maxResults":"many"}}`))
	good, _ := cloudtrail.DecodeEvent([]byte(`{"eventVersion":"1","requestParameters":{"maxResults":10}}`))
	var errs []MatchError
	if got := set.Match(bad, nil, func(me MatchError) { errs = append(errs, me) }); len(got) != 0 || len(errs) != 1 {
		t.Fatalf("bad event: matched %d, errors %d; want 0 and 1", len(got), len(errs))
	}
	if got := set.Match(good, nil, nil); len(got) != 1 {
		t.Fatalf("good event after an error: matched %d, want 1", len(got))
	}
	m, e := set.Rule("compare").Stats()
	if m != 1 || e != 1 {
		t.Errorf("stats = %d matches, %d errors; want 1, 1", m, e)
	}
}

func TestIndexMatchesUnindexedEvaluation(t *testing.T) {
	set, err := LoadFiles([]File{{Name: "r.yaml", Data: []byte(`rules:
  - {id: a, title: a, severity: low, when: 'eventName == "A" && errorCode == ""'}
  - {id: b, title: b, severity: low, when: 'eventName in ["A", "B"] || eventName == "C"'}
  - {id: c, title: c, severity: low, when: 'errorCode != ""'}
  - {id: d, title: d, severity: low, when: 'not (eventName == "A")'}
  - {id: e, title: e, severity: low, when: '(eventName == "A" || readOnly) && eventSource == "s"'}
  - {id: f, title: f, severity: low, when: 'errorCode == "AccessDenied" && eventSource == "s"'}
  - {id: g, title: g, severity: low, when: 'eventName == "B" && eventSource == "s"'}
  - {id: h, title: h, severity: low, when: 'eventSource == "s"'}
`)}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"a": {"A"}, "b": {"A", "B", "C"}, "c": nil, "d": nil, "e": nil, "f": nil, "g": {"B"}, "h": nil}
	for id, names := range want {
		got := set.Rule(id).Index().EventNames
		if len(got) != len(names) {
			t.Errorf("rule %s indexed on %v, want %v", id, got, names)
		}
	}
	for _, name := range []string{"A", "B", "C", "D"} {
		for _, code := range []string{"", "AccessDenied"} {
			ev, _ := cloudtrail.DecodeEvent([]byte(`{"eventVersion":"1","eventName":"` + name + `","eventSource":"s","errorCode":"` + code + `"}`))
			viaIndex := map[string]bool{}
			var order, direct []string
			for _, r := range set.Match(ev, nil, nil) {
				viaIndex[r.ID] = true
				order = append(order, r.ID)
			}
			for _, r := range set.Rules() {
				ok, _ := r.Eval(ev)
				if ok != viaIndex[r.ID] {
					t.Errorf("event %s/%q rule %s: direct %v, through index %v", name, code, r.ID, ok, viaIndex[r.ID])
				}
				if ok {
					direct = append(direct, r.ID)
				}
			}
			// In load order, whichever lists the rules came from.
			if !slices.Equal(order, direct) {
				t.Errorf("event %s/%q: matched %v, want load order %v", name, code, order, direct)
			}
		}
	}
}

func TestPatternRules(t *testing.T) {
	set, err := LoadFiles([]File{{Name: "p.yaml", Data: []byte(`rules:
  - id: failed-console
    title: Console sign-in failure
    severity: medium
    pattern: '{ ($.eventName = ConsoleLogin) && ($.errorMessage = "Failed authentication") }'
  - id: no-mfa
    title: No MFA
    severity: medium
    pattern: '{ ($.eventName = "ConsoleLogin") && ($.additionalEventData.MFAUsed != "Yes") }'
  - id: unauthorized
    title: Unauthorized
    severity: low
    pattern: '{($.errorCode="*UnauthorizedOperation") || ($.errorCode="AccessDenied*")}'
`)}})
	if err != nil {
		t.Fatal(err)
	}
	if got := set.Rule("failed-console").Index().EventNames; len(got) != 1 || got[0] != "ConsoleLogin" {
		t.Errorf("pattern rule indexed on %v, want [ConsoleLogin]", got)
	}
	if got := set.Rule("unauthorized").Index().EventNames; len(got) != 0 {
		t.Errorf("unauthorized indexed on %v, want every event", got)
	}
	tests := []struct {
		rec  string
		want []string
	}{
		{`{"eventVersion":"1","eventName":"ConsoleLogin","errorMessage":"Failed authentication","additionalEventData":{"MFAUsed":"No"}}`, []string{"failed-console", "no-mfa"}},
		{`{"eventVersion":"1","eventName":"ConsoleLogin","additionalEventData":{"MFAUsed":"Yes"}}`, nil},
		{`{"eventVersion":"1","eventName":"ConsoleLogin"}`, nil},
		{`{"eventVersion":"1","eventName":"RunInstances","errorCode":"Client.UnauthorizedOperation"}`, []string{"unauthorized"}},
		{`{"eventVersion":"1","eventName":"GetObject","errorCode":"AccessDenied"}`, []string{"unauthorized"}},
	}
	for _, tt := range tests {
		ev, err := cloudtrail.DecodeEvent([]byte(tt.rec))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range set.Match(ev, nil, nil) {
			got = append(got, r.ID)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s: matched %v, want %v", tt.rec, got, tt.want)
		}
	}
}

func TestHelpersTakeLists(t *testing.T) {
	set, err := LoadFiles([]File{{Name: "l.yaml", Data: []byte(`lists:
  office: ["10.0.0.0/8", "192.0.2.0/24"]
  names: ["Delete*", "Stop*"]
rules:
  - {id: a, title: a, severity: low, when: 'inCIDR(sourceIPAddress, office) && glob(eventName, names, "Other")'}
`)}})
	if err != nil {
		t.Fatal(err)
	}
	for rec, want := range map[string]int{
		`{"eventVersion":"1","eventName":"StopLogging","sourceIPAddress":"192.0.2.9"}`:    1,
		`{"eventVersion":"1","eventName":"StopLogging","sourceIPAddress":"198.51.100.1"}`: 0,
		`{"eventVersion":"1","eventName":"StartLogging","sourceIPAddress":"10.1.1.1"}`:    0,
	} {
		ev, _ := cloudtrail.DecodeEvent([]byte(rec))
		if got := len(set.Match(ev, nil, nil)); got != want {
			t.Errorf("%s: %d matches, want %d", rec, got, want)
		}
	}
}

func TestIndexOnErrorCode(t *testing.T) {
	set, err := LoadFiles([]File{{Name: "e.yaml", Data: []byte(`rules:
  - {id: a, title: a, severity: low, when: 'errorCode in ["AccessDenied", "Client.UnauthorizedOperation"]'}
  - {id: b, title: b, severity: low, when: 'errorCode == "ThrottlingException" && readOnly'}
  - {id: c, title: c, severity: low, when: 'errorCode == "" && eventSource == "s3.amazonaws.com"'}
  - {id: d, title: d, severity: low, when: 'eventName == "X" && errorCode == "AccessDenied"'}
`)}})
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"a": "AccessDenied,Client.UnauthorizedOperation", "b": "ThrottlingException", "c": "", "d": ""} {
		if got := strings.Join(set.Rule(id).Index().ErrorCodes, ","); got != want {
			t.Errorf("rule %s indexed on errorCode %q, want %q", id, got, want)
		}
	}
	for rec, want := range map[string]string{
		`{"eventVersion":"1","eventName":"X","errorCode":"AccessDenied"}`:                        "a,d",
		`{"eventVersion":"1","eventName":"Y","errorCode":"ThrottlingException","readOnly":true}`: "b",
		`{"eventVersion":"1","eventName":"Y","eventSource":"s3.amazonaws.com"}`:                  "c",
	} {
		ev, _ := cloudtrail.DecodeEvent([]byte(rec))
		var ids []string
		for _, r := range set.Match(ev, nil, nil) {
			ids = append(ids, r.ID)
		}
		if got := strings.Join(ids, ","); got != want {
			t.Errorf("%s matched %q, want %q", rec, got, want)
		}
	}
}

// TestDocsListEveryHelper checks that docs/rules.md's helper table lists
// every registered helper, and nothing that is not one.
func TestDocsListEveryHelper(t *testing.T) {
	data, err := os.ReadFile("../docs/rules.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := documentedHelpers(t, string(data))
	registered := map[string]bool{}
	for _, n := range helperNames() {
		registered[n] = true
		if !documented[n] {
			t.Errorf("helper %s is not in docs/rules.md's \"### Helper functions\" table", n)
		}
	}
	for n := range documented {
		if !registered[n] {
			t.Errorf("docs/rules.md documents a helper %s that rules does not register", n)
		}
	}
}

// documentedHelpers returns every function name in the first column of
// the table under "### Helper functions" (a cell may name several:
// "`arnAccount(arn)` / `arnService` / `arnResource`").
func documentedHelpers(t *testing.T, doc string) map[string]bool {
	t.Helper()
	_, section, ok := strings.Cut(doc, "\n### Helper functions\n")
	if !ok {
		t.Fatal(`docs/rules.md has no "### Helper functions" section`)
	}
	if i := strings.Index(section, "\n#"); i >= 0 {
		section = section[:i]
	}
	name := regexp.MustCompile("`([A-Za-z_][A-Za-z0-9_]*)")
	out := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") {
			continue
		}
		for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
			out[m[1]] = true
		}
	}
	if len(out) == 0 {
		t.Fatal("found no helper in docs/rules.md's helper table")
	}
	return out
}

// TestHelperNamesAreReserved checks that no list or macro may take a
// helper's name, for every helper in the table.
func TestHelperNamesAreReserved(t *testing.T) {
	for _, n := range helperNames() {
		for _, kind := range []string{"lists", "macros"} {
			value := "[a]"
			if kind == "macros" {
				value = `eventName == "x"`
			}
			src := fmt.Sprintf("%s:\n  %s: %s\nrules:\n  - {id: r, title: t, severity: low, when: 'eventName == \"A\"'}\n", kind, n, value)
			_, err := LoadFiles([]File{{Name: "x.yaml", Data: []byte(src)}})
			if err == nil || !strings.Contains(err.Error(), "helper function name") {
				t.Errorf("%s named %q: got %v, want an error that it is a helper function name", kind, n, err)
			}
		}
	}
}

// TestEveryHelperCompiles checks that each registered helper can be called
// from a rule expression with its first signature's argument count.
func TestEveryHelperCompiles(t *testing.T) {
	for _, n := range helperNames() {
		sig := reflect.TypeOf(helperTable[n].types[0]).Elem()
		args := make([]string, sig.NumIn())
		for i := range args {
			args[i] = "nil"
			if sig.In(i).Kind() == reflect.String {
				args[i] = `"x"`
			}
			if sig.IsVariadic() && i == len(args)-1 {
				args[i] = `"y"`
			}
		}
		src := fmt.Sprintf("%s(%s) != nil", n, strings.Join(args, ", "))
		if _, err := CompileCondition(src); err != nil {
			t.Errorf("%s: %v", src, err)
		}
	}
}

// TestOneLine checks the summary folding against its definition,
// strings.Join(strings.Fields(s), " ").
func TestOneLine(t *testing.T) {
	for _, s := range []string{"", " ", "a", "a b", " a", "a ", "a  b", "a\nb", "a\tb", "a\u00a0b", "a\u0085", "\u2028a", "é b", "a\xffb", "\xff ", "a \n b", "abc def ghi"} {
		if got, want := oneLine(s), strings.Join(strings.Fields(s), " "); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", s, got, want)
		}
	}
}

// FuzzOneLine checks the summary folding against its definition on
// arbitrary strings.
func FuzzOneLine(f *testing.F) {
	f.Add("a  b\n c\u00a0")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := oneLine(s), strings.Join(strings.Fields(s), " "); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", s, got, want)
		}
	})
}

// FuzzContainsFold checks icontains' allocation-free search against its
// definition, strings.Contains of the lowered strings.
func FuzzContainsFold(f *testing.F) {
	f.Add("Mozilla/5.0 (compatible; Nmap Scripting Engine)", "nmap")
	f.Add("aaab", "AAB")
	f.Add("İstanbul", "i")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, s, sub string) {
		var buf [8]byte
		lower, ascii := appendLowerASCII(buf[:0], s)
		if got, want := containsFold(s, lower, ascii, sub), strings.Contains(strings.ToLower(s), strings.ToLower(sub)); got != want {
			t.Errorf("containsFold(%q, %q) = %v, want %v", s, sub, got, want)
		}
	})
}

// TestNameTable checks the index's eventName table against a map: every
// name filed finds its rules, any other name none, for names short and
// long, alike at both ends, and empty.
func TestNameTable(t *testing.T) {
	byName := map[string][]*Rule{}
	var names []string
	for i := range 300 {
		names = append(names, fmt.Sprintf("Describe%dInstances", i), fmt.Sprintf("%c", 'A'+i%26)+strings.Repeat("x", i%20))
	}
	names = append(names, "", "GetObject", "GetObjectAcl", "PutObject", "12345678", "1234567")
	for i, n := range names {
		byName[n] = append(byName[n], &Rule{ID: fmt.Sprint(i)})
	}
	tab := newNameTable(byName)
	for _, n := range append(names, "Describe300Instances", "GetObjectAc", "ZZZ", "x", "123456789") {
		if got, want := tab.get(n), byName[n]; !slices.Equal(got, want) {
			t.Errorf("get(%q) = %v, want %v", n, got, want)
		}
	}
}

// TestNameTableTags: every name filed is found with its rules, and a
// million names that are not (among them, by chance, some with a filed
// name's 16-bit tag on their probe path) are not.
func TestNameTableTags(t *testing.T) {
	byName := map[string][]*Rule{}
	for i := range 3000 {
		name := fmt.Sprintf("Name%dCall", i*7919)
		byName[name] = []*Rule{{ID: name}}
	}
	tab := newNameTable(byName)
	for name, rules := range byName {
		if got := tab.get(name); len(got) != 1 || got[0] != rules[0] {
			t.Fatalf("get(%q) = %v, want its rule", name, got)
		}
	}
	for i := range 1000000 {
		name := fmt.Sprintf("Other%dCall", i)
		if got := tab.get(name); got != nil {
			t.Fatalf("get(%q) = %v, want none", name, got)
		}
	}
	if got := tab.get(""); got != nil {
		t.Fatalf(`get("") = %v`, got)
	}
}
