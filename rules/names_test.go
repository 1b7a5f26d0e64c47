package rules

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

const listsAndMacros = `lists:
  allowed_regions: [us-east-1, eu-west-1]
  sensitive_ports: [22, 3389]
  break_glass: ["arn:aws:iam::111122223333:user/breakglass"]
macros:
  succeeded: errorCode == ""
  opens_sensitive_port: >
    any(requestParameters.ipPermissions.items,
        let p = #; any(sensitive_ports, portInRange(#, p.fromPort, p.toPort)))
rules:
  - id: outside-regions
    title: Call outside the allowed regions
    severity: medium
    when: succeeded && awsRegion not in allowed_regions
    except: userIdentity.arn in break_glass
    summary: "{{ eventName }} in {{ awsRegion }} (allowed: {{ allowed_regions }})"
  - id: sensitive-port
    title: Sensitive port opened
    severity: high
    when: eventName == "AuthorizeSecurityGroupIngress" && succeeded && opens_sensitive_port
    except:
      - sourceIPAddress == "10.0.0.1"
      - userAgent == "terraform"
`

func matchIDs(t *testing.T, set *Set, rec string) string {
	t.Helper()
	ev, err := cloudtrail.DecodeEvent([]byte(rec))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range set.Match(ev, nil, func(me MatchError) { t.Errorf("rule %s: %v", me.Rule.ID, me.Err) }) {
		ids = append(ids, r.ID)
	}
	return strings.Join(ids, ",")
}

func TestListsMacrosExcept(t *testing.T) {
	set, err := LoadFiles([]File{{Name: "n.yaml", Data: []byte(listsAndMacros)}})
	if err != nil {
		t.Fatal(err)
	}
	ingress := func(port int, ip, ua string) string {
		return fmt.Sprintf(`{"eventVersion":"1","eventName":"AuthorizeSecurityGroupIngress","awsRegion":"us-east-1","sourceIPAddress":%q,"userAgent":%q,
		  "requestParameters":{"ipPermissions":{"items":[{"fromPort":%d,"toPort":%d}]}}}`, ip, ua, port, port)
	}
	tests := []struct{ name, rec, want string }{
		{"region allowed", `{"eventVersion":"1","eventName":"RunInstances","awsRegion":"eu-west-1"}`, ""},
		{"region not allowed", `{"eventVersion":"1","eventName":"RunInstances","awsRegion":"ap-south-1"}`, "outside-regions"},
		{"failed call", `{"eventVersion":"1","eventName":"RunInstances","awsRegion":"ap-south-1","errorCode":"X"}`, ""},
		{"break-glass user excepted", `{"eventVersion":"1","eventName":"RunInstances","awsRegion":"ap-south-1","userIdentity":{"arn":"arn:aws:iam::111122223333:user/breakglass"}}`, ""},
		{"ssh opened", ingress(22, "1.2.3.4", "cli"), "sensitive-port"},
		{"https opened", ingress(443, "1.2.3.4", "cli"), ""},
		{"excepted by ip", ingress(3389, "10.0.0.1", "cli"), ""},
		{"excepted by agent", ingress(3389, "1.2.3.4", "terraform"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := matchIDs(t, set, tt.rec); got != tt.want {
				t.Errorf("matched %q, want %q", got, tt.want)
			}
		})
	}
	if got := set.Rule("sensitive-port").Index().EventNames; len(got) != 1 {
		t.Errorf("a macro in the condition must not hide the eventName index: %v", got)
	}
	ev, _ := cloudtrail.DecodeEvent([]byte(`{"eventVersion":"1","eventName":"RunInstances","awsRegion":"ap-south-1"}`))
	if s := set.Rule("outside-regions").Summary(ev); s != `RunInstances in ap-south-1 (allowed: ["us-east-1","eu-west-1"])` {
		t.Errorf("summary = %q", s)
	}
}

