package cli

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/trailwatch/trailwatch/internal/corpus"
	"github.com/trailwatch/trailwatch/internal/mdcheck"
)

// TestReadmeFirstCommand runs the README's first command in-process: the
// bundled sample trail through the built-in rules.
func TestReadmeFirstCommand(t *testing.T) {
	code, out, errs := runArgs(t, "replay", "../../examples/events/sample-trail.jsonl")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	for _, want := range []string{"aws-root-console-login", "aws-security-group-created", "aws-key-pair-deleted", "aws-rds-instance-stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("the sample replay raised no %s alert:\n%s", want, out)
		}
	}
	if !strings.Contains(errs, "1 duplicates dropped") {
		t.Errorf("the sample's duplicate delivery was not dropped: %s", errs)
	}
}

func TestReplayJSONAndBadInput(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "mixed.jsonl")
	root := `{"eventVersion":"1.08","eventID":"e-1","eventTime":"2024-05-01T08:00:00Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.1","userIdentity":{"type":"Root","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333"},"responseElements":{"ConsoleLogin":"Success"},"recipientAccountId":"111122223333"}`
	os.WriteFile(in, []byte(root+"\nthis is not json\n{\"hello\":\"world\"}\n"+root+"\n"), 0o644)

	code, out, errs := runArgs(t, "replay", "--rules", "builtin:aws", "--output", "json", in)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	var alerts []map[string]any
	for sc.Scan() {
		var a map[string]any
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("output line is not JSON: %q", sc.Text())
		}
		alerts = append(alerts, a)
	}
	if len(alerts) != 1 {
		t.Fatalf("got %d alerts, want 1 (the second delivery of e-1 is a duplicate):\n%s", len(alerts), out)
	}
	a := alerts[0]
	for _, k := range []string{"rule_id", "title", "severity", "summary", "event_id", "event_time", "event_name", "principal", "source_ip", "aws_region", "account_id", "event"} {
		if _, ok := a[k]; !ok {
			t.Errorf("alert JSON lacks %q", k)
		}
	}
	if a["rule_id"] != "aws-root-console-login" || a["account_id"] != "111122223333" {
		t.Errorf("alert = %v", a)
	}
	for _, want := range []string{"mixed.jsonl:2", "mixed.jsonl:3", "2 inputs skipped"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}

func TestValidateAndTestCommands(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`rules:
  - id: typo
    title: Typo
    severity: low
    when: eventNmae == "X"
`), 0o644)
	code, out, _ := runArgs(t, "validate", "--rules", bad)
	if code != 1 || !strings.Contains(out, bad+`:5:11: rule "typo": when: unknown name eventNmae`) {
		t.Errorf("validate: exit %d\n%s", code, out)
	}

	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(`rules:
  - id: ok
    title: OK
    severity: low
    when: eventName == "X"
    tests:
      - {name: matches, expect: match, event: {eventVersion: "1", eventName: X}}
      - {name: wrongly expected, expect: match, event: {eventVersion: "1", eventName: Y}}
`), 0o644)
	code, out, _ = runArgs(t, "test", "--rules", good)
	if code != 1 || !strings.Contains(out, `FAIL `+good+`:8:9: rule "ok": test "wrongly expected": expected a match, got none`) || !strings.Contains(out, "1 passed, 1 failed") {
		t.Errorf("test: exit %d\n%s", code, out)
	}
	code, out, _ = runArgs(t, "test", "--rules", "builtin", "--require-tests")
	if code != 0 || !strings.Contains(out, " 0 failed") {
		t.Errorf("built-in tests: exit %d\n%s", code, out)
	}
	code, out, _ = runArgs(t, "version")
	if code != 0 || !strings.HasPrefix(out, "trailwatch ") {
		t.Errorf("version: exit %d %q", code, out)
	}
	if code, _, _ := runArgs(t, "replay", "--output", "xml", "x"); code != 2 {
		t.Errorf("bad --output: exit %d, want 2", code)
	}
	// replay and search refuse a negative --workers alike.
	if code, _, errs := runArgs(t, "replay", "--workers", "-1", "../../examples/events/sample-trail.jsonl"); code != 2 || !strings.Contains(errs, "--workers must be 0 (one per core) or more") {
		t.Errorf("replay --workers -1: exit %d, want 2 and the message search gives; stderr:\n%s", code, errs)
	}
}

