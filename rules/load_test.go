package rules

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

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
