package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// DefaultDedupWindow is the window of a rule whose `dedup:` block gives
// none when no global default window is configured.
const DefaultDedupWindow = time.Hour

// Dedup is a rule's `dedup:` block: repeats of an alert with the same key
// inside Window (measured in event time from the last notification) are
// counted instead of notified.
type Dedup struct {
	// Key is the key expression's source; empty means the default key
	// (the principal and the eventName, or the threshold's group).
	Key string
	// Window is how long after a notification repeats are held back. Zero
	// means the lifecycle's global default window.
	Window time.Duration

	program *program
}

// keyFor evaluates the key expression on ev and returns its value as a
// string. It returns "" and no error when the rule has no key expression.
func (d *Dedup) keyFor(ev *cloudtrail.Event) (string, error) {
	if d == nil || d.program == nil {
		return "", nil
	}
	out, err := runText(d.program, ev, valueString)
	if err != nil {
		return "", fmt.Errorf("dedup key: %w", err)
	}
	return out, nil
}

// Threshold is a rule's `threshold:` block: the rule raises one alert when
// Count matching events of the same group fall inside a sliding window of
// Window (event time).
type Threshold struct {
	Count   int
	Window  time.Duration
	GroupBy []string // expressions; their values name the group

	programs []*program
}

// groupFor evaluates the group_by expressions on ev.
func (t *Threshold) groupFor(ev *cloudtrail.Event) ([]string, error) {
	return t.groupInto(make([]string, 0, len(t.programs)), ev)
}

// groupInto is groupFor appending the values to dst.
func (t *Threshold) groupInto(dst []string, ev *cloudtrail.Event) ([]string, error) {
	for i, p := range t.programs {
		v, err := runText(p, ev, valueString)
		if err != nil {
			return nil, fmt.Errorf("threshold group_by %q: %w", t.GroupBy[i], err)
		}
		dst = append(dst, v)
	}
	return dst, nil
}

func valueString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v)
}

// DedupState is what dedup remembers for one key.
type DedupState struct {
	// Start is the event time of the last notification; the window runs
	// from it.
	Start time.Time `json:"start"`
	// Suppressed counts the events held back since Start; First and Last
	// are their earliest and latest event times.
	Suppressed int       `json:"suppressed,omitempty"`
	First      time.Time `json:"first,omitzero"`
	Last       time.Time `json:"last,omitzero"`
}

// step applies an occurrence at event time at that stands for n events. It
// reports whether to notify; when it does, held is what was suppressed
// since the previous notification (reset in s).
//
// Windows are half-open: a repeat exactly Window after the notification
// notifies again. An occurrence more than Window before the notification
// (a very late event) is outside every window held and notifies, without
// moving the window.
func (s *DedupState) step(at time.Time, n int, window time.Duration) (notify bool, held DedupState) {
	switch {
	case s.Start.IsZero() || !at.Before(s.Start.Add(window)):
		held = *s
		*s = DedupState{Start: at}
		return true, held
	case at.Before(s.Start.Add(-window)):
		return true, DedupState{}
	}
	s.Suppressed += n
	if s.First.IsZero() || at.Before(s.First) {
		s.First = at
	}
	if at.After(s.Last) {
		s.Last = at
	}
	return false, DedupState{}
}

// ThresholdState is what a threshold remembers for one group: the event
// times (Unix nanoseconds, ascending) of the matching events inside the
// window. It never holds more than Count times.
type ThresholdState struct {
	Times []int64 `json:"times"`
}

// thresholdHit is the outcome of adding one event to a group.
type thresholdHit struct {
	// Fired is true when the group reached the count; the group starts
	// over.
	Fired bool
	// Count is how many events were in the window when it fired.
	Count int
	// First and Last are the earliest and latest event times counted.
	First, Last time.Time
	// Late is true when the event was older than the group's window and
	// so not counted.
	Late bool
}

// step adds an event at time at to the group s. The window is half-open:
// events at t and t+Window are not in the same window.
func (t *Threshold) step(s *ThresholdState, at time.Time) thresholdHit {
	ns := at.UnixNano()
	i, _ := slices.BinarySearch(s.Times, ns)
	s.Times = slices.Insert(s.Times, i, ns)
	newest := s.Times[len(s.Times)-1]
	cut := newest - int64(t.Window)
	drop := 0
	for drop < len(s.Times) && s.Times[drop] <= cut {
		drop++
	}
	late := ns <= cut
	s.Times = slices.Delete(s.Times, 0, drop)
	if len(s.Times) >= t.Count {
		hit := thresholdHit{Fired: true, Count: len(s.Times),
			First: time.Unix(0, s.Times[0]).UTC(), Last: time.Unix(0, newest).UTC()}
		s.Times = nil
		return hit
	}
	return thresholdHit{Late: late}
}

