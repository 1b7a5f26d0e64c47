package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/trailwatch/trailwatch/engine/kinesis"
	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/internal/yamlerr"
	"github.com/trailwatch/trailwatch/rules"
)

// parser collects every problem of one configuration file, each at the
// line and column of the key or value it concerns.
type parser struct {
	file string
	env  func(string) (string, bool)
	errs ErrorList
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	pos := rules.Position{File: p.file, Line: 1, Column: 1}
	if n != nil && n.Line > 0 {
		pos.Line, pos.Column = n.Line, n.Column
	}
	p.errs = append(p.errs, &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) pos(n *yaml.Node) rules.Position {
	return rules.Position{File: p.file, Line: n.Line, Column: n.Column}
}

// Parse parses a configuration from data; file names it in errors and
// anchors relative paths; env looks up environment variables.
//
// Every problem is found in one pass and returned together as an
// ErrorList, each at the line and column of the key or value concerned,
// naming the key and the forms it accepts (never the value: it may be a
// secret). With problems, Parse also returns what it could decode, so a
// caller can go on to report the problems of the rules the configuration
// names; it must not run with it.
func Parse(file string, data []byte, env func(string) (string, bool)) (*Config, error) {
	p := &parser{file: file, env: env}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ErrorList{{Pos: rules.Position{File: file, Line: 1, Column: 1}, Msg: "empty configuration"}}
		}
		line, col, msg := yamlerr.Locate(data, err)
		return nil, ErrorList{{Pos: rules.Position{File: file, Line: line, Column: col}, Msg: "invalid YAML: " + msg}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		p.errorf(root, "the configuration must be a mapping of keys (%s)", strings.Join(topLevelKeys(), ", "))
		return nil, p.errs
	}
	p.expandEnv(root)
	cfg := &Config{File: file}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if prev, dup := seen[k.Value]; dup {
			p.errorf(k, "key %q given twice (first at line %d)", k.Value, prev.Line)
			continue
		}
		seen[k.Value] = k
		switch k.Value {
		case "notifiers":
			p.notifiers(v, cfg)
		case "source":
			p.source(v, cfg)
		default:
			if !slices.Contains(topLevelKeys(), k.Value) {
				p.errorf(k, "unknown key %q (expected one of %s)", k.Value, strings.Join(topLevelKeys(), ", "))
				continue
			}
			// Each top-level key on its own, so one mistake does not hide
			// the problems of the other sections.
			one := &yaml.Node{Kind: yaml.MappingNode, Line: root.Line, Column: root.Column, Content: root.Content[i : i+2]}
			p.decodeStrict(one, cfg)
		}
	}
	p.check(root, cfg)
	cfg.resolvePaths()
	if len(p.errs) > 0 {
		p.errs.Sort()
		return cfg, p.errs
	}
	return cfg, nil
}

var envRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`) })

// expandEnv replaces ${NAME} in every scalar value (not in keys).
func (p *parser) expandEnv(n *yaml.Node) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			p.expandEnv(n.Content[i])
		}
	case yaml.SequenceNode, yaml.DocumentNode:
		for _, c := range n.Content {
			p.expandEnv(c)
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return
		}
		n.Value = envRe().ReplaceAllStringFunc(n.Value, func(m string) string {
			sm := envRe().FindStringSubmatch(m)
			v, set := p.env(sm[1])
			if set && v != "" {
				return v
			}
			if sm[2] != "" {
				return sm[3]
			}
			if set {
				p.errorf(n, "environment variable %s is set but empty", sm[1])
			} else {
				p.errorf(n, "environment variable %s is not set", sm[1])
			}
			return ""
		})
		if n.Style == 0 {
			// Re-resolve the plain scalar's type (a port from ${SMTP_PORT}).
			n.Tag = ""
		}
	}
}

// decodeStrict decodes mapping n into out (a pointer to a struct),
// reporting every unknown key and every value of the wrong form at its
// own place; it returns whether n had no problem. Fields whose values
// are wrong keep their zero value.
func (p *parser) decodeStrict(n *yaml.Node, out any) bool { return p.decodeStrictAt(n, out, "") }

// decodeStrictAt is decodeStrict for n at the key path prefix ("a.b."),
// which names the place of each problem.
func (p *parser) decodeStrictAt(n *yaml.Node, out any, prefix string) bool {
	before := len(p.errs)
	if !strings.HasSuffix(prefix, ": ") {
		prefix = strings.TrimSuffix(prefix, ".")
	}
	p.decodeValue(n, reflect.ValueOf(out).Elem(), prefix)
	return len(p.errs) == before
}

var durationType = reflect.TypeOf(time.Duration(0))

// What each kind of value must look like, for error messages.
const (
	wantDuration = "a duration: a number and a unit (ms, s, m, h), such as 500ms, 30s, 5m or 1h30m"
	wantBool     = "true or false"
	wantInt      = "a whole number"
	wantUint     = "a whole number, 0 or more"
	wantFloat    = "a number"
	wantString   = "a string"
)

// decodeValue decodes n into v, which path names in errors.
func (p *parser) decodeValue(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // absent: the zero value, as if the key were not given
	}
	t := v.Type()
	switch {
	case t == durationType:
		p.scalar(n, v, path, wantDuration)
	case t.Kind() == reflect.Pointer:
		nv := reflect.New(t.Elem())
		p.decodeValue(n, nv.Elem(), path)
		v.Set(nv)
	case t.Kind() == reflect.Struct:
		fields := fieldsOf(t)
		if n.Kind != yaml.MappingNode {
			p.errorf(n, "%s: want a mapping with the keys %s, not %s", label(path), strings.Join(sortedNames(fields), ", "), kindName(n))
			return
		}
		seen := map[string]*yaml.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if prev, dup := seen[k.Value]; dup {
				p.errorf(k, "key %q given twice%s (first at line %d)", k.Value, where(path), prev.Line)
				continue
			}
			seen[k.Value] = k
			f, ok := fields[k.Value]
			if !ok {
				p.errorf(k, "unknown key %q%s (expected one of %s)", k.Value, where(path), strings.Join(sortedNames(fields), ", "))
				continue
			}
			p.decodeValue(val, v.FieldByIndex(f.Index), join(path, k.Value))
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			p.errorf(n, "%s: want a list, such as [a, b] or one `- item` a line, not %s", label(path), kindName(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, c := range n.Content {
			p.decodeValue(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String:
		if n.Kind != yaml.MappingNode {
			p.errorf(n, "%s: want a mapping of names to values, not %s", label(path), kindName(n))
			return
		}
		m := reflect.MakeMapWithSize(t, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			key := reflect.ValueOf(k.Value).Convert(t.Key())
			if m.MapIndex(key).IsValid() {
				p.errorf(k, "key %q given twice%s", k.Value, where(path))
				continue
			}
			ev := reflect.New(t.Elem()).Elem()
			p.decodeValue(val, ev, join(path, k.Value))
			m.SetMapIndex(key, ev)
		}
		v.Set(m)
	case t.Kind() == reflect.Interface:
		var x any
		if err := n.Decode(&x); err != nil {
			p.errorf(n, "%s: %s", label(path), redactYAMLError(err.Error()))
			return
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
	case t.Kind() == reflect.Bool:
		p.scalar(n, v, path, wantBool)
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		p.scalar(n, v, path, wantInt)
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		p.scalar(n, v, path, wantUint)
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		p.scalar(n, v, path, wantFloat)
	case t.Kind() == reflect.String:
		p.scalar(n, v, path, wantString)
	default:
		if err := n.Decode(v.Addr().Interface()); err != nil {
			p.errorf(n, "%s: %s", label(path), redactYAMLError(err.Error()))
		}
	}
}

// scalar decodes scalar n into v, or reports that path wants the form want.
func (p *parser) scalar(n *yaml.Node, v reflect.Value, path, want string) {
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, "%s: want %s, not %s", label(path), want, kindName(n))
		return
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		p.errorf(n, "%s: want %s", label(path), want)
	}
}

// redactYAMLError drops the offending value from yaml.v3's message
// ("cannot unmarshal !!str `secret` into int"): it may be a secret.
func redactYAMLError(msg string) string {
	msg = regexp.MustCompile(`^yaml: (unmarshal errors:\n\s*)?(line \d+: )?`).ReplaceAllString(msg, "")
	return regexp.MustCompile("`[^`]*`").ReplaceAllString(msg, "value")
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "a single value"
}

// Paths name places in errors: "source.cloudwatch.lookback", or, under a
// notifier, `notifier "mail": smtp_port`.
func label(path string) string {
	if path == "" {
		return "the configuration"
	}
	return strings.TrimSuffix(path, ": ")
}

