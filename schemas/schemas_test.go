package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	goccy "github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/trailwatch/trailwatch/internal/config"
	"github.com/trailwatch/trailwatch/internal/mdcheck"
	"github.com/trailwatch/trailwatch/rules"
)

// compile compiles one of this package's schemas.
func compile(t *testing.T, name string, data []byte) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(name, doc); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	s, err := c.Compile(name)
	if err != nil {
		t.Fatalf("%s does not compile: %v", name, err)
	}
	return s
}

// yamlInstance reads a YAML document as the JSON value a schema checks
// (goccy/go-yaml's YAMLToJSON: anchors, merge keys, timestamps as
// strings).
func yamlInstance(data []byte) (any, error) {
	b, err := goccy.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(b))
}

// glob returns the files under root whose slash path matches re.
func glob(t *testing.T, root string, re *regexp.Regexp) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && re.MatchString(filepath.ToSlash(p)) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

var (
	// Configuration files: examples/*.yaml and any config*.yaml below.
	configFiles = regexp.MustCompile(`^\.\./examples/([^/]+\.ya?ml|.*/config[^/]*\.ya?ml)$`)
	// Rule files: anything under a rules/ directory of the examples, and
	// the built-in packs.
	ruleFiles = regexp.MustCompile(`^\.\./(examples/(.*/)?rules/.*|rules/builtin/.*)\.ya?ml$`)
)

// TestExamplesAndPacksMatchTheSchemas validates every example
// configuration, every example rule file and every built-in pack against
// the schemas, so the schemas accept what trailwatch accepts.
func TestExamplesAndPacksMatchTheSchemas(t *testing.T) {
	cfgSchema := compile(t, "config.schema.json", Config)
	ruleSchema := compile(t, "rules.schema.json", Rules)
	configs := glob(t, "../examples", configFiles)
	ruleSet := append(glob(t, "../examples", ruleFiles), glob(t, "../rules/builtin", ruleFiles)...)
	if len(configs) < 2 || len(ruleSet) < 5 {
		t.Fatalf("found %d configurations and %d rule files; the globs are wrong", len(configs), len(ruleSet))
	}
	check := func(s *jsonschema.Schema, files []string) {
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			inst, err := yamlInstance(data)
			if err != nil {
				t.Errorf("%s: %v", f, err)
				continue
			}
			if err := s.Validate(inst); err != nil {
				t.Errorf("%s does not match %s:\n%v", f, s.Location, err)
			}
		}
	}
	check(cfgSchema, configs)
	check(ruleSchema, ruleSet)
}

// TestSchemasRefuseMistakes checks that the schemas are not so loose that
// they accept anything: each document has one mistake an editor should
// underline.
func TestSchemasRefuseMistakes(t *testing.T) {
	cfgSchema := compile(t, "config.schema.json", Config)
	ruleSchema := compile(t, "rules.schema.json", Rules)
	for _, tt := range []struct {
		name   string
		schema *jsonschema.Schema
		doc    string
	}{
		{"unknown top-level key", cfgSchema, "state_dirr: /x\n"},
		{"unknown source key", cfgSchema, "source: {cloudwatch: {log_groups: [g], poll_intervall: 5s}}\n"},
		{"not a duration", cfgSchema, "quiet_after: soon\n"},
		{"SES is a transport, not a key", cfgSchema, "notifiers: [{name: m, type: email, ses: true, from: a@b.c, to: [d@e.f]}]\n"},
		{"a key of another notifier type", cfgSchema, "notifiers: [{name: s, type: slack, url: https://x}]\n"},
		{"unknown notifier type", cfgSchema, "notifiers: [{name: p, type: carrier-pigeon}]\n"},
		{"notifier without a name", cfgSchema, "notifiers: [{type: file, path: x}]\n"},
		{"route severity", cfgSchema, "routes: [{min_severity: urgent, notify: [x]}]\n"},
		{"rule severity", ruleSchema, "rules: [{id: a, title: A, severity: urgent, when: 'true'}]\n"},
		{"rule without a condition", ruleSchema, "rules: [{id: a, title: A, severity: low}]\n"},
		{"unknown rule key", ruleSchema, "rules: [{id: a, title: A, severity: low, when: 'true', enable: false}]\n"},
		{"bad expect", ruleSchema, "rules: [{id: a, title: A, severity: low, when: 'true', tests: [{name: t, expect: yes, event: {}}]}]\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			inst, err := yamlInstance([]byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.schema.Validate(inst); err == nil {
				t.Errorf("the schema accepts %q", tt.doc)
			}
		})
	}
	inst, err := yamlInstance([]byte("quiet_after: ${QUIET:-30m}\nlisten: ${LISTEN}\nlifecycle:\n  max_keys: ${MAX_KEYS}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfgSchema.Validate(inst); err != nil {
		t.Errorf("the schema refuses ${ENV} values: %v", err)
	}
}

// acceptedKeys asks the rule loader which keys it accepts where doc's
// bogus key "zzz" is: its error lists them.
func acceptedKeys(t *testing.T, doc string) []string {
	t.Helper()
	_, err := rules.LoadFiles([]rules.File{{Name: "probe.yaml", Data: []byte(doc)}})
	var list rules.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("the loader accepted a bogus key: %v", err)
	}
	for _, e := range list {
		if strings.Contains(e.Msg, `"zzz"`) {
			m := regexp.MustCompile(`expected (?:one of )?([a-z_, ]+)\)?$`).FindStringSubmatch(e.Msg)
			if m == nil {
				t.Fatalf("cannot read the accepted keys from %q", e.Msg)
			}
			keys := strings.Split(m[1], ", ")
			sort.Strings(keys)
			return keys
		}
	}
	t.Fatalf("no error about the bogus key in:\n%v", err)
	return nil
}