// StateStore gives the lifecycle state of one key, creating it empty when
// absent. Keys are already scoped by rule. The engine's store persists and
// bounds them; tests use mapStore.
type StateStore interface {
	Dedup(key string) *DedupState
	Threshold(key string) *ThresholdState
}

// mapStore is an unbounded in-memory StateStore, for rule tests.
type mapStore struct {
	dedup     map[string]*DedupState
	threshold map[string]*ThresholdState
}

// Dedup implements StateStore.
func (m *mapStore) Dedup(key string) *DedupState {
	if m.dedup == nil {
		m.dedup = map[string]*DedupState{}
	}
	s := m.dedup[key]
	if s == nil {
		s = &DedupState{}
		m.dedup[key] = s
	}
	return s
}

// Threshold implements StateStore.
func (m *mapStore) Threshold(key string) *ThresholdState {
	if m.threshold == nil {
		m.threshold = map[string]*ThresholdState{}
	}
	s := m.threshold[key]
	if s == nil {
		s = &ThresholdState{}
		m.threshold[key] = s
	}
	return s
}

// Outcome is what the lifecycle makes of one matching event.
type Outcome struct {
	// Notify is true when an alert goes out for this event.
	Notify bool
	// Count is how many matching events the notification stands for: the
	// threshold's count (or 1) plus the events dedup held back.
	Count int
	// Suppressed is how many of them dedup held back since the previous
	// notification with the same key.
	Suppressed int
	// First and Last are the earliest and latest event times counted.
	First, Last time.Time
	// Group is the threshold group's values when the group fired (nil
	// otherwise, and for plain rules).
	Group []string
	// ThresholdKey is the rule-scoped threshold group key ("" for plain
	// rules).
	ThresholdKey string
	// DedupKey is the rule-scoped dedup key, "" when dedup is off for the
	// rule (then every match is its own alert).
	DedupKey string
	// Late is true when a threshold rule's event was older than its
	// group's window and was not counted.
	Late bool
	// Fired is true when a threshold rule's group reached its count on
	// this event (dedup may still hold the notification back).
	Fired bool
}

// Observe runs one event that r matched through r's threshold and dedup
// stages, reading and updating state in st. defaultWindow is the dedup
// window for rules without a `dedup:` block, or whose block gives none
// (zero or negative: no dedup for them).
func (r *Rule) Observe(ev *cloudtrail.Event, st StateStore, defaultWindow time.Duration) (Outcome, error) {
	at := ev.EventTime
	out := Outcome{Count: 1, First: at, Last: at}
	if th := r.Threshold; th != nil {
		// The values are gathered on the stack (most groups have one to
		// four), and Group is made only for a group that fires, from the
		// key's copy of them.
		var buf [4]string
		group, err := th.groupInto(buf[:0], ev)
		if err != nil {
			r.errors.Add(1)
			return Outcome{}, err
		}
		out.ThresholdKey = scopedKey(r.ID, group)
		hit := th.step(st.Threshold(out.ThresholdKey), at)
		if !hit.Fired {
			out.Late = hit.Late
			return out, nil
		}
		out.Group = splitScopedKey(out.ThresholdKey, r.ID, group)
		out.Fired = true
		out.Count, out.First, out.Last = hit.Count, hit.First, hit.Last
	}
	window := defaultWindow
	switch {
	case r.Dedup != nil && r.Dedup.Window > 0:
		window = r.Dedup.Window
	case r.Dedup != nil && window <= 0:
		// A rule that asks for dedup gets it even when the global default
		// window is off.
		window = DefaultDedupWindow
	}
	if window <= 0 {
		out.Notify = true
		return out, nil
	}
	key, err := r.Dedup.keyFor(ev)
	if err != nil {
		r.errors.Add(1)
		return Outcome{}, err
	}
	switch {
	case r.Dedup != nil && r.Dedup.program != nil:
		out.DedupKey = r.ID + "\x00" + key
	case r.Threshold != nil:
		out.DedupKey = out.ThresholdKey // the same: the rule and its group
	default:
		out.DedupKey = r.ID + "\x00" + ev.Principal() + "\x1f" + ev.EventName
	}
	notify, held := st.Dedup(out.DedupKey).step(at, out.Count, window)
	if !notify {
		return out, nil
	}
	out.Notify = true
	if held.Suppressed > 0 {
		out.Count += held.Suppressed
		out.Suppressed = held.Suppressed
		if held.First.Before(out.First) {
			out.First = held.First
		}
		if held.Last.After(out.Last) {
			out.Last = held.Last
		}
	}
	return out, nil
}

