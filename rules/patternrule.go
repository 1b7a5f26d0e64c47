package rules

import (
	"errors"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
	"github.com/trailwatch/trailwatch/rules/pattern"
)

// patternError locates a problem in a filter pattern (1-based line and
// column within the pattern text).
type patternError struct {
	Line, Column int
	Msg          string
}

func (e *patternError) Error() string { return e.Msg }

// compilePattern compiles a CloudWatch Logs filter pattern condition into
// r. A pattern is evaluated on the record's raw JSON, exactly as CloudWatch
// would see it, rather than on the typed Event.
func compilePattern(r *Rule, src string) error {
	p, err := pattern.Parse(src)
	if err != nil {
		var se *pattern.SyntaxError
		if errors.As(err, &se) {
			return &patternError{Line: se.Line, Column: se.Col, Msg: se.Msg}
		}
		return err
	}
	r.matcher = func(ev *cloudtrail.Event) (bool, error) {
		m, err := ev.RawMap()
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
