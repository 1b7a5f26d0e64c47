package rules

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// TestLoadBadFiles loads each testdata/*.bad.yaml and checks that the
// loader reports exactly the problems its `# want:` header lines list,
// each at its line:col and with its message (a prefix is enough).
func TestLoadBadFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*.bad.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.bad.yaml files: %v", err)
	}
	wantRe := regexp.MustCompile(`(?m)^# want: (.*)$`)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var wants []string
			for _, m := range wantRe.FindAllStringSubmatch(string(data), -1) {
				wants = append(wants, f+":"+m[1])
			}
			_, err = Load(f)
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Load(%s) = %v, want an ErrorList", f, err)
			}
			var got []string
			for _, e := range list {
				got = append(got, e.Error())
			}
			if len(got) != len(wants) {
				t.Fatalf("got %d problems:\n%s\nwant %d:\n%s", len(got), strings.Join(got, "\n"), len(wants), strings.Join(wants, "\n"))
			}
			for _, w := range wants {
				found := false
				for _, g := range got {
					found = found || strings.HasPrefix(g, w)
				}
				if !found {
					t.Errorf("missing problem %q; got:\n%s", w, strings.Join(got, "\n"))
				}
			}
		})
	}
}

// TestLoadAllProblemsAtOnce checks that problems from several files come
// back together, in file order.
func TestLoadAllProblemsAtOnce(t *testing.T) {
	_, err := Load("testdata")
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("Load(testdata) = %v, want an ErrorList", err)
	}
	files := map[string]bool{}
	for _, e := range list {
		files[e.Pos.File] = true
	}
	bad, _ := filepath.Glob("testdata/*.bad.yaml")
	if len(files) != len(bad) {
		t.Errorf("problems reported from %d files, want %d (every bad file)", len(files), len(bad))
	}
}

func TestLoadGood(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "team", "iam")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "a.yaml"), `rules:
  - id: a-rule
    title: A
    severity: info
    when: eventName == "A"
    enabled: false
`)
	write(filepath.Join(sub, "b.yml"), `rules:
  - id: b-rule
    title: B
    severity: high
    tags: [x]
    notify: [page]
    when: |
      eventName in ["B", "C"]
      && errorCode == ""
    tests:
      - name: from file
        event_file: events/b.json
        expect: match
`)
	write(filepath.Join(sub, "notes.txt"), "not a rule file")
	if err := os.MkdirAll(filepath.Join(sub, "events"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(sub, "events", "b.json"), `{"eventVersion":"1.08","eventName":"B","eventID":"1"}`)

	set, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := len(set.Rules()); got != 2 {
		t.Fatalf("loaded %d rules, want 2", got)
	}
	if got := set.Len(); got != 1 {
		t.Errorf("enabled rules = %d, want 1 (a-rule is disabled)", got)
	}
	b := set.Rule("b-rule")
	if b == nil || b.Severity != "high" || b.Notify[0] != "page" {
		t.Fatalf("b-rule loaded wrong: %+v", b)
	}
	if got := b.Index().EventNames; strings.Join(got, ",") != "B,C" {
		t.Errorf("b-rule indexed on %v, want [B C]", got)
	}
	for _, r := range set.RunTests() {
		if !r.Passed {
			t.Errorf("%s / %s: %s", r.Rule.ID, r.Test.Name, r.Reason)
		}
	}
	ev, _ := cloudtrail.DecodeEvent([]byte(`{"eventVersion":"1.08","eventName":"A"}`))
	if got := set.Match(ev, nil, nil); len(got) != 0 {
		t.Errorf("disabled rule matched: %v", got[0].ID)
	}
}

func TestLoadBuiltinUnknownPack(t *testing.T) {
	_, err := Load("builtin:nope")
	if err == nil || !strings.Contains(err.Error(), `no built-in pack "nope"`) {
		t.Fatalf("Load(builtin:nope) = %v", err)
	}
}

// TestBuiltinTestsCutCleanly holds withoutTests to the YAML parser on every
// built-in file: the cut text parses to the same nodes (kinds, tags,
// values, styles, lines and columns) as the whole text less each rule's
// tests, and loading without tests gives the same rules.
func TestBuiltinTestsCutCleanly(t *testing.T) {
	files, err := builtinFiles("")
	if err != nil {
		t.Fatal(err)
	}
	cut := 0
	for _, f := range files {
		var whole, part yaml.Node
		if err := yaml.Unmarshal(f.Data, &whole); err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		short := withoutTests(f.Data)
		if err := yaml.Unmarshal(short, &part); err != nil {
			t.Fatalf("%s without tests: %v", f.Name, err)
		}
		cut += len(f.Data) - len(short)
		if bytes.Count(short, []byte("\n")) != bytes.Count(f.Data, []byte("\n")) {
			t.Errorf("%s: the cut changed the number of lines", f.Name)
		}
		dropTests(&whole)
		if msg := sameNodes(&whole, &part); msg != "" {
			t.Errorf("%s: the cut text parses differently: %s", f.Name, msg)
		}
	}
	if cut == 0 {
		t.Error("withoutTests cut nothing from the built-in packs")
	}

	withTests, err := Load("builtin")
	if err != nil {
		t.Fatal(err)
	}
	without, err := LoadWith(Options{SkipTests: true}, "builtin")
	if err != nil {
		t.Fatal(err)
	}
	if len(withTests.Rules()) != len(without.Rules()) {
		t.Fatalf("%d rules with tests, %d without", len(withTests.Rules()), len(without.Rules()))
	}
	for i, r := range withTests.Rules() {
		o := without.Rules()[i]
		if r.ID != o.ID || r.Pos != o.Pos || r.When != o.When || r.Pattern != o.Pattern || r.Enabled != o.Enabled || o.Tests != nil {
			t.Errorf("rule %d: loaded as %s %s %q without tests, %s %s %q with", i, o.ID, o.Pos, o.When, r.ID, r.Pos, r.When)
		}
	}
}