// scopedKey is id + "\x00" + strings.Join(values, "\x1f"), made with
// one allocation.
func scopedKey(id string, values []string) string {
	n := len(id) + 1 + len(values) // the zero byte, the separators (one spare)
	for _, v := range values {
		n += len(v)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(id)
	b.WriteByte(0)
	for i, v := range values {
		if i > 0 {
			b.WriteByte(0x1f)
		}
		b.WriteString(v)
	}
	return b.String()
}

// splitScopedKey returns the values that made key (scopedKey(id,
// values)), as substrings of key.
func splitScopedKey(key, id string, values []string) []string {
	out := make([]string, len(values))
	at := len(id) + 1
	for i, v := range values {
		out[i] = key[at : at+len(v)]
		at += len(v) + 1
	}
	return out
}

// ParseWindow parses a window length: a Go duration ("90s", "10m", "1h30m")
// or a whole number of days ("2d").
func ParseWindow(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("invalid window %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid window %q (want a duration such as 10m, 1h or 2d)", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("window %q must be positive", s)
	}
	return d, nil
}

var (
	dedupKeys     = map[string]bool{"key": true, "window": true}
	thresholdKeys = map[string]bool{"count": true, "window": true, "group_by": true}
)

// lifecycleBlocks loads a rule's `dedup:` and `threshold:` blocks.
func (l *loader) lifecycleBlocks(f File, r *Rule, dedup, threshold *yaml.Node) {
	id := r.ID
	fields := func(n *yaml.Node, name string, allowed map[string]bool) map[string]*yaml.Node {
		if n.Kind != yaml.MappingNode {
			l.errorf(f.Name, n, id, "%s must be a mapping (keys %s)", name, keyList(allowed))
			return nil
		}
		m := map[string]*yaml.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if !allowed[k.Value] {
				l.errorf(f.Name, k, id, "%s: unknown key %q (expected one of %s)", name, k.Value, keyList(allowed))
				continue
			}
			m[k.Value] = v
		}
		return m
	}
	window := func(name string, n *yaml.Node) time.Duration {
		s, ok := l.scalarString(f.Name, n, id, name+" window")
		if !ok {
			return 0
		}
		d, err := ParseWindow(s)
		if err != nil {
			l.errorf(f.Name, n, id, "%s window: %v", name, err)
		}
		return d
	}
	if dedup != nil {
		if m := fields(dedup, "dedup", dedupKeys); m != nil {
			d := &Dedup{}
			if v := m["window"]; v != nil {
				d.Window = window("dedup", v)
			}
			if v := m["key"]; v != nil {
				if s, ok := l.scalarString(f.Name, v, id, "dedup key"); ok {
					d.Key = s
					p, err := l.names.compileValue(s)
					if err != nil {
						ce := err.(*compileError)
						l.exprError(f, v, id, ce.Line, ce.Column, "dedup key: "+ce.Msg)
					}
					d.program = p
				}
			}
			r.Dedup = d
		}
	}
	if threshold == nil {
		return
	}
	m := fields(threshold, "threshold", thresholdKeys)
	if m == nil {
		return
	}
	th := &Threshold{}
	if v := m["count"]; v == nil {
		l.errorf(f.Name, threshold, id, "threshold: missing required key \"count\"")
	} else if v.Kind != yaml.ScalarNode || v.Decode(&th.Count) != nil || th.Count < 1 {
		l.errorf(f.Name, v, id, "threshold count must be a whole number of at least 1")
	}
	if v := m["window"]; v == nil {
		l.errorf(f.Name, threshold, id, "threshold: missing required key \"window\"")
	} else {
		th.Window = window("threshold", v)
	}
	if v := m["group_by"]; v != nil {
		if v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
			v = &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{v}, Line: v.Line, Column: v.Column}
		}
		if v.Kind != yaml.SequenceNode {
			l.errorf(f.Name, v, id, "threshold group_by must be a list of expressions")
		} else {
			for _, e := range v.Content {
				s, ok := l.scalarString(f.Name, e, id, "threshold group_by entries")
				if !ok {
					continue
				}
				p, err := l.names.compileValue(s)
				if err != nil {
					ce := err.(*compileError)
					l.exprError(f, e, id, ce.Line, ce.Column, "threshold group_by: "+ce.Msg)
					continue
				}
				th.GroupBy = append(th.GroupBy, s)
				th.programs = append(th.programs, p)
			}
		}
	}
	r.Threshold = th
}

