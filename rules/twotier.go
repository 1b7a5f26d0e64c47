package rules

import (
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// MatchHeader is Match for an event that cloudtrail.DecodeHeader filled:
// each candidate rule decodes, through cloudtrail.Event.Need, only the
// lazy fields it reads, so most records are decided without decoding
// their free-form parts. When a rule matches, ev is made to own its memory
// (cloudtrail.Event.Own), so the caller may reuse the record's buffer while
// it keeps ev; the fields that summaries, dedup keys and group_by read are
// decoded when they are evaluated. It reports whether ev was decoded
// whole by DecodeHeader (complete is returned as passed), and an error
// only when the record turned out not to decode at all.
func (s *Set) MatchHeader(ev *cloudtrail.Event, complete bool, dst []*Rule, onErr func(MatchError)) ([]*Rule, bool, error) {
	n := len(dst)
	dst, complete, err := s.MatchHeaderInPlace(ev, complete, dst, onErr)
	if len(dst) > n {
		ev.Own()
	}
	return dst, complete, err
}

// MatchHeaderInPlace is MatchHeader without Own: a matched ev keeps
// reading its strings and lazy fields from the record's buffer, which the
// caller must keep unchanged for as long as it uses ev (or a string read
// from it), or move ev's views onto a copy (cloudtrail.Event.Own, MoveTo).
func (s *Set) MatchHeaderInPlace(ev *cloudtrail.Event, complete bool, dst []*Rule, onErr func(MatchError)) ([]*Rule, bool, error) {
	n := len(dst)
	dst = s.Match(ev, dst, onErr)
	if err := ev.Need(0); err != nil {
		return dst[:n], true, err
	}
	return dst, complete, nil
}

// evalQuiet evaluates the rule without touching its counters.
func (r *Rule) evalQuiet(ev *cloudtrail.Event) (bool, error) {
	out, err := run(r.program, ev)
	if err != nil {
		return false, err
	}
	ok, _ := out.(bool)
	if ok {
		for _, p := range r.except {
			out, err := run(p, ev)
			if err != nil {
				return false, err
			}
			if b, _ := out.(bool); b {
				return false, nil
			}
		}
	}
	return ok, nil
}
