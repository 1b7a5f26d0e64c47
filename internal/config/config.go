// Package config loads trailwatch's service configuration: the source,
// the state directory, the rules, the named notifiers and the routes that
// send alerts to them.
//
// Unknown keys are errors, reported with file:line:col like rule problems.
// `${NAME}` (or `${NAME:-default}`) in a value is replaced with the
// environment variable's value after the YAML is parsed, so a secret can
// neither break nor inject YAML structure, and it never appears in an
// error message: errors name keys and places, not values.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/trailwatch/trailwatch/engine/cloudwatch"
	"github.com/trailwatch/trailwatch/engine/kinesis"
	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/rules"
)

// Config is a whole trailwatch configuration file.
type Config struct {
	Source Source `yaml:"source"`
	// StateDir holds checkpoints and the alert outbox.
	StateDir string `yaml:"state_dir"`
	// Rules are rule paths and builtin:NAME, as --rules; empty means every
	// built-in pack. Relative paths are relative to the config file.
	Rules []string `yaml:"rules"`
	// Listen is the address of the metrics and health endpoints (empty: off).
	Listen string `yaml:"listen"`
	// QuietAfter raises a built-in alert when a log group delivers no
	// records for this long, and another when records resume (0: off).
	QuietAfter time.Duration `yaml:"quiet_after"`
	// Lifecycle sets the alert lifecycle's defaults (dedup window, memory
	// bound, samples kept per aggregated alert).
	Lifecycle lifecycle.Config `yaml:"lifecycle"`
	// Lists replaces named lists that the rule files define (a rule pack's
	// tunables: allowed_regions, trusted_accounts, ...).
	Lists map[string][]any `yaml:"lists"`
	// Notifiers are the named alert destinations.
	Notifiers []Notifier `yaml:"-"`
	// Routes send alerts to notifiers; see Route.
	Routes []Route `yaml:"routes"`
	// SharedState, when set, records every delivery in a DynamoDB table
	// shared by every process working on the same alerts (several `run`
	// instances on one Kinesis stream), so none sends an alert another
	// already delivered.
	SharedState *SharedState `yaml:"shared_state"`
	// Reload sets how `run` reloads the configuration and rules besides
	// SIGHUP.
	Reload Reload `yaml:"reload"`

	// File is the path the configuration was read from.
	File string `yaml:"-"`
}

// Source says where records come from: one of its fields is set.
type Source struct {
	// CloudWatch polls log groups with FilterLogEvents.
	CloudWatch *cloudwatch.Config `yaml:"cloudwatch"`
	// Kinesis reads a Kinesis data stream that a subscription filter
	// feeds, sharing its shards with the other instances.
	Kinesis *kinesis.Config `yaml:"kinesis"`
}

// SharedState is the `shared_state` block: the delivery ledger, the dedup
// windows and threshold groups, and the silences, in one DynamoDB table
// (see engine/dynamostate).
type SharedState struct {
	// DynamoDBTable is the delivery table (partition key pk, a string;
	// Time to Live on expires_at).
	DynamoDBTable string `yaml:"dynamodb_table"`
	// Region is the table's AWS region; empty means source.kinesis's
	// region if set, else the SDK's default chain.
	Region string `yaml:"region"`
	// Lease is how long a claimed delivery holds before another process
	// may retake it (0: 60s). It must exceed the longest notification.
	Lease time.Duration `yaml:"lease"`
	// TTL is how long a delivery record is kept (0: 7 days).
	TTL time.Duration `yaml:"ttl"`
}

// Reload is the `reload` block of `run`.
type Reload struct {
	// Watch reloads when the configuration file or a file under a rule
	// path changes, as SIGHUP does.
	Watch bool `yaml:"watch"`
	// Debounce is how long the watched files must stay quiet after a
	// change before the reload (0: 1s), so that an editor's several writes
	// or a `git pull` make one reload; files that never stop changing are
	// reloaded every ten debounces all the same.
	Debounce time.Duration `yaml:"debounce"`
}

// Route sends matching alerts to notifiers. An alert matches a route when
// every selector the route gives matches (a route with no selector matches
// every alert). Routes are tried in order and the first match wins, unless
// it says `continue: true`; the notifiers a rule names in its own `notify`
// are added to whatever the routes chose.
type Route struct {
	// Severity lists severities; MinSeverity matches that one and above.
	Severity    []string `yaml:"severity"`
	MinSeverity string   `yaml:"min_severity"`
	// Tags matches when the rule has any of these tags (`*` wildcards allowed).
	Tags []string `yaml:"tags"`
	// Rules matches rule ids (`*` wildcards allowed).
	Rules    []string `yaml:"rules"`
	Notify   []string `yaml:"notify"`
	Continue bool     `yaml:"continue"`

	pos rules.Position
}

