package sigma

import (
	"fmt"
	"path"
	"reflect"
	"regexp"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// ExtensionKey is the top-level key that carries what a Sigma rule cannot
// say and a trailwatch rule can: tests, summary, runbook, notify, enabled,
// except, dedup and threshold, with the same syntax as in a trailwatch
// rule file. Other Sigma tools keep unknown top-level keys as custom
// attributes and ignore them, so the rule stays a valid Sigma rule.
const ExtensionKey = "x-trailwatch"

// extensionKeys are the keys ExtensionKey may hold.
var extensionKeys = []string{"summary", "runbook", "notify", "enabled", "except", "dedup", "threshold", "tests"}

// DefaultSummary is the summary of a Sigma rule that gives none.
const DefaultSummary = "{{ eventName }} on {{ eventSource }} by {{ principal(userIdentity) }} from {{ sourceIPAddress }} in {{ awsRegion }}"

// IsRule reports whether a YAML document is a Sigma rule rather than a
// trailwatch rule file: a mapping with a detection, logsource or
// correlation section and no `rules` list.
func IsRule(root *yaml.Node) bool {
	if root == nil || root.Kind != yaml.MappingNode {
		return false
	}
	sigma := false
	for i := 0; i+1 < len(root.Content); i += 2 {
		switch root.Content[i].Value {
		case "rules", "lists", "macros":
			return false
		case "detection", "logsource", "correlation":
			sigma = true
		}
	}
	return sigma
}

// Error is a problem in a Sigma rule, at a 1-based line and column of its
// file.
type Error struct {
	Line, Column int
	Msg          string
}

func (e Error) Error() string { return fmt.Sprintf("%d:%d: %s", e.Line, e.Column, e.Msg) }

// Options say what a Sigma rule is translated against.
type Options struct {
	// Event is the typed CloudTrail record rule expressions are compiled
	// against; its fields' `expr` tags are the field names Sigma rules use.
	Event reflect.Type
	// FileName names the rule's file; a rule without an id takes its id
	// from the file's base name.
	FileName string
}

// Convert translates a Sigma rule (root is its document's mapping) into
// the trailwatch rule it stands for: a mapping with id, title,
// description, severity, tags, references, when, summary and the keys of
// ExtensionKey. The nodes keep their places in the Sigma file, so the rule
// loader reports every later problem where it is. It also returns the
// rule's id (for errors) and the problems found in the Sigma rule itself,
// each at its place; the rule comes back even then (with `when: false` if
// the detection is broken), so that the loader can check the rest of it
// and every problem is reported at once. Only a correlation or filter rule
// comes back nil.
func Convert(root *yaml.Node, opts Options) (*yaml.Node, string, []Error) {
	c := &converter{opts: opts, comp: &compiler{event: opts.Event}}
	out := c.convert(root)
	for _, p := range c.comp.problems {
		c.errs = append(c.errs, at(p.node, p.msg))
	}
	return out, c.id, c.errs
}

type converter struct {
	opts Options
	comp *compiler
	errs []Error
	id   string
}

func at(n *yaml.Node, msg string) Error {
	if n == nil {
		return Error{Line: 1, Column: 1, Msg: msg}
	}
	return Error{Line: n.Line, Column: n.Column, Msg: msg}
}

func (c *converter) errorf(n *yaml.Node, format string, args ...any) {
	c.errs = append(c.errs, at(n, fmt.Sprintf(format, args...)))
}

var (
	levels = map[string]string{"informational": "info", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}
	nonID  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[^a-z0-9]+`) })
	// attackID is an ATT&CK technique, software, group or mitigation id.
	attackID = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[tsgm][0-9]{4}(\.[0-9]{3})?$`) })
)

func scalar(value string, pos *yaml.Node) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value}
	if pos != nil {
		n.Line, n.Column = pos.Line, pos.Column
	}
	return n
}

func (c *converter) str(n *yaml.Node, key string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		c.errorf(n, "%s must be a string", key)
		return "", false
	}
	return n.Value, true
}

// strings reads a list of strings (or, where Sigma allows it, one string).
func (c *converter) strings(n *yaml.Node, key string) []string {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil
		}
		return []string{n.Value}
	case yaml.SequenceNode:
		var out []string
		for _, e := range n.Content {
			if s, ok := c.str(e, key+" entries"); ok {
				out = append(out, s)
			}
		}
		return out
	}
	c.errorf(n, "%s must be a list of strings", key)
	return nil
}

