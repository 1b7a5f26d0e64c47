package rules

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"github.com/trailwatch/trailwatch/internal/corpus"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// namePlaceholder reports whether a summary placeholder names something
// (a principal, a resource): a field path, a `??` chain of them, or
// principal()/str() of one, whose last fallback is not a literal. Such a
// placeholder must never print blank: "... denied for ." reads as a bug.
func namePlaceholder(src string) bool {
	tree, err := parser.Parse(src)
	if err != nil {
		return false
	}
	var isName func(n ast.Node, last bool) bool
	isName = func(n ast.Node, last bool) bool {
		switch x := n.(type) {
		case *ast.IdentifierNode:
			return true
		case *ast.MemberNode:
			return isName(x.Node, false)
		case *ast.ChainNode:
			return isName(x.Node, last)
		case *ast.StringNode, *ast.IntegerNode, *ast.NilNode:
			return !last
		case *ast.BinaryNode:
			return x.Operator == "??" && isName(x.Left, false) && isName(x.Right, last)
		case *ast.CallNode:
			id, ok := x.Callee.(*ast.IdentifierNode)
			return ok && (id.Value == "principal" || id.Value == "str") && len(x.Arguments) == 1 && isName(x.Arguments[0], last)
		}
		return false
	}
	return isName(tree.Node, true)
}

// identityVariants returns the record with other kinds of caller: an AWS
// service (no arn, no principal id), a role session, a federated user
// without userName. A rule that still matches must still name them.
func identityVariants(record json.RawMessage) []json.RawMessage {
	var m map[string]any
	if json.Unmarshal(record, &m) != nil {
		return nil
	}
	out := []json.RawMessage{record}
	for _, id := range []map[string]any{
		{"type": "AWSService", "invokedBy": "ec2.amazonaws.com"},
		{"type": "AssumedRole", "principalId": "AROAEXAMPLE:i-0a1b2c3d", "accountId": "444455556666",
			"sessionContext": map[string]any{"sessionIssuer": map[string]any{"type": "Role", "arn": "arn:aws:iam::444455556666:role/app"}}},
		{"type": "IAMUser", "principalId": "AIDAEXAMPLE", "accountId": "444455556666"},
	} {
		m["userIdentity"] = id
		b, _ := json.Marshal(m)
		out = append(out, b)
	}
	return out
}

// TestBuiltinSummariesNameSomeone renders every built-in rule's summary
// (and threshold group) on its own matching test records, on them with
// other kinds of caller, and on every corpus record it matches, and fails
// when a placeholder that names a principal or resource prints blank.
func TestBuiltinSummariesNameSomeone(t *testing.T) {
	set, err := Load("builtin")
	if err != nil {
		t.Fatal(err)
	}
	reported := map[string]bool{}
	check := func(r *Rule, ev *cloudtrail.Event, where string) {
		if ok, err := r.evalQuiet(ev); err != nil || !ok {
			return
		}
		if r.summary != nil {
			for _, p := range r.summary.parts {
				if p.program == nil || !namePlaceholder(p.src) {
					continue
				}
				v, err := run(p.program, ev)
				got := formatValue(v)
				if err != nil || strings.TrimSpace(got) == "" || got == "-" {
					key := r.ID + p.src
					if !reported[key] {
						reported[key] = true
						t.Errorf("%s: rule %s: {{ %s }} prints %q (%v) on %s", r.Pos, r.ID, p.src, got, err, where)
					}
				}
			}
		}
		if r.Threshold != nil {
			group, err := r.Threshold.groupFor(ev)
			for i, g := range group {
				if err != nil || g == "" {
					key := r.ID + r.Threshold.GroupBy[i]
					if !reported[key] {
						reported[key] = true
						t.Errorf("%s: rule %s: group_by %q is blank (%v) on %s", r.Pos, r.ID, r.Threshold.GroupBy[i], err, where)
					}
				}
			}
		}
	}
	for _, r := range set.Rules() {
		for _, tc := range r.Tests {
			for _, rec := range tc.records() {
				for i, variant := range identityVariants(rec) {
					ev, err := cloudtrail.DecodeEvent(variant)
					if err != nil {
						continue
					}
					where := "test " + tc.Name
					if i > 0 {
						where += " with caller " + ev.UserIdentity.Type
					}
					check(r, ev, where)
				}
			}
		}
	}
	corpus.ForEachRecord(t, func(place string, line []byte) {
		ev, err := cloudtrail.DecodeEvent(line)
		if err != nil {
			return
		}
		for _, r := range set.Rules() {
			check(r, ev, place)
		}
	})
}

// TestRootSignInFailureSummary: a failed root console sign-in carries no
// errorCode (only errorMessage and responseElements.ConsoleLogin), and the
// root-activity summary must say it failed.
func TestRootSignInFailureSummary(t *testing.T) {
	set, err := Load("builtin:cis")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := cloudtrail.DecodeEvent([]byte(`{"eventVersion":"1.08","eventID":"f1","eventType":"AwsConsoleSignIn",
	  "eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.9",
	  "userIdentity":{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333"},
	  "errorMessage":"Failed authentication","responseElements":{"ConsoleLogin":"Failure"},
	  "additionalEventData":{"MFAUsed":"No","LoginTo":"https://console.aws.amazon.com/"}}`))
	if err != nil {
		t.Fatal(err)
	}
	r := set.Rule("cis-cloudwatch-1")
	if ok, err := r.Eval(ev); !ok || err != nil {
		t.Fatalf("cis-cloudwatch-1 does not match a root sign-in: %v %v", ok, err)
	}
	got := r.Summary(ev)
	if strings.Contains(got, "succeeded") || !strings.Contains(got, "failed") {
		t.Errorf("summary %q: a failed sign-in must read as failed", got)
	}
}