// TestRuleSchemaKnowsEveryKey compares the rule schema's keys with the
// keys the rule loader accepts, both ways, at every level.
func TestRuleSchemaKnowsEveryKey(t *testing.T) {
	var schema map[string]any
	if err := json.Unmarshal(Rules, &schema); err != nil {
		t.Fatal(err)
	}
	props := func(path ...string) []string {
		var n any = schema
		for _, p := range path {
			n = n.(map[string]any)[p]
		}
		var keys []string
		for k := range n.(map[string]any)["properties"].(map[string]any) {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return keys
	}
	const rule = "rules:\n  - id: a\n    title: A\n    severity: low\n    when: eventName == \"X\"\n"
	for _, c := range []struct {
		where  string
		probe  string
		schema []string
	}{
		{"the top level of a rule file", "zzz: 1\n", props()},
		{"a rule", rule + "    zzz: 1\n", props("definitions", "rule")},
		{"a rule's test", rule + "    tests:\n      - {name: t, expect: match, event: {eventName: X}, zzz: 1}\n", props("definitions", "test")},
		{"dedup", rule + "    dedup: {zzz: 1}\n", props("definitions", "rule", "properties", "dedup")},
		{"threshold", rule + "    threshold: {count: 1, window: 1m, zzz: 1}\n", props("definitions", "rule", "properties", "threshold")},
		{"an expected alert", rule + "    tests:\n      - {name: t, events: [{eventName: X}], expect: {alerts: [{zzz: 1}]}}\n", props("definitions", "expected_alert")},
	} {
		got := acceptedKeys(t, c.probe)
		if strings.Join(got, ",") != strings.Join(c.schema, ",") {
			t.Errorf("in %s the rule loader accepts %v but schemas/rules.schema.json has %v: make the schema's properties match (with a description and type for each new key)", c.where, got, c.schema)
		}
	}
}

// TestDocumentedFilesMatchTheSchemas validates the configurations and rule
// files the documentation shows whole (```yaml blocks of README.md, docs/
// and the examples' READMEs) against the schemas, and loads each
// configuration as trailwatch does: what a reader copies must work.
// Fragments (a few keys of a rule, one block of a configuration) are left
// out; a block is whole when its top-level keys make a configuration
// (source, state_dir, notifiers, ...) or a rule file (rules: a list of
// rules with ids).
func TestDocumentedFilesMatchTheSchemas(t *testing.T) {
	cfgSchema := compile(t, "config.schema.json", Config)
	ruleSchema := compile(t, "rules.schema.json", Rules)
	docs := append([]string{"../README.md"}, glob(t, "../docs", regexp.MustCompile(`\.md$`))...)
	docs = append(docs, glob(t, "../examples", regexp.MustCompile(`/README\.md$`))...)
	configs, ruleFiles := 0, 0
	for _, doc := range docs {
		text, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for i, block := range mdcheck.CodeBlocks(string(text), "yaml") {
			where := fmt.Sprintf("%s, yaml block %d", doc, i+1)
			var top map[string]any
			if err := goccy.Unmarshal([]byte(block), &top); err != nil || top == nil {
				continue // a comment, a scalar, a list
			}
			inst, err := yamlInstance([]byte(block))
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			switch {
			case isRuleFile(top):
				ruleFiles++
				if err := ruleSchema.Validate(inst); err != nil {
					t.Errorf("%s does not match rules.schema.json:\n%v", where, err)
				}
			case isConfiguration(top):
				configs++
				if err := cfgSchema.Validate(inst); err != nil {
					t.Errorf("%s does not match config.schema.json:\n%v", where, err)
				}
				env := func(name string) (string, bool) { return "https://hooks.example.com/" + name, true }
				if _, err := config.Parse(filepath.Join(filepath.Dir(doc), "config.yaml"), []byte(block), env); err != nil {
					t.Errorf("%s does not load:\n%v", where, err)
				}
			}
		}
	}
	t.Logf("%d whole configurations and %d rule files checked", configs, ruleFiles)
	if configs < 4 || ruleFiles < 1 {
		t.Errorf("found %d whole configurations and %d rule files in the documentation; the classification is broken", configs, ruleFiles)
	}
}

// isRuleFile reports whether a document's top level is a rule file's:
// rules, a list of mappings with an id.
func isRuleFile(top map[string]any) bool {
	list, ok := top["rules"].([]any)
	if !ok || len(list) == 0 {
		return false
	}
	r, ok := list[0].(map[string]any)
	return ok && r["id"] != nil
}

// isConfiguration reports whether a document's top level is a whole
// configuration: only configuration keys, one of them the source, the
// state directory or the notifiers.
func isConfiguration(top map[string]any) bool {
	var schema map[string]any
	if err := json.Unmarshal(Config, &schema); err != nil {
		panic(err)
	}
	props := schema["properties"].(map[string]any)
	for k := range top {
		if props[k] == nil {
			return false
		}
	}
	return top["source"] != nil || top["state_dir"] != nil || top["notifiers"] != nil
}