// Notifier is one named notifier: its type and its type's configuration,
// already decoded and validated.
type Notifier struct {
	Name string
	Type string
	// RateLimit, when set, folds this notifier's alerts above a rate into
	// periodic digests (storm control) instead of dropping them.
	RateLimit *lifecycle.StormConfig
	// Spec is the type's Config value (e.g. slack.Config).
	Spec any
	Pos  rules.Position
}

// Error is a problem in the configuration file.
type Error = rules.Error

// ErrorList is every problem found in a configuration file.
type ErrorList = rules.ErrorList

// Load reads and validates a configuration file. The problems it finds are
// returned together as an ErrorList.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return Parse(path, data, os.LookupEnv)
}

type parser struct {
	file string
	env  func(string) (string, bool)
	errs ErrorList
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	pos := rules.Position{File: p.file, Line: 1, Column: 1}
	if n != nil {
		pos.Line, pos.Column = n.Line, n.Column
	}
	p.errs = append(p.errs, &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

// Parse parses a configuration from data; file names it in errors and
// anchors relative rule paths; env looks up environment variables.
func Parse(file string, data []byte, env func(string) (string, bool)) (*Config, error) {
	p := &parser{file: file, env: env}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ErrorList{{Pos: rules.Position{File: file, Line: 1, Column: 1}, Msg: "empty configuration"}}
		}
		return nil, ErrorList{{Pos: rules.Position{File: file, Line: 1, Column: 1}, Msg: "invalid YAML: " + err.Error()}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		p.errorf(root, "the configuration must be a mapping")
		return nil, p.errs
	}
	p.expandEnv(root)
	cfg := &Config{File: file}

	var notifiersNode *yaml.Node
	rest := &yaml.Node{Kind: yaml.MappingNode, Line: root.Line, Column: root.Column}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "notifiers" {
			notifiersNode = root.Content[i+1]
			continue
		}
		rest.Content = append(rest.Content, root.Content[i], root.Content[i+1])
	}
	// Each top-level key on its own, so one mistake does not hide the
	// problems of the other sections.
	for i := 0; i+1 < len(rest.Content); i += 2 {
		one := &yaml.Node{Kind: yaml.MappingNode, Line: rest.Line, Column: rest.Column, Content: rest.Content[i : i+2]}
		if p.decodeStrict(one, cfg) && rest.Content[i].Value == "routes" {
			p.routes(one, cfg)
		}
	}
	if notifiersNode != nil {
		p.notifiers(notifiersNode, cfg)
	}
	p.check(root, cfg)
	if len(p.errs) > 0 {
		p.errs.Sort()
		return nil, p.errs
	}
	return cfg, nil
}

var envRe = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

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
		n.Value = envRe.ReplaceAllStringFunc(n.Value, func(m string) string {
			sm := envRe.FindStringSubmatch(m)
			if v, ok := p.env(sm[1]); ok && v != "" {
				return v
			}
			if sm[2] != "" {
				return sm[3]
			}
			p.errorf(n, "environment variable %s is not set", sm[1])
			return ""
		})
		if n.Style == 0 {
			// Re-resolve the plain scalar's type (a port from ${SMTP_PORT}).
			n.Tag = ""
		}
	}
}

// decodeStrict decodes n into out after checking that every key of n (and
// of nested mappings) is a field of out's type.
func (p *parser) decodeStrict(n *yaml.Node, out any) bool {
	before := len(p.errs)
	p.checkKeys(n, reflect.TypeOf(out).Elem(), "")
	if len(p.errs) > before {
		return false
	}
	if err := n.Decode(out); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, m := range te.Errors {
				p.errs = append(p.errs, &Error{Pos: rules.Position{File: p.file, Line: lineOf(m), Column: 1}, Msg: redactYAMLError(m)})
			}
		} else {
			p.errorf(n, "%v", err)
		}
		return false
	}
	return true
}

var yamlLineRe = regexp.MustCompile(`^line (\d+): `)

func lineOf(msg string) int {
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		var n int
		fmt.Sscanf(m[1], "%d", &n)
		return n
	}
	return 1
}

// redactYAMLError drops the offending value from yaml.v3's message
// ("cannot unmarshal !!str `secret` into int"): it may be a secret.
func redactYAMLError(msg string) string {
	msg = yamlLineRe.ReplaceAllString(msg, "")
	return regexp.MustCompile("`[^`]*`").ReplaceAllString(msg, "value")
}

