package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
	"github.com/trailwatch/trailwatch/rules/sigma"
)

// Error is one problem in a rule file, reported as
// `file:line:col: rule "id": message`.
type Error struct {
	Pos    Position
	RuleID string
	Msg    string
}

func (e *Error) Error() string {
	if e.RuleID != "" {
		return fmt.Sprintf("%s: rule %q: %s", e.Pos, e.RuleID, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Pos, e.Msg)
}

// ErrorList is every problem found while loading rules, in file order.
type ErrorList []*Error

func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Sort orders the problems by file, line and column.
func (l ErrorList) Sort() {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i].Pos, l[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

// File is one rule file to load: its name as reported in errors, its
// content, and how to read files it names (event_file:) relative to it.
type File struct {
	Name string
	// Data is the file's content. A built-in pack's file is the binary's
	// read-only copy: never write to it.
	Data []byte
	// ReadRelative reads a file named relative to this one. Nil means
	// relative names are resolved on the local file system.
	ReadRelative func(name string) ([]byte, error)

	// builtin: one of the packs embedded in the binary, whose tests:
	// blocks a load without tests may cut before parsing (withoutTests).
	builtin bool
}

// Load loads rules from paths: rule files, directories (walked recursively
// for *.yaml and *.yml), and `builtin` or `builtin:NAME` for the packs
// embedded in the binary. With no paths it loads every built-in pack.
// Problems are returned together as an ErrorList.
func Load(paths ...string) (*Set, error) {
	files, err := ResolveFiles(paths...)
	if err != nil {
		return nil, err
	}
	return LoadFiles(files)
}

// ResolveFiles reads the rule files that paths name (see Load).
func ResolveFiles(paths ...string) ([]File, error) {
	if len(paths) == 0 {
		paths = []string{"builtin"}
	}
	var files []File
	seen := map[string]bool{}
	add := func(f File) {
		if !seen[f.Name] {
			seen[f.Name] = true
			files = append(files, f)
		}
	}
	for _, p := range paths {
		if p == "builtin" || strings.HasPrefix(p, "builtin:") {
			fs, err := builtinFiles(strings.TrimPrefix(strings.TrimPrefix(p, "builtin"), ":"))
			if err != nil {
				return nil, err
			}
			for _, f := range fs {
				add(f)
			}
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("load rules: %w", err)
		}
		if !st.IsDir() {
			f, err := osFile(p)
			if err != nil {
				return nil, err
			}
			add(f)
			continue
		}
		var names []string
		err = filepath.WalkDir(p, func(name string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && name != p && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			if !d.IsDir() && isRuleFileName(name) {
				names = append(names, name)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("load rules from %s: %w", p, err)
		}
		sort.Strings(names)
		for _, n := range names {
			f, err := osFile(n)
			if err != nil {
				return nil, err
			}
			add(f)
		}
	}
	return files, nil
}

func isRuleFileName(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".yaml" || ext == ".yml"
}

func osFile(name string) (File, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return File{}, fmt.Errorf("load rules: %w", err)
	}
	dir := filepath.Dir(name)
	return File{Name: name, Data: data, ReadRelative: func(rel string) ([]byte, error) {
		if filepath.IsAbs(rel) {
			return os.ReadFile(rel)
		}
		return os.ReadFile(filepath.Join(dir, rel))
	}}, nil
}

// fsFile reads name from fsys, unless data, its content, is given.
func fsFile(fsys fs.FS, name, display string, data []byte) (File, error) {
	if data == nil {
		var err error
		if data, err = fs.ReadFile(fsys, name); err != nil {
			return File{}, fmt.Errorf("load rules: %w", err)
		}
	}
	dir := path.Dir(name)
	return File{Name: display, Data: data, ReadRelative: func(rel string) ([]byte, error) {
		return fs.ReadFile(fsys, path.Join(dir, rel))
	}}, nil
}

// kebabCase reports whether s is kebab-case: words of lower-case letters
// and digits joined by single hyphens (^[a-z0-9]+(-[a-z0-9]+)*$).
func kebabCase(s string) bool {
	if s == "" || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && s[i-1] != '-':
		default:
			return false
		}
	}
	return true
}

// ruleKeyNames are the keys a rule may have; anything else is an error.
var ruleKeyNames = [...]string{"id", "title", "description", "severity", "tags",
	"when", "pattern", "summary", "enabled", "runbook",
	"references", "notify", "tests", "except",
	"dedup", "threshold"}

// ruleKeys is ruleKeyNames as a set.
var ruleKeys = func() map[string]bool {
	m := make(map[string]bool, len(ruleKeyNames))
	for _, k := range ruleKeyNames {
		m[k] = true
	}
	return m
}()

// ruleKeyIndex returns key's index in ruleKeyNames, or -1.
func ruleKeyIndex(key string) int {
	for i, k := range ruleKeyNames {
		if k == key {
			return i
		}
	}
	return -1
}

// ruleNodes are a rule's values by key (ruleKeyNames' order): a rule has
// a dozen keys, and a map of them grew twice for each of the rules.
type ruleNodes [len(ruleKeyNames)]*yaml.Node

// get returns the value of key, one of ruleKeyNames, or nil.
func (n *ruleNodes) get(key string) *yaml.Node { return n[ruleKeyIndex(key)] }

var testKeys = map[string]bool{"name": true, "event": true, "event_file": true, "events": true, "events_file": true, "expect": true}

var fileKeys = map[string]bool{"rules": true, "lists": true, "macros": true}

// loader collects rules and problems across files.
type loader struct {
	skipTests bool
	// builtinExprs: the built-in packs' conditions come from their
	// snapshot and compile on first use (useBuiltinExprs).
	builtinExprs bool
	errs         ErrorList
	rules        []*Rule
	ids          map[string]Position
	pending      []pendingRule
	names        *names
}

type pendingRule struct {
	f File
	n *yaml.Node
}

// Options adjusts how rules load.
type Options struct {
	// Lists replaces the named lists the rule files define (a team's
	// tunables, from the configuration file). Naming a list no rule file
	// defines is an error, so a typo cannot silently tune nothing.
	Lists map[string][]any
	// ListPos places each of Lists in the configuration file, for that
	// error; a list without a place is reported at config:1:1.
	ListPos map[string]Position
	// Overrides enable, disable or re-grade rules without copying them
	// (the configuration's rule_overrides), applied in order so a later
	// one wins. An override whose patterns match no loaded rule is an
	// error at its Pos, so a misspelt id cannot silently change nothing.
	Overrides []Override
	// SkipTests leaves every rule's tests unread (Rule.Tests is nil, and a
	// broken test is no error): for the commands that never run them
	// (run, replay, search, ...), since reading the tests' events was
	// most of what loading the built-in rules cost. trailwatch test and
	// validate read them. RunTests panics on a set loaded without them.
	SkipTests bool
}

// Override changes the rules whose ids match any of Rules (`*` and `?`
// wildcards): Enabled, when set, enables or disables them; Severity, when
// set, replaces their severity.
type Override struct {
	Rules    []string
	Enabled  *bool
	Severity string
	Pos      Position
}

// LoadFiles loads and compiles rules from already-read files.
func LoadFiles(files []File) (*Set, error) {
	return loadFilesWith(files, Options{})
}

// LoadWith is Load with options.
func LoadWith(opts Options, paths ...string) (*Set, error) {
	files, err := ResolveFiles(paths...)
	if err != nil {
		return nil, err
	}
	return loadFilesWith(files, opts)
}

// loadFilesWith is LoadFiles with options.
func loadFilesWith(files []File, opts Options) (*Set, error) {
	l := &loader{ids: map[string]Position{}, names: newNames(), skipTests: opts.SkipTests}
	// A load that reads the tests (validate, test) checks everything, the
	// compile of each expression's bytecode included.
	l.names.eagerCode = !opts.SkipTests
	// Lists and macros may be used in any file, so collect them from every
	// file before compiling any rule.
	for _, f := range files {
		l.file(f)
	}
	for name, values := range opts.Lists {
		if _, ok := l.names.lists[name]; !ok {
			pos, ok := opts.ListPos[name]
			if !ok {
				pos = Position{File: "config", Line: 1, Column: 1}
			}
			l.errs = append(l.errs, &Error{Pos: pos,
				Msg: fmt.Sprintf("lists: %q overrides no list the rules define (have %s)", name, strings.Join(l.names.listNames(), ", "))})
			continue
		}
		l.names.lists[name] = normalizeList(values)
	}
	l.names.overridden = opts.Lists
	l.builtinExprs = l.useBuiltinExprs(files)
	l.names.builtinTrees = l.builtinExprs
	l.names.checkMacros(l)
	for _, p := range l.pending {
		l.rule(p.f, p.n)
	}
	l.override(opts.Overrides)
	if len(l.errs) > 0 {
		l.errs.Sort()
		return nil, l.errs
	}
	s := &Set{rules: l.rules, byID: make(map[string]*Rule, len(l.rules)), lists: l.names.lists, testsSkipped: opts.SkipTests}
	for i, r := range l.rules {
		r.ord = i
		r.headerOnly = r.program != nil && r.program.fields == 0
		for _, p := range r.except {
			r.headerOnly = r.headerOnly && p.fields == 0
		}
		s.byID[r.ID] = r
		if r.Enabled {
			s.enabled = append(s.enabled, r)
		}
	}
	s.index = buildIndex(s.enabled)
	return s, nil
}

// override applies the configuration's overrides to the loaded rules.
func (l *loader) override(overrides []Override) {
	for _, o := range overrides {
		if o.Severity != "" && SeverityRank(o.Severity) < 0 {
			l.errs = append(l.errs, &Error{Pos: o.Pos, Msg: fmt.Sprintf("rule_overrides: severity %q is not one of %s", o.Severity, strings.Join(Severities, ", "))})
			continue
		}
		for _, pat := range o.Rules {
			n := 0
			for _, r := range l.rules {
				if ok, err := path.Match(pat, r.ID); !(err == nil && ok) && pat != r.ID {
					continue
				}
				n++
				if o.Enabled != nil {
					r.Enabled = *o.Enabled
				}
				if o.Severity != "" {
					r.Severity = o.Severity
				}
			}
			if n == 0 {
				l.errs = append(l.errs, &Error{Pos: o.Pos, Msg: fmt.Sprintf("rule_overrides: %q matches no loaded rule", pat)})
			}
		}
	}
}

func (l *loader) errorf(file string, n *yaml.Node, ruleID, format string, args ...any) {
	pos := Position{File: file, Line: 1, Column: 1}
	if n != nil {
		pos.Line, pos.Column = n.Line, n.Column
	}
	l.errs = append(l.errs, &Error{Pos: pos, RuleID: ruleID, Msg: fmt.Sprintf(format, args...)})
}

func (l *loader) file(f File) {
	var root *yaml.Node
	if f.builtin && l.skipTests {
		if doc := builtinSnapshot(f); doc != nil && len(doc.Content) > 0 {
			root = doc.Content[0] // a built-in pack is never a Sigma rule
		}
	}
	if root == nil {
		var text io.Reader = bytes.NewReader(f.Data)
		if f.builtin && l.skipTests {
			text = &testsCut{data: f.Data}
		}
		var doc yaml.Node
		dec := yaml.NewDecoder(text)
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return // an empty file holds no rules
			}
			l.yamlError(f.Name, err)
			return
		}
		if len(doc.Content) == 0 {
			return
		}
		root = doc.Content[0]
		if sigma.IsRule(root) {
			l.sigmaFile(f, root, dec)
			return
		}
	}
	if root.Kind != yaml.MappingNode {
		l.errorf(f.Name, root, "", "a rule file must be a mapping with a top-level `rules:` list")
		return
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "rules":
			if v.Kind != yaml.SequenceNode {
				if !(v.Kind == yaml.ScalarNode && v.Tag == "!!null") {
					l.errorf(f.Name, v, "", "`rules` must be a list")
				}
				continue
			}
			for _, rn := range v.Content {
				l.pending = append(l.pending, pendingRule{f: f, n: rn})
			}
		case "lists":
			l.lists(f, v)
		case "macros":
			l.macros(f, v)
		default:
			l.errorf(f.Name, k, "", "unknown top-level key %q (expected %s)", k.Value, keyList(fileKeys))
		}
	}
}

var yamlLineRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^yaml: line (\d+): (.*)$`) })

func (l *loader) yamlError(file string, err error) {
	msg := err.Error()
	line := 1
	if m := yamlLineRe().FindStringSubmatch(msg); m != nil {
		fmt.Sscanf(m[1], "%d", &line)
		msg = m[2]
	}
	l.errs = append(l.errs, &Error{Pos: Position{File: file, Line: line, Column: 1}, Msg: "invalid YAML: " + msg})
}

func keyList(m map[string]bool) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// scalarString returns a scalar node's string value, or reports an error.
func (l *loader) scalarString(file string, n *yaml.Node, id, key string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		l.errorf(file, n, id, "%s must be a string", key)
		return "", false
	}
	return n.Value, true
}

func (l *loader) stringList(file string, n *yaml.Node, id, key string) []string {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		l.errorf(file, n, id, "%s must be a list of strings", key)
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for _, e := range n.Content {
		if s, ok := l.scalarString(file, e, id, key+" entries"); ok {
			out = append(out, s)
		}
	}
	return out
}

func (l *loader) rule(f File, n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		l.errorf(f.Name, n, "", "each rule must be a mapping")
		return
	}
	r := &Rule{Enabled: true, Pos: Position{File: f.Name, Line: n.Line, Column: n.Column}}
	l.names.trusted = f.builtin && l.skipTests
	defer func() { l.names.trusted = false }()
	var nodes ruleNodes
	// The id first, so every later error can name the rule.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "id" {
			if s, ok := l.scalarString(f.Name, n.Content[i+1], "", "id"); ok {
				r.ID = s
			}
		}
	}
	id := r.ID
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := ruleKeyIndex(k.Value)
		if key < 0 {
			l.errorf(f.Name, k, id, "unknown key %q (expected one of %s)", k.Value, keyList(ruleKeys))
			continue
		}
		if nodes[key] != nil {
			l.errorf(f.Name, k, id, "key %q given twice", k.Value)
			continue
		}
		nodes[key] = v
	}

	idNode := nodes.get("id")
	switch {
	case idNode == nil:
		l.errorf(f.Name, n, "", "rule has no id")
	case r.ID == "":
	case !kebabCase(r.ID):
		l.errorf(f.Name, idNode, id, "id must be kebab-case (lower-case letters, digits and single hyphens)")
	default:
		if prev, dup := l.ids[r.ID]; dup {
			l.errorf(f.Name, idNode, id, "duplicate rule id (first defined at %s)", prev)
		} else {
			l.ids[r.ID] = Position{File: f.Name, Line: idNode.Line, Column: idNode.Column}
		}
	}

	str := func(key string, required bool) (string, *yaml.Node) {
		v := nodes.get(key)
		if v == nil {
			if required {
				l.errorf(f.Name, n, id, "missing required key %q", key)
			}
			return "", nil
		}
		s, _ := l.scalarString(f.Name, v, id, key)
		return s, v
	}
	r.Title, _ = str("title", true)
	r.Description, _ = str("description", false)
	var sevNode *yaml.Node
	r.Severity, sevNode = str("severity", true)
	if sevNode != nil && r.Severity != "" && SeverityRank(r.Severity) < 0 {
		l.errorf(f.Name, sevNode, id, "severity %q is not one of %s", r.Severity, strings.Join(Severities, ", "))
	}
	r.Runbook, _ = str("runbook", false)
	if v := nodes.get("tags"); v != nil {
		r.Tags = l.stringList(f.Name, v, id, "tags")
	}
	if v := nodes.get("references"); v != nil {
		r.References = l.stringList(f.Name, v, id, "references")
	}
	if v := nodes.get("notify"); v != nil {
		r.Notify = l.stringList(f.Name, v, id, "notify")
	}
	if v := nodes.get("enabled"); v != nil {
		if v.Kind != yaml.ScalarNode || v.Decode(&r.Enabled) != nil {
			l.errorf(f.Name, v, id, "enabled must be true or false")
		}
	}

	when, whenNode := str("when", false)
	pattern, patternNode := str("pattern", false)
	switch {
	case whenNode != nil && patternNode != nil:
		l.errorf(f.Name, patternNode, id, "give either `when` or `pattern`, not both")
	case whenNode == nil && patternNode == nil:
		l.errorf(f.Name, n, id, "missing required key \"when\" (or \"pattern\")")
	case whenNode != nil:
		r.When = when
		if p := l.builtinCondition(f, when); p != nil {
			r.program = p
			break
		}
		p, err := compileCondition(when, l.names)
		if err != nil {
			ce := err.(*compileError)
			l.exprError(f, whenNode, id, ce.Line, ce.Column, "when: "+ce.Msg)
		} else {
			r.program = p
		}
	default:
		r.Pattern = pattern
		if err := compilePattern(r, pattern); err != nil {
			var pe *patternError
			if errors.As(err, &pe) {
				l.exprError(f, patternNode, id, pe.Line, pe.Column, "pattern: "+pe.Msg)
			} else {
				l.errorf(f.Name, patternNode, id, "pattern: %v", err)
			}
		}
	}

	if summary, v := str("summary", false); v != nil {
		var t *summaryTemplate
		var err error
		if f.builtin && l.skipTests {
			t, err = parseTemplateLazy(summary, l.names)
		} else {
			t, err = parseTemplateWith(summary, l.names.compileValue)
		}
		if err != nil {
			te := err.(*templateError)
			line, col := offsetToLineCol(summary, te.Offset)
			l.exprError(f, v, id, line, col, "summary: "+te.Msg)
		} else {
			r.summary = t
		}
	}

	if v := nodes.get("except"); v != nil {
		l.except(f, v, r)
	}
	if nodes.get("dedup") != nil || nodes.get("threshold") != nil {
		l.lifecycleBlocks(f, r, nodes.get("dedup"), nodes.get("threshold"))
	}
	if v := nodes.get("tests"); v != nil && !l.skipTests {
		r.Tests = l.tests(f, v, id)
	}
	l.rules = append(l.rules, r)
}

// offsetToLineCol converts a byte offset in s to a 1-based line and column.
func offsetToLineCol(s string, off int) (int, int) {
	if off > len(s) {
		off = len(s)
	}
	line := 1 + strings.Count(s[:off], "\n")
	col := off - strings.LastIndex(s[:off], "\n")
	return line, col
}

// exprError reports a problem at line:col inside the text of scalar node n,
// translated to a position in the file.
func (l *loader) exprError(f File, n *yaml.Node, id string, line, col int, msg string) {
	pos := Position{File: f.Name, Line: n.Line, Column: n.Column}
	switch n.Style {
	case yaml.FoldedStyle:
		// Folding joined the block's lines with spaces: walk the original
		// lines to find the one holding the character.
		off := offsetOf(n.Value, line, col)
		lines := bytes.Split(f.Data, []byte("\n"))
		for ln := n.Line + 1; ln <= len(lines); ln++ {
			content := bytes.TrimLeft(lines[ln-1], " ")
			indent := len(lines[ln-1]) - len(content)
			if off <= len(content) || ln == len(lines) {
				pos.Line, pos.Column = ln, indent+off+1
				break
			}
			off -= len(content) + 1
		}
	case yaml.LiteralStyle:
		// Block scalars start on the next line, at the block's indentation.
		pos.Line = n.Line + line
		pos.Column = blockIndent(f.Data, pos.Line) + col
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		pos.Line = n.Line + line - 1
		if line == 1 {
			pos.Column = n.Column + col // +1 for the quote, -1 for 1-based col
		} else {
			pos.Column = col
		}
	default:
		pos.Line = n.Line + line - 1
		if line == 1 {
			pos.Column = n.Column + col - 1
		} else {
			pos.Column = blockIndent(f.Data, pos.Line) + col
		}
	}
	l.errs = append(l.errs, &Error{Pos: pos, RuleID: id, Msg: msg})
}

// offsetOf converts a 1-based line and column in s to a byte offset.
func offsetOf(s string, line, col int) int {
	off := 0
	for i := 1; i < line; i++ {
		j := strings.IndexByte(s[off:], '\n')
		if j < 0 {
			break
		}
		off += j + 1
	}
	return off + col - 1
}

// blockIndent returns the number of leading spaces on 1-based line n.
func blockIndent(data []byte, n int) int {
	lines := bytes.Split(data, []byte("\n"))
	if n < 1 || n > len(lines) {
		return 0
	}
	ln := lines[n-1]
	return len(ln) - len(bytes.TrimLeft(ln, " "))
}

func (l *loader) tests(f File, n *yaml.Node, id string) []Test {
	if n.Kind != yaml.SequenceNode {
		l.errorf(f.Name, n, id, "tests must be a list")
		return nil
	}
	var out []Test
	for i, tn := range n.Content {
		if tn.Kind != yaml.MappingNode {
			l.errorf(f.Name, tn, id, "each test must be a mapping")
			continue
		}
		t := Test{Pos: Position{File: f.Name, Line: tn.Line, Column: tn.Column}, Name: fmt.Sprintf("test %d", i+1)}
		var eventNode, fileNode, eventsNode, eventsFileNode, expectNode *yaml.Node
		for j := 0; j+1 < len(tn.Content); j += 2 {
			k, v := tn.Content[j], tn.Content[j+1]
			switch k.Value {
			case "name":
				if s, ok := l.scalarString(f.Name, v, id, "test name"); ok {
					t.Name = s
				}
			case "event":
				eventNode = v
			case "event_file":
				fileNode = v
			case "events":
				eventsNode = v
			case "events_file":
				eventsFileNode = v
			case "expect":
				expectNode = v
			default:
				l.errorf(f.Name, k, id, "test %q: unknown key %q (expected one of %s)", t.Name, k.Value, keyList(testKeys))
			}
		}
		given := 0
		for _, gn := range []*yaml.Node{eventNode, fileNode, eventsNode, eventsFileNode} {
			if gn != nil {
				given++
			}
		}
		read := f.ReadRelative
		if read == nil {
			read = os.ReadFile
		}
		switch {
		case given > 1:
			l.errorf(f.Name, tn, id, "test %q: give one of `event`, `event_file`, `events` or `events_file`", t.Name)
		case eventNode != nil:
			data, err := yamlToJSON(eventNode)
			if err != nil {
				l.errorf(f.Name, eventNode, id, "test %q: event: %v", t.Name, err)
			}
			t.Event = data
		case fileNode != nil:
			name, ok := l.scalarString(f.Name, fileNode, id, "event_file")
			if ok {
				data, err := read(name)
				if err != nil {
					l.errorf(f.Name, fileNode, id, "test %q: event_file: %v", t.Name, err)
				}
				t.Event = bytes.TrimSpace(data)
			}
		case eventsNode != nil:
			if eventsNode.Kind != yaml.SequenceNode || len(eventsNode.Content) == 0 {
				l.errorf(f.Name, eventsNode, id, "test %q: events must be a non-empty list of events", t.Name)
				break
			}
			t.Sequence = true
			for _, en := range eventsNode.Content {
				data, err := yamlToJSON(en)
				if err != nil {
					l.errorf(f.Name, en, id, "test %q: events: %v", t.Name, err)
					continue
				}
				if _, err := cloudtrail.DecodeEvent(data); err != nil {
					l.errorf(f.Name, en, id, "test %q: events: %v", t.Name, err)
					continue
				}
				t.Events = append(t.Events, data)
			}
		case eventsFileNode != nil:
			t.Sequence = true
			name, ok := l.scalarString(f.Name, eventsFileNode, id, "events_file")
			if !ok {
				break
			}
			data, err := read(name)
			if err == nil {
				t.Events, err = splitEvents(data)
			}
			if err != nil {
				l.errorf(f.Name, eventsFileNode, id, "test %q: events_file: %v", t.Name, err)
			}
		default:
			l.errorf(f.Name, tn, id, "test %q: missing `event`, `event_file`, `events` or `events_file`", t.Name)
		}
		if len(t.Event) > 0 {
			if _, err := cloudtrail.DecodeEvent(t.Event); err != nil {
				n := eventNode
				if n == nil {
					n = fileNode
				}
				l.errorf(f.Name, n, id, "test %q: %v", t.Name, err)
			}
		}
		switch {
		case expectNode == nil:
			l.errorf(f.Name, tn, id, "test %q: missing `expect` (match or no-match), or {alerts: N} for a test over time", t.Name)
		case expectNode.Kind == yaml.MappingNode:
			l.expectAlerts(f, expectNode, id, &t)
		case t.Sequence:
			l.errorf(f.Name, expectNode, id, "test %q: a test with `events` expects {alerts: N} or {alerts: [...]}", t.Name)
		default:
			if s, ok := l.scalarString(f.Name, expectNode, id, "expect"); ok {
				switch s {
				case "match":
					t.ExpectMatch = true
				case "no-match":
				default:
					l.errorf(f.Name, expectNode, id, "test %q: expect must be match or no-match, not %q (or {alerts: N} for a test over time)", t.Name, s)
				}
			}
		}
		out = append(out, t)
	}
	return out
}

// yamlToJSON converts an inline test event to JSON. A string holding JSON
// is taken as it is.
func yamlToJSON(n *yaml.Node) ([]byte, error) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		s := strings.TrimSpace(n.Value)
		if !json.Valid([]byte(s)) {
			return nil, errors.New("not valid JSON")
		}
		return []byte(s), nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, err
	}
	v = jsonable(v)
	return json.Marshal(v)
}

// jsonable turns yaml.v3's decoded values into ones encoding/json takes
// (map[any]any cannot occur with yaml.v3, but non-string keys can).
func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = jsonable(e)
		}
		return x
	}
	return v
}

// withoutTests returns a rule file's text as testsCut reads it (for tests).
func withoutTests(data []byte) []byte {
	out, _ := io.ReadAll(&testsCut{data: data})
	return out
}

// testsCut reads a rule file's text with every rule's `tests:` block
// blanked, newlines kept, so that every other node keeps its line and
// column: for a load that reads no tests, since most of a built-in pack's
// text is its tests' events. It cuts by indentation: a line that is only
// `tests:` (outside a block scalar), and the lines after it that are
// blank, comments, indented further, or a `- ` entry at its indentation (a
// list written flush with its key). Only the embedded packs are cut;
// TestBuiltinTestsCutCleanly checks that each parses to the same nodes as
// whole, less its tests. It reads data in place, as the YAML decoder asks.
type testsCut struct {
	data []byte
	line []byte // what remains to be read of the current line
	// tests and scalar are the indentation of the block being cut and of
	// a block scalar's key, or -1.
	tests, scalar int
	started       bool
}

func (c *testsCut) Read(p []byte) (int, error) {
	if !c.started {
		c.started, c.tests, c.scalar = true, -1, -1
	}
	n := 0
	for n < len(p) {
		if len(c.line) == 0 {
			if len(c.data) == 0 {
				break
			}
			c.line = c.next()
			continue
		}
		k := copy(p[n:], c.line)
		n += k
		c.line = c.line[k:]
	}
	if n == 0 && len(c.data) == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// next takes the next line off data and returns what is read of it: the
// line, or for a line cut only its newline.
func (c *testsCut) next() []byte {
	line := c.data
	if i := bytes.IndexByte(c.data, '\n'); i >= 0 {
		line, c.data = c.data[:i+1], c.data[i+1:]
	} else {
		c.data = nil
	}
	text := bytes.TrimRight(line, " \t\r\n")
	body := bytes.TrimLeft(text, " ")
	ind := len(text) - len(body)
	if c.scalar >= 0 && (len(body) == 0 || ind > c.scalar) {
		return line // a block scalar's text
	}
	c.scalar = -1
	if c.tests >= 0 && !(len(body) == 0 || body[0] == '#' || ind > c.tests ||
		(ind == c.tests && (bytes.HasPrefix(body, []byte("- ")) || string(body) == "-"))) {
		c.tests = -1
	}
	if c.tests < 0 && string(body) == "tests:" {
		c.tests = ind
	}
	if c.tests >= 0 {
		if line[len(line)-1] == '\n' {
			return line[len(line)-1:]
		}
		return nil
	}
	if blockScalarHeader(body) {
		c.scalar = ind
	}
	return line
}

// blockScalarHeader reports whether a line's text (indentation removed)
// ends in a block scalar's indicator: `key: |`, `- >-`, `|2`, ...
func blockScalarHeader(body []byte) bool {
	if i := bytes.Index(body, []byte(" #")); i >= 0 {
		body = bytes.TrimRight(body[:i], " ")
	}
	tok := body
	if i := bytes.LastIndexByte(body, ' '); i >= 0 {
		tok = body[i+1:]
		if prev := bytes.TrimRight(body[:i], " "); !bytes.HasSuffix(prev, []byte(":")) && string(prev) != "-" {
			return false
		}
	}
	if len(tok) == 0 || (tok[0] != '|' && tok[0] != '>') {
		return false
	}
	return len(bytes.Trim(tok[1:], "0123456789+-")) == 0
}
