package rules

import (
	"encoding/binary"
	"maps"
	"slices"
	"sort"
	"unsafe"

	"github.com/expr-lang/expr/ast"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// index picks the rules that can match an event. A rule whose condition
// requires eventName to be one of a set of constants (in its top-level
// conjunction, or in every branch of a top-level disjunction) is filed under
// those names; every other rule is evaluated for every event. Real trails
// are dominated by a few read-only calls that no rule names, so most events
// are never given to most rules. A rule that names no eventName but
// requires errorCode to be one of a set of constants is filed under those
// codes the same way.
type index struct {
	// byName holds, under each eventName a rule is filed under, those
	// rules and the unindexed ones, merged in load order: a record is
	// offered one list (or two, with byError), not a merge of three.
	byName    nameTable
	byError   nameTable // by errorCode; not merged with unindexed
	unindexed []*Rule
}

// IndexInfo says how a rule is indexed, for `validate --explain`.
type IndexInfo struct {
	EventNames []string // empty: see ErrorCodes
	// ErrorCodes, for a rule with no EventNames: the errorCode values it
	// requires (empty: evaluated for every event).
	ErrorCodes []string
	// HeaderOnly: the condition reads only header fields, so a record is
	// decided without decoding it whole (see DecodeHeader).
	HeaderOnly bool
}

func buildIndex(rules []*Rule) *index {
	ix := &index{}
	byName, byError := map[string][]*Rule{}, map[string][]*Rule{}
	for _, r := range rules {
		if names := r.indexNames(); len(names) > 0 {
			for _, n := range names {
				byName[n] = append(byName[n], r)
			}
			continue
		}
		if codes := r.errorCodes(); len(codes) > 0 {
			for _, c := range codes {
				byError[c] = append(byError[c], r)
			}
			continue
		}
		ix.unindexed = append(ix.unindexed, r)
	}
	for n, named := range byName {
		byName[n] = mergeRules(named, ix.unindexed)
	}
	ix.byName = newNameTable(byName)
	ix.byError = newNameTable(byError)
	return ix
}

// mergeRules merges two lists of rules in load order.
func mergeRules(a, b []*Rule) []*Rule {
	out := make([]*Rule, 0, len(a)+len(b))
	for len(a) > 0 || len(b) > 0 {
		if len(b) == 0 || (len(a) > 0 && a[0].ord < b[0].ord) {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return out
}

// lists returns the rules that can match ev as two lists, each in load
// order, to be merged by ord (see candidates): the rules filed under its
// eventName with the unindexed ones (or the unindexed ones alone), and
// those filed under its errorCode.
func (ix *index) lists(ev *cloudtrail.Event) (named, coded []*Rule) {
	named = ix.byName.get(ev.EventName)
	if named == nil {
		named = ix.unindexed
	}
	if ev.ErrorCode != "" {
		coded = ix.byError.get(ev.ErrorCode)
	}
	return named, coded
}

// candidates calls fn for each rule that can match ev, in load order.
func (ix *index) candidates(ev *cloudtrail.Event, fn func(*Rule)) {
	a, b := ix.lists(ev)
	for len(a) > 0 || len(b) > 0 {
		if len(b) == 0 || (len(a) > 0 && a[0].ord < b[0].ord) {
			fn(a[0])
			a = a[1:]
		} else {
			fn(b[0])
			b = b[1:]
		}
	}
}

// nameTable is the rules by eventName (or errorCode), looked up once per
// record: an open-addressing table at most a quarter full, keyed by a hash
// of a name's length and first and last eight bytes (a few instructions,
// where a Go map hashes the whole string and probes more). Only the rules'
// own names are in it, so the probe sequences are the same whatever the
// records hold. A probe reads a slot's 16-bit tag (the hash's top bits)
// first, from an array of its own that stays in the L1 cache (2 KiB for
// the built-in rules' names; the slots are 40 KiB): most records' names
// are in no slot and are turned away by the tags alone.
type nameTable struct {
	tags  []uint16   // per slot: 0 empty, else the name's tag (nameTag)
	slots []nameSlot // a power of two of them
}

type nameSlot struct {
	name  string
	rules []*Rule
}

// nameTag is a name's tag, from the bits of its hash the slot index does
// not use (never 0).
func nameTag(h uint64) uint16 { return uint16(h>>48) | 1 }

func newNameTable(byName map[string][]*Rule) nameTable {
	n := 8
	for n < 4*len(byName) {
		n *= 2
	}
	t := nameTable{tags: make([]uint16, n), slots: make([]nameSlot, n)}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		h := nameHash(name)
		i := h & uint64(n-1)
		for t.tags[i] != 0 {
			i = (i + 1) & uint64(n-1)
		}
		t.tags[i] = nameTag(h)
		t.slots[i] = nameSlot{name: name, rules: byName[name]}
	}
	return t
}

// get returns the rules filed under name.
func (t *nameTable) get(name string) []*Rule {
	mask := uint64(len(t.tags) - 1)
	h := nameHash(name)
	tag := nameTag(h)
	for i := h & mask; ; i = (i + 1) & mask {
		switch t.tags[i] {
		case 0:
			return nil
		case tag:
			if sl := &t.slots[i]; sl.name == name {
				return sl.rules
			}
		}
	}
}

// nameHash mixes a name's length and its first and last eight bytes
// (fewer, for a shorter name).
func nameHash(s string) uint64 {
	var a, b uint64
	if n := len(s); n >= 8 {
		p := unsafe.StringData(s)
		a = binary.LittleEndian.Uint64(unsafe.Slice(p, 8))
		b = binary.LittleEndian.Uint64(unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(p), n-8)), 8))
	} else {
		for i := 0; i < n; i++ {
			a = a<<8 | uint64(s[i])
		}
	}
	h := (a ^ uint64(len(s))*0x9e3779b97f4a7c15) * 0xbf58476d1ce4e5b9
	h ^= (b ^ h>>31) * 0x94d049bb133111eb
	return h ^ h>>29
}