var durationType = reflect.TypeOf(time.Duration(0))

// checkKeys reports mapping keys that t has no yaml field for.
func (p *parser) checkKeys(n *yaml.Node, t reflect.Type, prefix string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct && t != durationType:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			if !ok {
				p.errorf(k, "unknown key %q%s (expected one of %s)", k.Value, where(prefix), strings.Join(sortedNames(fields), ", "))
				continue
			}
			p.checkKeys(v, f.Type, prefix+k.Value+".")
		}
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for _, c := range n.Content {
			p.checkKeys(c, t.Elem(), prefix)
		}
	}
}

func where(prefix string) string {
	if prefix == "" {
		return ""
	}
	return " in " + strings.TrimSuffix(prefix, ".")
}

func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name := strings.Split(tag, ",")[0]
		if name == "-" {
			continue
		}
		if strings.Contains(tag, ",inline") {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f
	}
	return out
}

func sortedNames(m map[string]reflect.StructField) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// routes records each route's position for later errors.
func (p *parser) routes(root *yaml.Node, cfg *Config) {
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "routes" || root.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		for j, rn := range root.Content[i+1].Content {
			if j < len(cfg.Routes) {
				cfg.Routes[j].pos = rules.Position{File: p.file, Line: rn.Line, Column: rn.Column}
			}
		}
	}
}

func (p *parser) notifiers(n *yaml.Node, cfg *Config) {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "notifiers must be a list")
		return
	}
	names := map[string]rules.Position{}
	for _, nn := range n.Content {
		if nn.Kind != yaml.MappingNode {
			p.errorf(nn, "each notifier must be a mapping with a name and a type")
			continue
		}
		var name, typ string
		var nameNode, typeNode, rateNode *yaml.Node
		spec := &yaml.Node{Kind: yaml.MappingNode, Line: nn.Line, Column: nn.Column}
		for i := 0; i+1 < len(nn.Content); i += 2 {
			k, v := nn.Content[i], nn.Content[i+1]
			switch k.Value {
			case "name":
				name, nameNode = v.Value, v
			case "type":
				typ, typeNode = v.Value, v
			case "rate_limit":
				rateNode = v
			default:
				spec.Content = append(spec.Content, k, v)
			}
		}
		pos := rules.Position{File: p.file, Line: nn.Line, Column: nn.Column}
		switch {
		case nameNode == nil:
			p.errorf(nn, "notifier has no name")
		case name == "":
			p.errorf(nameNode, "notifier name is empty")
		default:
			if prev, dup := names[name]; dup {
				p.errorf(nameNode, "notifier %q is defined twice (first at %s)", name, prev)
			}
			names[name] = pos
		}
		if typeNode == nil {
			p.errorf(nn, "notifier %q has no type (one of %s)", name, strings.Join(NotifierTypes(), ", "))
			continue
		}
		kind, ok := registry[typ]
		if !ok {
			p.errorf(typeNode, "notifier %q: unknown type %q (one of %s)", name, typ, strings.Join(NotifierTypes(), ", "))
			continue
		}
		specVal := reflect.New(kind.specType)
		if !p.decodeStrict(spec, specVal.Interface()) {
			continue
		}
		if err := kind.validate(specVal.Interface()); err != nil {
			for _, e := range splitErrors(err) {
				p.errorf(nn, "notifier %q: %v", name, e)
			}
			continue
		}
		n := Notifier{Name: name, Type: typ, Spec: specVal.Interface(), Pos: pos}
		if rateNode != nil {
			var rl lifecycle.StormConfig
			one := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: "rate_limit"}, rateNode}}
			var holder struct {
				RateLimit *lifecycle.StormConfig `yaml:"rate_limit"`
			}
			if !p.decodeStrict(one, &holder) {
				continue
			}
			rl = *holder.RateLimit
			if err := rl.Validate(); err != nil {
				p.errorf(rateNode, "notifier %q: rate_limit: %v", name, err)
				continue
			}
			n.RateLimit = &rl
		}
		cfg.Notifiers = append(cfg.Notifiers, n)
	}
}

func splitErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// check validates what spans sections: the source, severities in routes,
// and that every notifier a route names exists.
func (p *parser) check(root *yaml.Node, cfg *Config) {
	if cfg.QuietAfter < 0 {
		p.errorf(root, "quiet_after: must not be negative")
	}
	if cfg.Reload.Debounce < 0 {
		p.errorf(keyNode(root, "reload", "debounce"), "reload: debounce must not be negative")
	}
	if cfg.Lifecycle.DedupWindow < 0 || cfg.Lifecycle.MaxKeys < 0 || cfg.Lifecycle.Samples < 0 {
		p.errorf(root, "lifecycle: dedup_window, max_keys and samples must not be negative")
	}
	if cfg.Source.CloudWatch != nil {
		cfg.Source.CloudWatch.SetDefaults()
		if err := cfg.Source.CloudWatch.Validate(); err != nil {
			for _, e := range splitErrors(err) {
				p.errorf(root, "source.cloudwatch: %v", e)
			}
		}
	}
	if cfg.Source.CloudWatch != nil && cfg.Source.Kinesis != nil {
		p.errorf(root, "source: give one of cloudwatch and kinesis, not both")
	}
	if cfg.Source.Kinesis != nil {
		cfg.Source.Kinesis.SetDefaults()
		if err := cfg.Source.Kinesis.Validate(); err != nil {
			for _, e := range splitErrors(err) {
				p.errorf(root, "source.kinesis: %v", e)
			}
		}
	}
	if ss := cfg.SharedState; ss != nil {
		if strings.TrimSpace(ss.DynamoDBTable) == "" {
			p.errorf(root, "shared_state: dynamodb_table is required")
		}
		if ss.Lease < 0 || ss.TTL < 0 {
			p.errorf(root, "shared_state: lease and ttl must not be negative")
		}
		if k := cfg.Source.Kinesis; k != nil && k.LeaseTable != "" && k.LeaseTable == ss.DynamoDBTable {
			p.errorf(root, "shared_state: dynamodb_table must not be the lease table of source.kinesis")
		}
	}
	known := map[string]bool{}
	for _, n := range cfg.Notifiers {
		known[n.Name] = true
	}
	for _, r := range cfg.Routes {
		at := &yaml.Node{Line: r.pos.Line, Column: r.pos.Column}
		for _, s := range r.Severity {
			if rules.SeverityRank(s) < 0 {
				p.errorf(at, "route: severity %q is not one of %s", s, strings.Join(rules.Severities, ", "))
			}
		}
		if r.MinSeverity != "" && rules.SeverityRank(r.MinSeverity) < 0 {
			p.errorf(at, "route: min_severity %q is not one of %s", r.MinSeverity, strings.Join(rules.Severities, ", "))
		}
		if len(r.Notify) == 0 {
			p.errorf(at, "route: notify is empty")
		}
		for _, name := range r.Notify {
			if !known[name] && !p.notifierDeclared(root, name) {
				p.errorf(at, "route: unknown notifier %q", name)
			}
		}
	}
}

// keyNode returns the value at the path of keys under root, or root
// when there is none, to place an error.
func keyNode(root *yaml.Node, keys ...string) *yaml.Node {
	n := root
	for _, k := range keys {
		var next *yaml.Node
		for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return root
		}
		n = next
	}
	return n
}

// notifierDeclared reports whether a notifier of that name is declared,
// even if its own definition had errors (so one mistake is reported once).
func (p *parser) notifierDeclared(root *yaml.Node, name string) bool {
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "notifiers" {
			continue
		}
		for _, nn := range root.Content[i+1].Content {
			for j := 0; j+1 < len(nn.Content); j += 2 {
				if nn.Content[j].Value == "name" && nn.Content[j+1].Value == name {
					return true
				}
			}
		}
	}
	return false
}

// CheckRuleNotifiers reports rules whose `notify` names a notifier the
// configuration does not define.
func (c *Config) CheckRuleNotifiers(set *rules.Set) error {
	known := map[string]bool{}
	for _, n := range c.Notifiers {
		known[n.Name] = true
	}
	var errs ErrorList
	for _, r := range set.Rules() {
		for _, name := range r.Notify {
			if !known[name] {
				errs = append(errs, &Error{Pos: r.Pos, RuleID: r.ID, Msg: fmt.Sprintf("notify: unknown notifier %q (not defined in %s)", name, c.File)})
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// RulePaths returns the rule paths with relative ones resolved against the
// config file's directory.
func (c *Config) RulePaths() []string {
	out := make([]string, 0, len(c.Rules))
	dir := "."
	if i := strings.LastIndexByte(c.File, '/'); i >= 0 {
		dir = c.File[:i]
	}
	for _, r := range c.Rules {
		if r == "builtin" || strings.HasPrefix(r, "builtin:") || strings.HasPrefix(r, "/") || dir == "." {
			out = append(out, r)
			continue
		}
		out = append(out, dir+"/"+r)
	}
	return out
}