func join(path, key string) string {
	if path == "" || strings.HasSuffix(path, ": ") {
		return path + key
	}
	return path + "." + key
}

func where(path string) string {
	if path == "" {
		return ""
	}
	return " in " + label(path)
}

// field is one YAML key of a struct: the field's index path (inline
// structs included) and type.
type field struct {
	Index []int
	Type  reflect.Type
}

// fieldsOf returns the YAML keys of struct type t.
func fieldsOf(t reflect.Type) map[string]field {
	out := map[string]field{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := yamlName(f)
		if name == "-" {
			continue
		}
		if strings.Contains(f.Tag.Get("yaml"), ",inline") {
			for k, v := range fieldsOf(f.Type) {
				out[k] = field{Index: append([]int{i}, v.Index...), Type: v.Type}
			}
			continue
		}
		out[name] = field{Index: []int{i}, Type: f.Type}
	}
	return out
}

// yamlName is the key of struct field f ("-" when it has none).
func yamlName(f reflect.StructField) string {
	name := strings.Split(f.Tag.Get("yaml"), ",")[0]
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name
}

// topLevelKeys are the keys of a configuration, sorted: the Config
// struct's and notifiers, which the parser decodes by type.
func topLevelKeys() []string {
	keys := append(sortedNames(fieldsOf(reflect.TypeOf(Config{}))), "notifiers")
	sort.Strings(keys)
	return keys
}

func sortedNames(m map[string]field) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// nodeAt returns the value at a path of keys (strings) and list indexes
// (ints) under n, or nil.
func nodeAt(n *yaml.Node, path ...any) *yaml.Node {
	for _, step := range path {
		if n == nil {
			return nil
		}
		switch s := step.(type) {
		case string:
			var next *yaml.Node
			for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == s {
					next = n.Content[i+1]
				}
			}
			n = next
		case int:
			if n.Kind != yaml.SequenceNode || s < 0 || s >= len(n.Content) {
				return nil
			}
			n = n.Content[s]
		}
	}
	return n
}

// keyNode returns the value at the path of keys under root, or root when
// there is none, to place an error.
func keyNode(root *yaml.Node, keys ...string) *yaml.Node {
	path := make([]any, len(keys))
	for i, k := range keys {
		path[i] = k
	}
	if n := nodeAt(root, path...); n != nil {
		return n
	}
	return root
}

var (
	leadingKeyRe  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^([a-z][a-z0-9_]*)(?:\[(\d+)\])?: `) })
	leadingWordRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^([a-z][a-z0-9_]*) `) })
)

// validation reports the errors of a block's Validate method (joined with
// errors.Join), each at the key it begins with ("lookback: must be ...",
// "slack: webhook_url: ...", "log_groups[1]: ...") when block has that
// key, else at the block. Each message is prefixed with what.
func (p *parser) validation(block *yaml.Node, what string, err error) {
	for _, e := range splitErrors(err) {
		msg := e.Error()
		at := block
		rest := msg
		for try := 0; try < 2; try++ {
			m := leadingKeyRe().FindStringSubmatch(rest)
			if m == nil {
				// "max must be at least 1": a key as the sentence's subject.
				if w := leadingWordRe().FindStringSubmatch(rest); w != nil {
					if n := nodeAt(block, w[1]); n != nil {
						at = n
					}
				}
				break
			}
			if n := nodeAt(block, m[1]); n != nil {
				at = n
				if m[2] != "" {
					i, _ := strconv.Atoi(m[2])
					if item := nodeAt(n, i); item != nil {
						at = item
					}
				}
				break
			}
			rest = rest[len(m[0]):] // a leading "slack: " names the type, not a key
		}
		p.errorf(at, "%s: %s", what, msg)
	}
}

func splitErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, splitErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// notifiers decodes the `notifiers` list: each entry's name, type,
// rate_limit and the type's own keys.
func (p *parser) notifiers(n *yaml.Node, cfg *Config) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "notifiers: want a list of notifiers, each a mapping with a name and a type (one of %s)", strings.Join(NotifierTypes(), ", "))
		return
	}
	names := map[string]rules.Position{}
	for i, nn := range n.Content {
		what := fmt.Sprintf("notifiers[%d]", i)
		if nn.Kind != yaml.MappingNode {
			p.errorf(nn, "%s: want a mapping with a name and a type (one of %s), not %s", what, strings.Join(NotifierTypes(), ", "), kindName(nn))
			continue
		}
		var nameNode, typeNode, rateNode *yaml.Node
		spec := &yaml.Node{Kind: yaml.MappingNode, Line: nn.Line, Column: nn.Column}
		for j := 0; j+1 < len(nn.Content); j += 2 {
			k, v := nn.Content[j], nn.Content[j+1]
			switch k.Value {
			case "name":
				nameNode = v
			case "type":
				typeNode = v
			case "rate_limit":
				rateNode = v
			default:
				spec.Content = append(spec.Content, k, v)
			}
		}
		var name, typ string
		pos := p.pos(nn)
		switch {
		case nameNode == nil:
			p.errorf(nn, "%s: notifier has no name (routes and rules name it)", what)
		case nameNode.Kind != yaml.ScalarNode || nameNode.Value == "":
			p.errorf(nameNode, "%s: name: want a non-empty string", what)
		default:
			name = nameNode.Value
			what = fmt.Sprintf("notifier %q", name)
			if prev, dup := names[name]; dup {
				p.errorf(nameNode, "notifier %q is defined twice (first at %s)", name, prev)
			}
			names[name] = pos
		}
		if typeNode == nil {
			p.errorf(nn, "%s has no type (one of %s)", what, strings.Join(NotifierTypes(), ", "))
			continue
		}
		typ = typeNode.Value
		kind, ok := registry[typ]
		if !ok {
			p.errorf(typeNode, "%s: unknown type %q (one of %s)", what, typ, strings.Join(NotifierTypes(), ", "))
			continue
		}
		// The type's keys, besides name, type and rate_limit.
		fields := fieldsOf(kind.specType)
		allowed := append(sortedNames(fields), "name", "rate_limit", "type")
		sort.Strings(allowed)
		allowed = compactStrings(allowed)
		known := &yaml.Node{Kind: yaml.MappingNode, Line: spec.Line, Column: spec.Column}
		for j := 0; j+1 < len(spec.Content); j += 2 {
			k := spec.Content[j]
			if _, ok := fields[k.Value]; !ok || k.Value == "type" {
				p.errorf(k, "unknown key %q in %s (type %s accepts %s)", k.Value, what, typ, strings.Join(allowed, ", "))
				continue
			}
			known.Content = append(known.Content, k, spec.Content[j+1])
		}
		specVal := reflect.New(kind.specType)
		decoded := p.decodeStrictAt(known, specVal.Interface(), what+": ")
		nt := Notifier{Name: name, Type: typ, Spec: specVal.Interface(), Pos: pos}
		if decoded {
			if err := kind.validate(specVal.Interface()); err != nil {
				p.validation(nn, what, err)
			}
		}
		if rateNode != nil {
			var rl lifecycle.StormConfig
			if p.decodeStrictAt(rateNode, &rl, what+": rate_limit") {
				if err := rl.Validate(); err != nil {
					p.validation(rateNode, what, err)
				} else {
					nt.RateLimit = &rl
				}
			}
		}
		cfg.Notifiers = append(cfg.Notifiers, nt)
	}
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// check validates what the types cannot say: ranges, the source's own
// rules, and what spans sections (every notifier a route names exists).
func (p *parser) check(root *yaml.Node, cfg *Config) {
	if cfg.QuietAfter < 0 {
		p.errorf(keyNode(root, "quiet_after"), "quiet_after: must not be negative (0 turns the quiet alert off)")
	}
	if cfg.Reload.Debounce < 0 {
		p.errorf(keyNode(root, "reload", "debounce"), "reload: debounce must not be negative")
	}
	for _, c := range []struct {
		key string
		neg bool
	}{
		{"dedup_window", cfg.Lifecycle.DedupWindow < 0},
		{"max_keys", cfg.Lifecycle.MaxKeys < 0},
		{"samples", cfg.Lifecycle.Samples < 0},
	} {
		if c.neg {
			p.errorf(keyNode(root, "lifecycle", c.key), "lifecycle: %s must not be negative", c.key)
		}
	}
	if ss := cfg.SharedState; ss != nil {
		at := keyNode(root, "shared_state")
		if strings.TrimSpace(ss.DynamoDBTable) == "" {
			p.errorf(at, "shared_state: dynamodb_table is required")
		}
		if ss.Lease < 0 {
			p.errorf(keyNode(root, "shared_state", "lease"), "shared_state: lease must not be negative")
		}
		if ss.TTL < 0 {
			p.errorf(keyNode(root, "shared_state", "ttl"), "shared_state: ttl must not be negative")
		}
		if k := SourceAs[kinesis.Config](cfg.Source); k != nil && k.LeaseTable != "" && k.LeaseTable == ss.DynamoDBTable {
			p.errorf(keyNode(root, "shared_state", "dynamodb_table"), "shared_state: dynamodb_table must not be the lease table of source.kinesis")
		}
	}
	p.checkDelivery(root, cfg)
	p.checkRoutes(root, cfg)
	p.checkRuleSettings(root, cfg)
}

