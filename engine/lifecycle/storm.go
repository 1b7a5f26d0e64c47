package lifecycle

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
)

// StormConfig is storm control for one notifier (a notifier entry's
// `rate_limit:` in the configuration file): at most Max alerts per Per go
// out one by one; the alerts above that are folded into a digest sent
// every DigestEvery, so nothing is dropped and nobody is paged a hundred
// times. Both durations are event time, like every lifecycle window.
type StormConfig struct {
	Max         int           `yaml:"max"`
	Per         time.Duration `yaml:"per"`
	DigestEvery time.Duration `yaml:"digest_every"`
}

// Validate checks the configuration. A zero DigestEvery means Per.
func (c StormConfig) Validate() error {
	switch {
	case c.Max < 1:
		return errors.New("rate_limit: max must be at least 1")
	case c.Per <= 0:
		return errors.New("rate_limit: per must be a positive duration")
	case c.DigestEvery < 0:
		return errors.New("rate_limit: digest_every must not be negative")
	}
	return nil
}

// DigestRuleID is the rule id of storm digest alerts.
const DigestRuleID = "trailwatch-storm-digest"

// stormState is one notifier's rate window and pending digest.
type stormState struct {
	WindowStart time.Time `json:"window_start"`
	Sent        int       `json:"sent"`
	Digest      *digest   `json:"digest,omitempty"`
}

type digest struct {
	Start    time.Time               `json:"start"`
	Count    int                     `json:"count"`
	ByRule   map[string]int          `json:"by_rule"`
	Severity string                  `json:"severity"`
	First    time.Time               `json:"first"`
	Last     time.Time               `json:"last"`
	Samples  []notifiers.EventSample `json:"samples,omitempty"`
}

func (s *stormState) clone() *stormState {
	c := *s
	if s.Digest != nil {
		d := *s.Digest
		d.ByRule = make(map[string]int, len(s.Digest.ByRule))
		for k, v := range s.Digest.ByRule {
			d.ByRule[k] = v
		}
		d.Samples = append([]notifiers.EventSample(nil), s.Digest.Samples...)
		c.Digest = &d
	}
	return &c
}

func (b *Batch) stormFor(notifier string) *stormState {
	if s, ok := b.storm[notifier]; ok {
		return s
	}
	s := &stormState{}
	if base, ok := b.l.storm[notifier]; ok {
		s = base.clone()
	}
	b.storm[notifier] = s
	return s
}

// Admit applies storm control for notifier to o. It reports whether o goes
// to the notifier now; when it does not, o was folded into the notifier's
// next digest (see Digests). Notifiers without storm control admit all.
func (b *Batch) Admit(notifier string, o Output) bool {
	cfg, ok := b.l.opts.Storm[notifier]
	if !ok {
		return true
	}
	s := b.stormFor(notifier)
	at := o.Alert.EventTime
	if s.WindowStart.IsZero() || !at.Before(s.WindowStart.Add(cfg.Per)) {
		s.WindowStart, s.Sent = at, 0
	}
	if s.Sent < cfg.Max {
		s.Sent++
		return true
	}
	d := s.Digest
	if d == nil {
		d = &digest{Start: at, First: at, Last: at, ByRule: map[string]int{}}
		s.Digest = d
	}
	d.Count++
	d.ByRule[o.Alert.RuleID]++
	if rules.SeverityRank(o.Alert.Severity) > rules.SeverityRank(d.Severity) {
		d.Severity = o.Alert.Severity
	}
	if at.Before(d.First) {
		d.First = at
	}
	if at.After(d.Last) {
		d.Last = at
	}
	if len(d.Samples) < b.l.cfg.Samples {
		d.Samples = append(d.Samples, ownSample(notifiers.EventSample{EventID: o.Alert.EventID, EventTime: o.Alert.EventTime,
			EventName: o.Alert.EventName, RuleID: o.Alert.RuleID, Principal: o.Alert.Principal,
			SourceIP: o.Alert.SourceIP, ErrorCode: o.Alert.ErrorCode}))
	}
	b.stats.add(&b.stats.folded, notifier)
	return false
}

// DigestOutput is a storm digest due for one notifier.
type DigestOutput struct {
	Notifier string
	Output
}

// Digests returns the digests that are due: those whose DigestEvery has
// passed in event time (the newest event time the lifecycle has seen). Call
// it after the batch's alerts were admitted and enqueue what it returns with
// them.
func (b *Batch) Digests() []DigestOutput {
	return b.digests(false)
}

// FlushDigests returns every pending digest, due or not (for a shutdown
// that must not leave them behind, or a test).
func (b *Batch) FlushDigests() []DigestOutput {
	return b.digests(true)
}

func (b *Batch) digests(all bool) []DigestOutput {
	names := make([]string, 0, len(b.l.opts.Storm))
	for n := range b.l.opts.Storm {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []DigestOutput
	for _, name := range names {
		cfg := b.l.opts.Storm[name]
		every := cfg.DigestEvery
		if every == 0 {
			every = cfg.Per
		}
		pending := b.storm[name]
		if pending == nil {
			pending = b.l.storm[name]
		}
		if pending == nil || pending.Digest == nil {
			continue
		}
		if !all && b.watermark.Before(pending.Digest.Start.Add(every)) {
			continue
		}
		s := b.stormFor(name)
		d := s.Digest
		s.Digest = nil
		out = append(out, DigestOutput{Notifier: name, Output: digestOutput(name, d, every)})
	}
	return out
}

func digestOutput(notifier string, d *digest, every time.Duration) Output {
	ids := make([]string, 0, len(d.ByRule))
	for id := range d.ByRule {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if d.ByRule[ids[i]] != d.ByRule[ids[j]] {
			return d.ByRule[ids[i]] > d.ByRule[ids[j]]
		}
		return ids[i] < ids[j]
	})
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%s ×%d", id, d.ByRule[id])
	}
	key := hashKey("digest\x00" + notifier + "\x00" + d.Start.UTC().Format(time.RFC3339Nano))
	return Output{Key: key, Alert: notifiers.Alert{
		RuleID:   DigestRuleID,
		Title:    fmt.Sprintf("Alert storm: %d alerts folded into a digest", d.Count),
		Severity: d.Severity,
		Summary: fmt.Sprintf("%d alerts above the rate limit between %s and %s: %s", d.Count,
			d.First.UTC().Format(time.RFC3339), d.Last.UTC().Format(time.RFC3339), strings.Join(parts, ", ")),
		Description: fmt.Sprintf("Storm control folded these alerts into one message (a digest at most every %s). "+
			"Each one is in the state directory's outbox history only as part of this digest; replay the period to see them all.", every),
		DedupKey:  key,
		EventTime: d.Last.UTC(),
		Count:     d.Count,
		FirstTime: d.First.UTC(),
		LastTime:  d.Last.UTC(),
		Samples:   d.Samples,
	}}
}