// ExpectedAlert is one alert a test over time expects, in order. Only the
// fields given are compared.
type ExpectedAlert struct {
	Count      *int      // events the alert stands for
	Suppressed *int      // repeats dedup held back before it
	EventID    string    // the event that raised it
	First      time.Time // earliest event time counted
	Last       time.Time // latest event time counted
	Group      []string  // the threshold group's values
}

var expectKeys = map[string]bool{"alerts": true}
var expectedAlertKeys = map[string]bool{"count": true, "suppressed": true, "event_id": true, "first": true, "last": true, "group": true}

// expectAlerts loads `expect: {alerts: N}` or `expect: {alerts: [...]}`.
func (l *loader) expectAlerts(f File, n *yaml.Node, id string, t *Test) {
	if !t.Sequence && len(t.Event) > 0 {
		// A single event with an alert count is a sequence of one.
		t.Sequence, t.Events, t.Event = true, []json.RawMessage{t.Event}, nil
	}
	var alerts *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !expectKeys[k.Value] {
			l.errorf(f.Name, k, id, "test %q: expect: unknown key %q (expected alerts)", t.Name, k.Value)
			continue
		}
		alerts = v
	}
	if alerts == nil {
		l.errorf(f.Name, n, id, "test %q: expect: missing `alerts` (a count or a list)", t.Name)
		return
	}
	switch alerts.Kind {
	case yaml.ScalarNode:
		if alerts.Decode(&t.ExpectAlerts) != nil || t.ExpectAlerts < 0 {
			l.errorf(f.Name, alerts, id, "test %q: expect alerts must be a whole number or a list", t.Name)
		}
	case yaml.SequenceNode:
		t.ExpectAlerts = len(alerts.Content)
		t.Alerts = []ExpectedAlert{}
		for _, an := range alerts.Content {
			if an.Kind != yaml.MappingNode {
				l.errorf(f.Name, an, id, "test %q: each expected alert must be a mapping (keys %s)", t.Name, keyList(expectedAlertKeys))
				continue
			}
			var ea ExpectedAlert
			for i := 0; i+1 < len(an.Content); i += 2 {
				k, v := an.Content[i], an.Content[i+1]
				var err error
				switch k.Value {
				case "count", "suppressed":
					n := new(int)
					if v.Kind != yaml.ScalarNode || v.Decode(n) != nil || *n < 0 {
						err = errors.New("must be a whole number")
					}
					if k.Value == "count" {
						ea.Count = n
					} else {
						ea.Suppressed = n
					}
				case "event_id":
					err = v.Decode(&ea.EventID)
				case "first", "last":
					var s string
					if err = v.Decode(&s); err == nil {
						var tm time.Time
						if tm, err = time.Parse(time.RFC3339Nano, s); err == nil {
							if k.Value == "first" {
								ea.First = tm
							} else {
								ea.Last = tm
							}
						}
					}
				case "group":
					if v.Kind == yaml.ScalarNode {
						ea.Group = []string{v.Value}
					} else {
						err = v.Decode(&ea.Group)
					}
				default:
					l.errorf(f.Name, k, id, "test %q: expected alert: unknown key %q (expected one of %s)", t.Name, k.Value, keyList(expectedAlertKeys))
					continue
				}
				if err != nil {
					l.errorf(f.Name, v, id, "test %q: expected alert %s: %v", t.Name, k.Value, err)
				}
			}
			t.Alerts = append(t.Alerts, ea)
		}
	default:
		l.errorf(f.Name, alerts, id, "test %q: expect alerts must be a whole number or a list", t.Name)
	}
	t.ExpectMatch = t.ExpectAlerts > 0
}

// splitEvents reads a file of events for a test over time: JSON Lines, a
// JSON array, or CloudTrail's {"Records": [...]}.
func splitEvents(data []byte) ([]json.RawMessage, error) {
	data = bytes.TrimSpace(data)
	var out []json.RawMessage
	switch {
	case len(data) == 0:
		return nil, errors.New("no events")
	case data[0] == '[':
		if err := json.Unmarshal(data, &out); err != nil {
			return nil, err
		}
	case bytes.HasPrefix(data, []byte(`{"Records"`)):
		var w struct{ Records []json.RawMessage }
		if err := json.Unmarshal(data, &w); err != nil {
			return nil, err
		}
		out = w.Records
	default:
		dec := json.NewDecoder(bytes.NewReader(data))
		for dec.More() {
			var m json.RawMessage
			if err := dec.Decode(&m); err != nil {
				return nil, err
			}
			out = append(out, m)
		}
	}
	for i, e := range out {
		if _, err := cloudtrail.DecodeEvent(e); err != nil {
			return nil, fmt.Errorf("event %d: %w", i+1, err)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no events")
	}
	return out, nil
}