func TestListOverride(t *testing.T) {
	files := []File{{Name: "n.yaml", Data: []byte(listsAndMacros)}}
	set, err := loadFilesWith(files, Options{Lists: map[string][]any{"allowed_regions": {"ap-south-1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := matchIDs(t, set, `{"eventVersion":"1","eventName":"RunInstances","awsRegion":"ap-south-1"}`); got != "" {
		t.Errorf("overridden list: matched %q, want nothing", got)
	}
	if got := matchIDs(t, set, `{"eventVersion":"1","eventName":"RunInstances","awsRegion":"us-east-1"}`); got != "outside-regions" {
		t.Errorf("overridden list: matched %q, want outside-regions", got)
	}
	_, err = loadFilesWith(files, Options{Lists: map[string][]any{"allowed_regons": {"x"}}})
	var list ErrorList
	if !errors.As(err, &list) || !strings.Contains(err.Error(), `"allowed_regons" overrides no list`) {
		t.Errorf("a misspelt override must be an error, got %v", err)
	}
}

// TestMacroBodiesArePatchedLikeInlineConditions: a macro's body is
// substituted before the compile patches run, so it is nil-safe, its `??`
// falls back on empty typed strings, and its loops are step-counted, exactly
// as the same condition written in the rule.
func TestMacroBodiesArePatchedLikeInlineConditions(t *testing.T) {
	const file = `macros:
  nested_x: requestParameters.a.b == "x"
  caller_is_p: (userIdentity.arn ?? userIdentity.principalId) == "P"
rules:
  - id: macro-nested
    title: t
    severity: low
    when: eventName == "E" && nested_x
  - id: inline-nested
    title: t
    severity: low
    when: eventName == "E" && requestParameters.a.b == "x"
  - id: macro-fallback
    title: t
    severity: low
    when: eventName == "F" && caller_is_p
  - id: inline-fallback
    title: t
    severity: low
    when: eventName == "F" && (userIdentity.arn ?? userIdentity.principalId) == "P"
`
	set, err := LoadFiles([]File{{Name: "m.yaml", Data: []byte(file)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ rec, want string }{
		{`{"eventVersion":"1","eventName":"E","requestParameters":{}}`, ""},
		{`{"eventVersion":"1","eventName":"E"}`, ""},
		{`{"eventVersion":"1","eventName":"E","requestParameters":{"a":{"b":"x"}}}`, "macro-nested,inline-nested"},
		{`{"eventVersion":"1","eventName":"F","userIdentity":{"principalId":"P"}}`, "macro-fallback,inline-fallback"},
		{`{"eventVersion":"1","eventName":"F","userIdentity":{"arn":"A","principalId":"P"}}`, ""},
	} {
		// matchIDs fails the test on any evaluation error.
		if got := matchIDs(t, set, tt.rec); got != tt.want {
			t.Errorf("%s: matched %q, want %q", tt.rec, got, tt.want)
		}
	}

	// A loop in a macro is counted against the evaluation budget of the
	// rule that uses it: 1,100² steps are over EvalBudget.
	const loops = `macros:
  squares: 'any(requestParameters.items, any(requestParameters.items, # == "never"))'
rules:
  - id: macro-loop
    title: t
    severity: low
    when: eventName == "E" && squares
  - id: inline-loop
    title: t
    severity: low
    when: 'eventName == "E" && any(requestParameters.items, any(requestParameters.items, # == "never"))'
`
	set, err = LoadFiles([]File{{Name: "l.yaml", Data: []byte(loops)}})
	if err != nil {
		t.Fatal(err)
	}
	items := strings.Repeat(`"a",`, 1100)
	ev, err := cloudtrail.DecodeEvent([]byte(`{"eventVersion":"1","eventName":"E","requestParameters":{"items":[` + items[:len(items)-1] + `]}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"macro-loop", "inline-loop"} {
		if _, err := set.Rule(id).Eval(ev); !errors.Is(err, ErrBudget) {
			t.Errorf("%s: 1,210,000 steps gave %v, want ErrBudget", id, err)
		}
	}
}

// TestLetVariablesAreNotSubstituted: a list or macro named like a `let`
// variable leaves the variable alone. Substitution replaces names that
// refer to lists and macros; inside `let p = ...; body`, p in body refers
// to the variable (the built-in packs' conditions use doc, acct, from and
// to), and the initializer still sees the list.
func TestLetVariablesAreNotSubstituted(t *testing.T) {
	const src = `lists:
  p: [x]
  ports: [22]
macros:
  acct: recipientAccountId == "999999999999"
rules:
  - id: let-shadows-list
    title: t
    severity: low
    when: (let p = eventName; p == "RunInstances") && "x" in p
  - id: let-shadows-macro
    title: t
    severity: low
    when: let acct = recipientAccountId; acct == "111122223333" && !(let x = 1; acct == "999999999999")
  - id: nested
    title: t
    severity: low
    when: let q = ports; (let p = q; 22 in p) && p[0] == "x"
`
	set, err := loadFilesWith([]File{{Name: "l.yaml", Data: []byte(src)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := matchIDs(t, set, `{"eventVersion":"1","eventName":"RunInstances","recipientAccountId":"111122223333"}`)
	if got != "let-shadows-list,let-shadows-macro,nested" {
		t.Errorf("matched %q, want all three rules: a let variable was replaced by the list or macro of its name", got)
	}
}