// checkRoutes places each route problem at its value.
func (p *parser) checkRoutes(root *yaml.Node, cfg *Config) {
	known := map[string]bool{}
	for _, n := range cfg.Notifiers {
		known[n.Name] = true
	}
	sevs := strings.Join(rules.Severities, ", ")
	for i, r := range cfg.Routes {
		rn := nodeAt(root, "routes", i)
		what := fmt.Sprintf("routes[%d]", i)
		for j, s := range r.Severity {
			if rules.SeverityRank(s) < 0 {
				p.errorf(nodeAt(rn, "severity", j), "%s: severity %q is not one of %s", what, s, sevs)
			}
		}
		if r.MinSeverity != "" && rules.SeverityRank(r.MinSeverity) < 0 {
			p.errorf(nodeAt(rn, "min_severity"), "%s: min_severity %q is not one of %s", what, r.MinSeverity, sevs)
		}
		if len(r.Notify) == 0 {
			p.errorf(rn, "%s: notify is empty: name the notifiers this route sends to", what)
		}
		for j, name := range r.Notify {
			if !known[name] && !p.notifierDeclared(root, name) {
				p.errorf(nodeAt(rn, "notify", j), "%s: unknown notifier %q (defined: %s)", what, name, strings.Join(notifierNames(root), ", "))
			}
		}
	}
}

// checkRuleSettings checks rule_overrides and records where lists and
// overrides are, for the rule loader's errors.
func (p *parser) checkRuleSettings(root *yaml.Node, cfg *Config) {
	if ln := nodeAt(root, "lists"); ln != nil && ln.Kind == yaml.MappingNode {
		cfg.listPos = map[string]rules.Position{}
		for i := 0; i+1 < len(ln.Content); i += 2 {
			cfg.listPos[ln.Content[i].Value] = p.pos(ln.Content[i])
		}
	}
	for i, o := range cfg.RuleOverrides {
		on := nodeAt(root, "rule_overrides", i)
		if on == nil {
			on = root
		}
		cfg.overridePos = append(cfg.overridePos, p.pos(on))
		what := fmt.Sprintf("rule_overrides[%d]", i)
		if len(o.Rules) == 0 {
			p.errorf(on, "%s: rules is required: the rule ids to change (`*` wildcards allowed)", what)
		}
		if o.Enabled == nil && o.Severity == "" {
			p.errorf(on, "%s: give enabled: true|false, severity: (%s), or both", what, strings.Join(rules.Severities, ", "))
		}
		if o.Severity != "" && rules.SeverityRank(o.Severity) < 0 {
			p.errorf(nodeAt(on, "severity"), "%s: severity %q is not one of %s", what, o.Severity, strings.Join(rules.Severities, ", "))
		}
	}
}

// notifierDeclared reports whether a notifier of that name is declared,
// even if its own definition had errors (so one mistake is reported once).
func (p *parser) notifierDeclared(root *yaml.Node, name string) bool {
	for _, n := range notifierNames(root) {
		if n == name {
			return true
		}
	}
	return false
}

// notifierNames lists the names the notifiers list declares.
func notifierNames(root *yaml.Node) []string {
	var out []string
	seen := map[string]bool{}
	if ns := nodeAt(root, "notifiers"); ns != nil {
		for _, nn := range ns.Content {
			if v := nodeAt(nn, "name"); v != nil && v.Value != "" && !seen[v.Value] {
				seen[v.Value] = true
				out = append(out, v.Value)
			}
		}
	}
	return out
}
