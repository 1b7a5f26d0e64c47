package rules

import (
	"testing"

	"github.com/trailwatch/trailwatch/internal/corpus"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// TestCorpusDecodesAndEvaluates decodes every real record and runs every
// built-in rule on it: none may fail to decode, crash, or make a rule
// error at run time.
func TestCorpusDecodesAndEvaluates(t *testing.T) {
	set, err := Load("builtin")
	if err != nil {
		t.Fatal(err)
	}
	records := 0
	corpus.ForEachRecord(t, func(place string, line []byte) {
		records++
		ev, err := cloudtrail.DecodeEvent(line)
		if err != nil {
			t.Errorf("%s: %v", place, err)
			return
		}
		set.Match(ev, nil, func(me MatchError) {
			t.Errorf("%s: rule %s failed at run time: %v", place, me.Rule.ID, me.Err)
		})
		for _, r := range set.Rules() {
			r.Summary(ev)
		}
	})
	if records < 3000 {
		t.Errorf("read %d corpus records, expected the whole corpus (3,329)", records)
	}
	for _, r := range set.Rules() {
		if _, errs := r.Stats(); errs != 0 {
			t.Errorf("rule %s: %d run-time errors over the corpus (summaries included)", r.ID, errs)
		}
	}
}