// TestBrokenRuleTestsAreReportedWhereTestsRun: the commands that run no
// rule tests do not read them (loading the built-in tests' events was most
// of every command's start-up), so a broken test event stops only test and
// validate, which report it at its place in the file.
func TestBrokenRuleTestsAreReportedWhereTestsRun(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "broken-test.yaml")
	os.WriteFile(rules, []byte(`rules:
  - id: ok
    title: OK
    severity: low
    when: eventName == "X"
    tests:
      - name: not json
        expect: match
        event: "{not json"
`), 0o644)
	const want = `:9:16: rule "ok": test "not json": event: not valid JSON`
	for _, cmd := range []string{"validate", "test"} {
		code, out, _ := runArgs(t, cmd, "--rules", rules)
		if code != 1 || !strings.Contains(out, rules+want) {
			t.Errorf("%s: exit %d, want 1 and %q in\n%s", cmd, code, want, out)
		}
	}
	events := filepath.Join(dir, "events.jsonl")
	os.WriteFile(events, []byte(`{"eventVersion":"1","eventID":"e1","eventName":"X","eventTime":"2026-01-01T00:00:00Z"}`+"\n"), 0o644)
	code, out, errs := runArgs(t, "replay", "--rules", rules, "--output", "json", events)
	if code != 0 || !strings.Contains(out, `"rule_id":"ok"`) {
		t.Errorf("replay, which runs no rule tests: exit %d\n%s\n%s", code, out, errs)
	}
}

// TestReadmeTwoCommands is issue 15's item 7: the README's first two
// commands are the main job on bundled data and the whole test suite, in
// that order, with the test servers' installation before the test command;
// CI runs exactly those commands; and the README links only to files in
// the repository.
func TestReadmeTwoCommands(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	const first, second = "go run ./cmd/trailwatch replay examples/events/sample-trail.jsonl", "go test -race ./..."
	var blocks []string // single-command sh blocks, in order
	for _, b := range mdcheck.CodeBlocks(readme, "sh") {
		if lines := strings.Split(strings.TrimSpace(b), "\n"); len(lines) == 1 {
			blocks = append(blocks, lines[0])
		}
	}
	if len(blocks) < 2 || blocks[0] != first || blocks[1] != second {
		t.Errorf("the README's first two one-line commands are %q, want %q then %q", blocks[:min(2, len(blocks))], first, second)
	}
	testAt := strings.Index(readme, "```sh\n"+second)
	for _, prereq := range []string{"pip install 'moto[server]==5.2.1'", "go install github.com/axllent/mailpit@v1.33.1"} {
		if i := strings.Index(readme, prereq); i < 0 || i > testAt {
			t.Errorf("the README must give %q before the test command", prereq)
		}
	}
	// How to build and install the binary, and where the corpus some
	// tests read comes from and which variable names it (the one
	// internal/corpus reads).
	for _, want := range []string{"go build -o trailwatch ./cmd/trailwatch", "go install ./cmd/trailwatch", "`$TRAILWATCH_CORPUS`", "`../shared/corpus`"} {
		if !strings.Contains(readme, want) {
			t.Errorf("the README does not say %q", want)
		}
	}
	t.Setenv("TRAILWATCH_CORPUS", "/the/corpus")
	if got := corpus.Dir(); got != "/the/corpus" {
		t.Errorf("with $TRAILWATCH_CORPUS=/the/corpus, as the README says, the tests read the corpus from %q", got)
	}
	ci, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{first, second} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(cmd) + `( |$)`).Match(ci) {
			t.Errorf(".ci/run does not run the README's command %q", cmd)
		}
	}
	for _, m := range regexp.MustCompile(`\]\((\.\./[^)]*|/[^)]*)\)`).FindAllStringSubmatch(readme, -1) {
		t.Errorf("the README links outside the repository: %s", m[1])
	}
	t.Chdir("../..") // the README's links are relative to the repository's root
	mdcheck.CheckLinks(t, readme)
}

// TestMarkdownLinksStayInTheRepository checks every Markdown file of the
// repository, as TestReadmeTwoCommands does the README: its relative links
// lead to files (and headings) that exist, inside the repository, so that
// a fresh clone's documentation names nothing the reader does not have.
func TestMarkdownLinksStayInTheRepository(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	link := regexp.MustCompile(`\]\(([^)\s#]+)(?:#[^)\s]*)?\)`)
	var docs []string
	walkRepo(t, ".md", func(rel string, data []byte) {
		docs = append(docs, rel)
		for _, m := range link.FindAllStringSubmatch(string(data), -1) {
			if strings.Contains(m[1], "://") || strings.HasPrefix(m[1], "mailto:") {
				continue
			}
			target := filepath.Join(root, filepath.Dir(rel), m[1])
			if r, err := filepath.Rel(root, target); err != nil || strings.HasPrefix(r, "..") {
				t.Errorf("%s links outside the repository: %s", rel, m[1])
			}
		}
	})
	if len(docs) < 5 {
		t.Fatalf("found %d Markdown files; the walk is broken", len(docs))
	}
	for _, rel := range docs {
		t.Run(rel, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(root, rel))
			if err != nil {
				t.Fatal(err)
			}
			t.Chdir(filepath.Join(root, filepath.Dir(rel)))
			mdcheck.CheckLinks(t, string(data))
		})
	}
}
