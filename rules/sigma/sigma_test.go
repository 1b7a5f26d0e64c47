package sigma

import (
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The vectors come from pySigma's own tests (tests/test_modifiers.py).
func TestBase64Offsets(t *testing.T) {
	got := base64Offsets("foobar")
	want := []string{"Zm9vYmFy", "Zvb2Jhc", "mb29iYX"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("base64Offsets(foobar) = %v, want %v", got, want)
	}
}

func TestParsePattern(t *testing.T) {
	tests := []struct {
		in, regex string
		lit       string
		isLit     bool
	}{
		{`abc`, `(?is)^abc$`, "abc", true},
		{`a*b?c`, `(?is)^a.*b.c$`, "", false},
		{`a\*b\?c\\d`, `(?is)^a\*b\?c\\d$`, `a*b?c\d`, true},
		{`C:\Windows\*`, `(?is)^C:\\Windows\*$`, `C:\Windows*`, true},
		{`trailing\`, `(?is)^trailing\\$`, `trailing\`, true},
		{`1.2.3.4`, `(?is)^1\.2\.3\.4$`, "1.2.3.4", true},
	}
	for _, tt := range tests {
		p := parsePattern(tt.in)
		if got := p.regex(false); got != tt.regex {
			t.Errorf("regex(%q) = %q, want %q", tt.in, got, tt.regex)
		}
		lit, ok := p.literal()
		if ok != tt.isLit || lit != tt.lit {
			t.Errorf("literal(%q) = %q, %v; want %q, %v", tt.in, lit, ok, tt.lit, tt.isLit)
		}
	}
	if !parsePattern("**").matchesEmpty() || parsePattern("*a").matchesEmpty() {
		t.Error("matchesEmpty")
	}
}

func TestConditionPrecedence(t *testing.T) {
	det := map[string]string{"a": "A", "b": "B", "c": "C", "sel_1": "S1", "sel_2": "S2", "_x": "X"}
	order := []string{"a", "b", "c", "sel_1", "sel_2", "_x"}
	tests := []struct{ cond, want string }{
		{"a or b and c", "(A) || (B) && (C)"},
		{"not a and b", "!((A)) && (B)"},
		{"not (a or b)", "!(((A) || (B)))"},
		{"1 of sel_*", "((S1) || (S2))"},
		{"all of sel_*", "((S1) && (S2))"},
		{"any of them", "((A) || (B) || (C) || (S1) || (S2))"},
		{"1 of _*", "((X))"},
		{"a and not 1 of sel*", "(A) && !(((S1) || (S2)))"},
	}
	for _, tt := range tests {
		got, _, err := compileCondition(tt.cond, det, order)
		if err != nil || got != tt.want {
			t.Errorf("%q = %q, %v; want %q", tt.cond, got, err, tt.want)
		}
	}
	for cond, msg := range map[string]string{
		"a and":           "the condition ends",
		"a b":             `unexpected "b"`,
		"1 of nothing*":   "names no search identifier",
		"a | count() > 1": "aggregations in conditions",
		"(a":              "missing `)`",
		"a)":              "unexpected \")\"",
		"sel_*":           "needs a quantifier",
		"zzz":             `"zzz" is not defined`,
		"all of":          "must be followed",
		"":                "empty",
	} {
		_, _, err := compileCondition(cond, det, order)
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: got %v, want an error containing %q", cond, err, msg)
		}
	}
}

func TestConvertTag(t *testing.T) {
	for in, want := range map[string]string{
		"attack.t1562.008":       "attack:T1562.008",
		"attack.defense-evasion": "attack:defense-evasion",
		"attack.s0002":           "attack:S0002",
		"cve.2021-44228":         "cve:2021-44228",
		"detection.emerging":     "detection:emerging",
		"plain":                  "plain",
	} {
		if got := convertTag(in); got != want {
			t.Errorf("convertTag(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsRule(t *testing.T) {
	for src, want := range map[string]bool{
		"title: x\nlogsource: {product: aws}\ndetection: {sel: {a: b}, condition: sel}\n": true,
		"rules: []\n":                     false,
		"lists: {a: [1]}\ndetection: x\n": false,
		"- a\n":                           false,
		"title: correlation\ncorrelation: {type: event_count}\n": true,
	} {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
			t.Fatal(err)
		}
		if got := IsRule(doc.Content[0]); got != want {
			t.Errorf("IsRule(%q) = %v, want %v", src, got, want)
		}
	}
}

// TestConvertKeepsPlaces checks that the translated rule's nodes point
// into the Sigma file, so the loader's later errors land on the right line.
func TestConvertKeepsPlaces(t *testing.T) {
	src := `title: T
id: 0B6F3A52-7C1E-4D2A-9F8E-5A4B3C2D1E99
logsource: {product: aws, service: cloudtrail}
detection:
    sel:
        eventName: X
    condition: sel
level: informational
x-trailwatch:
    summary: "{{ eventName }}"
`
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	type ev struct {
		EventName string `expr:"eventName"`
	}
	rule, id, errs := Convert(doc.Content[0], Options{Event: reflect.TypeOf(ev{}), FileName: "t.yml"})
	if len(errs) > 0 || id != "0b6f3a52-7c1e-4d2a-9f8e-5a4b3c2d1e99" {
		t.Fatalf("id %q, errs %v", id, errs)
	}
	got := map[string]*yaml.Node{}
	for i := 0; i+1 < len(rule.Content); i += 2 {
		got[rule.Content[i].Value] = rule.Content[i+1]
	}
	for key, line := range map[string]int{"id": 2, "title": 1, "when": 7, "severity": 8, "summary": 10} {
		if got[key] == nil || got[key].Line != line {
			t.Errorf("%s at %v, want line %d", key, got[key], line)
		}
	}
	if got["severity"].Value != "info" || got["when"].Value != `eventName == "X"` {
		t.Errorf("severity %q, when %q", got["severity"].Value, got["when"].Value)
	}
}
