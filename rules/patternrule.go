package rules

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/trailwatch/trailwatch/rules/pattern"
)

// PatternError locates a problem in a filter pattern (1-based line and
// column within the pattern text).
type PatternError struct {
	Line, Column int
	Msg          string
}

func (e *PatternError) Error() string { return e.Msg }

// compilePattern compiles a CloudWatch Logs filter pattern condition into
// r. A pattern is evaluated on the record's raw JSON, exactly as CloudWatch
// would see it, rather than on the typed Event.
func compilePattern(r *Rule, src string) error {
	p, err := pattern.Parse(src)
	if err != nil {
		var se *pattern.SyntaxError
		if errors.As(err, &se) {
			return &PatternError{Line: se.Line, Column: se.Col, Msg: se.Msg}
		}
		return err
	}
	r.matcher = func(ev *Event) (bool, error) {
		m, err := ev.rawMap()
		if err != nil {
			return false, err
		}
		return p.Match(m), nil
	}
	if names, ok := p.EqualityConstraints()["eventName"]; ok {
		r.patternNames = append([]string{}, names...)
	}
	return nil
}

// rawMap decodes the record's raw JSON into a generic map once per event,
// for filter patterns.
func (e *Event) rawMap() (map[string]any, error) {
	if e.raw.m != nil || e.raw.err != nil {
		return e.raw.m, e.raw.err
	}
	dec := json.NewDecoder(bytes.NewReader(e.raw.data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		e.raw.err = err
		return nil, err
	}
	if m == nil {
		m = map[string]any{}
	}
	e.raw.m = m
	return m, nil
}
