package rules

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// pantherCase is one labelled test of a Panther CloudTrail rule.
type pantherCase struct {
	rule, name string
	want       bool
	record     []byte
}

// pantherCases extracts, at test time, the labelled tests of Panther's
// CloudTrail rules from the folder TRAILWATCH_PANTHER_DIR names (a
// panther-labs/panther-analysis checkout, or its
// rules/aws_cloudtrail_rules folder). Nothing of them is kept in the repo.
func pantherCases(t *testing.T) []pantherCase {
	dir := os.Getenv("TRAILWATCH_PANTHER_DIR")
	if dir == "" {
		t.Skip("TRAILWATCH_PANTHER_DIR is not set: point it at a panther-labs/panther-analysis checkout to score the built-in rules on its labelled CloudTrail cases (e.g. TRAILWATCH_PANTHER_DIR=/work/ext/panther-labs+panther-analysis)")
	}
	if sub := filepath.Join(dir, "rules", "aws_cloudtrail_rules"); isDir(sub) {
		dir = sub
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Panther rules in %s: %v", dir, err)
	}
	sort.Strings(files)
	var out []pantherCase
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			AnalysisType string `yaml:"AnalysisType"`
			RuleID       string `yaml:"RuleID"`
			Tests        []struct {
				Name           string `yaml:"Name"`
				ExpectedResult bool   `yaml:"ExpectedResult"`
				Log            any    `yaml:"Log"`
			} `yaml:"Tests"`
		}
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if doc.AnalysisType != "rule" {
			continue
		}
		for _, tc := range doc.Tests {
			rec, err := pantherRecord(tc.Log)
			if err != nil {
				t.Fatalf("%s: test %q: %v", f, tc.Name, err)
			}
			out = append(out, pantherCase{rule: doc.RuleID, name: tc.Name, want: tc.ExpectedResult, record: rec})
		}
	}
	return out
}

// pantherRecord turns a test's Log into a CloudTrail record. Panther's
// logs are often fragments of a record: one without eventVersion and
// eventID (which the decoder requires to call it CloudTrail) gets an
// eventVersion, so the rules are scored on the fields the case is about.
func pantherRecord(log any) ([]byte, error) {
	var m map[string]any
	switch x := log.(type) {
	case string:
		if err := json.Unmarshal([]byte(x), &m); err != nil {
			return nil, err
		}
	case map[string]any:
		m = x
	default:
		return nil, fmt.Errorf("log is a %T", log)
	}
	// Some of Panther's logs spell CloudTrail's field names in lower case
	// (Panther matches them case-insensitively); restore CloudTrail's
	// spelling so the record reads as CloudTrail wrote it.
	for k, v := range m {
		if canon, ok := cloudTrailFieldNames[strings.ToLower(k)]; ok && canon != k {
			if _, taken := m[canon]; !taken {
				delete(m, k)
				m[canon] = v
			}
		}
	}
	ident := false
	for k := range m {
		ident = ident || k == "eventVersion" || k == "eventID"
	}
	if !ident {
		m["eventVersion"] = "1.08"
	}
	return json.Marshal(jsonable(m))
}

// TestPantherCases scores the enabled built-in rules on Panther's labelled
// CloudTrail cases: the share of true cases some rule fires on (target ≥
// 90%) and of near-miss cases some rule fires on (target ≤ 20%). As in the
// coverage report, a rule fires when its condition holds (a threshold rule
// counts before it reaches its count).
//
//	TRAILWATCH_PANTHER_DIR=/path/to/panther-analysis go test ./rules -run TestPantherCases -v
func TestPantherCases(t *testing.T) {
	cases := pantherCases(t)
	set, err := Load("builtin")
	if err != nil {
		t.Fatal(err)
	}
	var trues, falses, tp, fp int
	byRule := map[string][]string{}
	for _, c := range cases {
		ev, err := cloudtrail.DecodeEvent(c.record)
		fired := []string{}
		if err == nil {
			for _, r := range set.Match(ev, nil, func(me MatchError) {
				t.Errorf("%s / %s: rule %s failed at run time: %v", c.rule, c.name, me.Rule.ID, me.Err)
			}) {
				fired = append(fired, r.ID)
			}
		}
		if c.want {
			trues++
			if len(fired) > 0 {
				tp++
			} else {
				byRule[c.rule] = append(byRule[c.rule], "missed true case "+c.name)
			}
		} else {
			falses++
			if len(fired) > 0 {
				fp++
				byRule[c.rule] = append(byRule[c.rule], fmt.Sprintf("fired on near miss %q: %s", c.name, strings.Join(fired, ", ")))
			}
		}
	}
	ids := make([]string, 0, len(byRule))
	for id := range byRule {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		for _, m := range byRule[id] {
			t.Logf("%s: %s", id, m)
		}
	}
	t.Logf("Panther CloudTrail cases: %d; true cases fired on: %d of %d (%.1f%%); near misses fired on: %d of %d (%.1f%%)",
		len(cases), tp, trues, pct(tp, trues), fp, falses, pct(fp, falses))
	if pct(tp, trues) < 90 {
		t.Errorf("the built-in rules fire on %.1f%% of Panther's true cases, want at least 90%%", pct(tp, trues))
	}
	if pct(fp, falses) > 20 {
		t.Errorf("the built-in rules fire on %.1f%% of Panther's near misses, want at most 20%%", pct(fp, falses))
	}
}

// cloudTrailFieldNames maps the lower-cased name of every top-level
// CloudTrail field to its spelling.
var cloudTrailFieldNames = func() map[string]string {
	m := map[string]string{}
	t := reflect.TypeOf(cloudtrail.Event{})
	for i := 0; i < t.NumField(); i++ {
		if tag := t.Field(i).Tag.Get("expr"); tag != "" {
			m[strings.ToLower(tag)] = tag
		}
	}
	return m
}()

func pct(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}