// dropTests removes the tests key of every rule mapping under n.
func dropTests(n *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "tests" {
				n.Content = append(n.Content[:i:i], n.Content[i+2:]...)
				i -= 2
			}
		}
	}
	for _, c := range n.Content {
		dropTests(c)
	}
}

// sameNodes describes the first difference between two node trees, or "".
func sameNodes(a, b *yaml.Node) string {
	if a.Kind != b.Kind || a.Tag != b.Tag || a.Value != b.Value || a.Style != b.Style ||
		a.Line != b.Line || a.Column != b.Column || a.Anchor != b.Anchor || len(a.Content) != len(b.Content) {
		return fmt.Sprintf("%d:%d %q (%d children) vs %d:%d %q (%d children)", a.Line, a.Column, a.Value, len(a.Content), b.Line, b.Column, b.Value, len(b.Content))
	}
	for i := range a.Content {
		if msg := sameNodes(a.Content[i], b.Content[i]); msg != "" {
			return msg
		}
	}
	return ""
}

func TestWithoutTestsCutsOnlyTestBlocks(t *testing.T) {
	in := "rules:\n  - id: a\n    tests:\n    - name: x\n      event: {a: 1}\n\n      # note\n    when: |\n      tests:\n        x\n    summary: s\n  - id: b\n    description: >-\n\n      tests:\n    tests:\n      - {name: y}\n# end\n"
	want := "rules:\n  - id: a\n\n\n\n\n\n    when: |\n      tests:\n        x\n    summary: s\n  - id: b\n    description: >-\n\n      tests:\n\n\n\n"
	if got := string(withoutTests([]byte(in))); got != want {
		t.Errorf("withoutTests =\n%s\nwant\n%s", got, want)
	}
}

// TestSkipTests: a load without tests does not read them (a broken test
// event is no error there), a load with them reports it at its place, and
// running tests on a set loaded without them is a programming error.
func TestSkipTests(t *testing.T) {
	files := []File{{Name: "t.yaml", Data: []byte(`rules:
  - id: r
    title: R
    severity: low
    when: eventName == "X"
    tests:
      - {name: bad, expect: match, event: "{not json"}
      - {name: missing, expect: match, event_file: nowhere.json}
`), ReadRelative: func(string) ([]byte, error) { return nil, os.ErrNotExist }}}
	_, err := loadFilesWith(files, Options{})
	if err == nil || !strings.Contains(err.Error(), "t.yaml:7:43: rule \"r\": test \"bad\"") || !strings.Contains(err.Error(), "t.yaml:8:52: rule \"r\": test \"missing\": event_file") {
		t.Errorf("with tests: %v", err)
	}
	set, err := loadFilesWith(files, Options{SkipTests: true})
	if err != nil {
		t.Fatalf("without tests: %v", err)
	}
	if r := set.Rule("r"); r == nil || r.Tests != nil {
		t.Fatalf("without tests: rule %+v", r)
	}
	defer func() {
		if recover() == nil {
			t.Error("RunTests on a set loaded without tests did not panic")
		}
	}()
	set.RunTests()
}

// TestKebabCaseIsTheIDPattern holds kebabCase, which checks rule ids, to
// the regular expression ^[a-z0-9]+(-[a-z0-9]+)*$ on every string of up
// to four characters over a small alphabet, and on some longer ones.
func TestKebabCaseIsTheIDPattern(t *testing.T) {
	re := regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	alphabet := []string{"a", "z", "0", "9", "-", "A", "_", " ", "é"}
	var strs []string
	var gen func(prefix string, n int)
	gen = func(prefix string, n int) {
		strs = append(strs, prefix)
		if n == 0 {
			return
		}
		for _, c := range alphabet {
			gen(prefix+c, n-1)
		}
	}
	gen("", 4)
	strs = append(strs, "aws-root-console-login", "cis-3-1", "a--b", "-a", "a-", "Aws-x", "aws_x", "aws-x-")
	for _, s := range strs {
		if got, want := kebabCase(s), re.MatchString(s); got != want {
			t.Errorf("kebabCase(%q) = %v, the pattern says %v", s, got, want)
		}
	}
}