// Index returns how the rule is indexed.
func (r *Rule) Index() IndexInfo {
	info := IndexInfo{EventNames: r.indexNames(), HeaderOnly: r.headerOnly}
	if len(info.EventNames) == 0 {
		info.ErrorCodes = r.errorCodes()
	}
	return info
}

func (r *Rule) indexNames() []string {
	var names []string
	var ok bool
	switch {
	case r.program != nil && r.program.snap != nil:
		return slices.Clone(r.program.snap.names) // a built-in's, from the snapshot
	case r.program != nil:
		names, ok = constConstraint(r.program.Node(), "eventName")
	case r.patternNames != nil:
		names, ok = r.patternNames, true
	}
	if !ok {
		return nil
	}
	sort.Strings(names)
	return dedupStrings(names)
}

func dedupStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// errorCodes returns the errorCode values the rule's condition requires.
func (r *Rule) errorCodes() []string {
	if r.program == nil {
		return nil
	}
	if r.program.snap != nil {
		return slices.Clone(r.program.snap.codes) // a built-in's, from the snapshot
	}
	codes, ok := constConstraint(r.program.Node(), "errorCode")
	if !ok {
		return nil
	}
	sort.Strings(codes)
	// errorCode == "" is no constraint an index can use.
	out := codes[:0]
	for _, c := range dedupStrings(codes) {
		if c == "" {
			return nil
		}
		out = append(out, c)
	}
	return out
}

// constConstraint returns the values that node requires the top-level
// string field to be one of, and whether it requires any.
func constConstraint(node ast.Node, field string) ([]string, bool) {
	switch n := node.(type) {
	case *ast.BinaryNode:
		switch n.Operator {
		case "&&", "and":
			l, lok := constConstraint(n.Left, field)
			r, rok := constConstraint(n.Right, field)
			switch {
			case lok && rok:
				return intersect(l, r), true
			case lok:
				return l, true
			case rok:
				return r, true
			}
			return nil, false
		case "||", "or":
			l, lok := constConstraint(n.Left, field)
			r, rok := constConstraint(n.Right, field)
			if lok && rok {
				return append(append([]string{}, l...), r...), true
			}
			return nil, false
		case "==":
			if isIdent(n.Left, field) {
				if s, ok := n.Right.(*ast.StringNode); ok {
					return []string{s.Value}, true
				}
			}
			if isIdent(n.Right, field) {
				if s, ok := n.Left.(*ast.StringNode); ok {
					return []string{s.Value}, true
				}
			}
		case "in":
			if isIdent(n.Left, field) {
				return stringConstants(n.Right)
			}
		}
	case *ast.ConstantNode:
		// A condition folded to the constant false matches nothing.
		if b, ok := n.Value.(bool); ok && !b {
			return []string{}, true
		}
	}
	return nil, false
}

func isIdent(n ast.Node, name string) bool {
	id, ok := n.(*ast.IdentifierNode)
	return ok && id.Value == name
}

func stringConstants(n ast.Node) ([]string, bool) {
	switch x := n.(type) {
	case *ast.ArrayNode:
		out := make([]string, 0, len(x.Nodes))
		for _, e := range x.Nodes {
			s, ok := e.(*ast.StringNode)
			if !ok {
				return nil, false
			}
			out = append(out, s.Value)
		}
		return out, true
	case *ast.ConstantNode:
		switch v := x.Value.(type) {
		case []string:
			return append([]string{}, v...), true
		case []any:
			out := make([]string, 0, len(v))
			for _, e := range v {
				s, ok := e.(string)
				if !ok {
					return nil, false
				}
				out = append(out, s)
			}
			return out, true
		case map[string]struct{}:
			out := make([]string, 0, len(v))
			for s := range v {
				out = append(out, s)
			}
			return out, true
		}
	}
	return nil, false
}

func intersect(a, b []string) []string {
	set := make(map[string]bool, len(a))
	for _, s := range a {
		set[s] = true
	}
	out := []string{}
	for _, s := range b {
		if set[s] {
			out = append(out, s)
		}
	}
	return out
}