func (c *converter) convert(root *yaml.Node) *yaml.Node {
	nodes := map[string]*yaml.Node{}
	keys := map[string]*yaml.Node{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if _, dup := nodes[k.Value]; dup {
			c.errorf(k, "key %q given twice", k.Value)
			continue
		}
		nodes[k.Value], keys[k.Value] = v, k
	}
	// The id first, so every later error can name the rule: the rule's
	// name (Sigma's readable unique name) in trailwatch's kebab-case, else
	// its id (a UUID), else the file's base name.
	idNode := root
	if v := nodes["name"]; v != nil {
		if s, ok := c.str(v, "name"); ok {
			c.id, idNode = strings.ReplaceAll(strings.ToLower(s), "_", "-"), v
		}
	} else if v := nodes["id"]; v != nil {
		if s, ok := c.str(v, "id"); ok {
			c.id, idNode = strings.ToLower(s), v
		}
	}
	if c.id == "" {
		base := strings.TrimSuffix(path.Base(strings.ReplaceAll(c.opts.FileName, `\`, "/")), path.Ext(c.opts.FileName))
		c.id = strings.Trim(nonID().ReplaceAllString(strings.ToLower(base), "-"), "-")
	}
	for _, k := range []string{"correlation", "filter"} {
		if keys[k] != nil {
			c.errorf(keys[k], "Sigma %s rules are not supported (trailwatch counts with a rule's threshold:)", k)
		}
	}
	if keys["correlation"] != nil || keys["filter"] != nil {
		return nil
	}

	rule := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: root.Line, Column: root.Column}
	add := func(key string, keyPos, v *yaml.Node) {
		rule.Content = append(rule.Content, scalar(key, keyPos), v)
	}
	add("id", idNode, scalar(c.id, idNode))

	// A missing title is the loader's to report, as for any rule.
	if v := nodes["title"]; v != nil {
		if _, ok := c.str(v, "title"); ok {
			add("title", keys["title"], v)
		}
	}

	desc := ""
	if v := nodes["description"]; v != nil {
		desc, _ = c.str(v, "description")
	}
	if v := nodes["falsepositives"]; v != nil {
		if fp := c.strings(v, "falsepositives"); len(fp) > 0 {
			desc = strings.TrimSpace(desc + "\n\nFalse positives: " + strings.Join(fp, "; ") + ".")
		}
	}
	if desc != "" {
		add("description", keys["description"], scalar(strings.TrimSpace(desc), nodes["description"]))
	}

	severity, sevNode := "medium", root
	if v := nodes["level"]; v != nil {
		if s, ok := c.str(v, "level"); ok {
			sev, known := levels[strings.ToLower(s)]
			if !known {
				c.errorf(v, "level %q is not one of informational, low, medium, high, critical", s)
				sev = "medium"
			}
			severity, sevNode = sev, v
		}
	}
	add("severity", sevNode, scalar(severity, sevNode))

	tags := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	if v := nodes["tags"]; v != nil {
		tags.Line, tags.Column = v.Line, v.Column
		for _, t := range c.strings(v, "tags") {
			tags.Content = append(tags.Content, scalar(convertTag(t), v))
		}
	}
	tags.Content = append(tags.Content, scalar("sigma", nodes["tags"]))
	add("tags", keys["tags"], tags)

	if v := nodes["references"]; v != nil {
		refs := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: v.Line, Column: v.Column}
		for _, r := range c.strings(v, "references") {
			refs.Content = append(refs.Content, scalar(r, v))
		}
		add("references", keys["references"], refs)
	}
	for _, k := range []string{"status", "author", "date", "modified", "license"} {
		if v := nodes[k]; v != nil && v.Kind != yaml.ScalarNode {
			c.errorf(v, "%s must be a string", k)
		}
	}

	c.logsource(root, nodes["logsource"])
	when := c.detection(root, nodes["detection"])
	if when == nil {
		// The problem is reported; the rule's other parts are still
		// checked, so that every problem is reported at once.
		when = scalar("false", nodes["detection"])
	}
	add("when", keys["detection"], when)

	ext := map[string][2]*yaml.Node{}
	if v := nodes[ExtensionKey]; v != nil {
		ext = c.extension(v)
	}
	if _, ok := ext["summary"]; !ok {
		add("summary", keys["title"], scalar(DefaultSummary, nodes["title"]))
	}
	if _, ok := ext["enabled"]; !ok {
		if v := nodes["status"]; v != nil && (v.Value == "deprecated" || v.Value == "unsupported") {
			add("enabled", keys["status"], &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "false", Line: v.Line, Column: v.Column})
		}
	}
	for _, k := range extensionKeys {
		if kv, ok := ext[k]; ok {
			rule.Content = append(rule.Content, kv[0], kv[1])
		}
	}
	return rule
}

// convertTag turns a Sigma tag (namespace.name) into trailwatch's
// namespace:name convention, with ATT&CK ids upper-cased as the built-in
// packs write them (attack.t1562.008 → attack:T1562.008).
func convertTag(t string) string {
	ns, name, ok := strings.Cut(t, ".")
	if !ok {
		return t
	}
	if ns == "attack" && attackID().MatchString(name) {
		name = strings.ToUpper(name)
	}
	return ns + ":" + name
}

func (c *converter) logsource(root, n *yaml.Node) {
	if n == nil {
		c.errorf(root, "a Sigma rule needs a logsource (product: aws, service: cloudtrail)")
		return
	}
	if n.Kind != yaml.MappingNode {
		c.errorf(n, "logsource must be a mapping")
		return
	}
	got := map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "product", "service", "category":
			if s, ok := c.str(v, "logsource "+k.Value); ok {
				got[k.Value] = strings.ToLower(s)
			}
		case "definition":
		default:
			// Custom logsource attributes are allowed (pySigma keeps them).
		}
	}
	if got["product"] != "aws" || got["service"] != "cloudtrail" || got["category"] != "" {
		c.errorf(n, "logsource (product %q, service %q, category %q) is not CloudTrail: trailwatch evaluates Sigma rules with product aws, service cloudtrail and no category",
			got["product"], got["service"], got["category"])
	}
}

// detection compiles the detection section into the `when` node.
func (c *converter) detection(root, n *yaml.Node) *yaml.Node {
	if n == nil {
		c.errorf(root, "a Sigma rule needs a detection section")
		return nil
	}
	if n.Kind != yaml.MappingNode {
		c.errorf(n, "detection must be a mapping of search identifiers and a condition")
		return nil
	}
	searches := map[string]string{}
	var order []string
	var condNode *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "condition":
			condNode = v
		case "timeframe":
			c.errorf(k, "timeframe is not supported (it belongs to aggregations; use a rule's threshold:)")
		default:
			if _, dup := searches[k.Value]; dup {
				c.errorf(k, "search identifier %q defined twice", k.Value)
				continue
			}
			searches[k.Value] = c.comp.search(k.Value, v)
			order = append(order, k.Value)
		}
	}
	if condNode == nil {
		c.errorf(n, "detection has no condition")
		return nil
	}
	var conds []*yaml.Node
	switch condNode.Kind {
	case yaml.ScalarNode:
		conds = []*yaml.Node{condNode}
	case yaml.SequenceNode:
		conds = condNode.Content
	default:
		c.errorf(condNode, "condition must be a string or a list of strings")
		return nil
	}
	var parts []string
	for _, cn := range conds {
		s, ok := c.str(cn, "condition")
		if !ok {
			continue
		}
		e, _, err := compileCondition(s, searches, order)
		if err != nil {
			c.errs = append(c.errs, conditionError(cn, err.(*condError)))
			continue
		}
		parts = append(parts, "("+e+")")
	}
	if len(parts) == 0 {
		return nil
	}
	return scalar(trimParens(join(parts, " || ")), condNode)
}

// conditionError places a condition problem at its character when the
// condition is a one-line scalar.
func conditionError(n *yaml.Node, ce *condError) Error {
	e := at(n, "condition: "+ce.msg)
	if strings.Contains(n.Value, "\n") {
		return e
	}
	switch n.Style {
	case 0:
		e.Column += ce.off
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		e.Column += ce.off + 1
	}
	return e
}

// extension reads the ExtensionKey mapping.
func (c *converter) extension(n *yaml.Node) map[string][2]*yaml.Node {
	out := map[string][2]*yaml.Node{}
	if n.Kind != yaml.MappingNode {
		c.errorf(n, "%s must be a mapping (keys: %s)", ExtensionKey, strings.Join(extensionKeys, ", "))
		return out
	}
	allowed := map[string]bool{}
	for _, k := range extensionKeys {
		allowed[k] = true
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case !allowed[k.Value]:
			c.errorf(k, "%s: unknown key %q (expected one of %s)", ExtensionKey, k.Value, strings.Join(extensionKeys, ", "))
		case out[k.Value][0] != nil:
			c.errorf(k, "%s: key %q given twice", ExtensionKey, k.Value)
		default:
			out[k.Value] = [2]*yaml.Node{k, v}
		}
	}
	return out
}

// trimParens drops parentheses that enclose the whole expression (the
// condition's own grouping), for readable `validate` output.
func trimParens(e string) string {
	for len(e) >= 2 && e[0] == '(' && closing(e) == len(e)-1 {
		e = e[1 : len(e)-1]
	}
	return e
}

// closing returns the index of the parenthesis that closes e[0], skipping
// string literals.
func closing(e string) int {
	depth := 0
	for i := 0; i < len(e); i++ {
		switch e[i] {
		case '"':
			for i++; i < len(e) && e[i] != '"'; i++ {
				if e[i] == '\\' {
					i++
				}
			}
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}
