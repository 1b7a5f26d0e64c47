package lifecycle

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/trailwatch/trailwatch/rules"
)

// SilencesFileName is the silences file's name inside the state directory.
// `trailwatch silence` writes it (atomically); the service re-reads it when
// it changes.
const SilencesFileName = "silences.json"

// Silence holds back the alerts of a rule (or of every rule), optionally
// only those whose event matches an expression, for events whose time
// falls in [StartsAt, EndsAt). Silenced alerts are recorded, not sent.
type Silence struct {
	ID string `json:"id"`
	// Rule is the rule id the silence applies to; empty means every rule.
	Rule string `json:"rule,omitempty"`
	// Match is a condition in the rule expression language; empty means
	// every event of the rule.
	Match     string    `json:"match,omitempty"`
	Comment   string    `json:"comment"`
	CreatedBy string    `json:"created_by,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at"`
}

// Active reports whether the silence covers an event at time t.
func (s *Silence) Active(t time.Time) bool {
	return !t.Before(s.StartsAt) && t.Before(s.EndsAt)
}

// Validate checks the silence: a rule or a match, a valid match
// expression, and a window that ends after it starts.
func (s *Silence) Validate() error {
	if s.Rule == "" && strings.TrimSpace(s.Match) == "" {
		return errors.New("a silence needs a rule, a match expression, or both")
	}
	if s.Match != "" {
		if _, err := rules.CompileCondition(s.Match); err != nil {
			return fmt.Errorf("match: %w", err)
		}
	}
	if !s.EndsAt.After(s.StartsAt) {
		return errors.New("a silence must end after it starts")
	}
	return nil
}

type silencesFile struct {
	Silences []Silence `json:"silences"`
}

// LoadSilences reads the silences in the state directory dir, expired
// ones included. A missing file holds none.
func LoadSilences(dir string) ([]Silence, error) {
	data, err := os.ReadFile(filepath.Join(dir, SilencesFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load silences: %w", err)
	}
	var f silencesFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("load silences from %s: %w", filepath.Join(dir, SilencesFileName), err)
	}
	return f.Silences, nil
}

func saveSilences(dir string, list []Silence) error {
	data, err := json.MarshalIndent(silencesFile{Silences: list}, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, SilencesFileName), append(data, '\n'))
}

// AddSilence validates s, gives it a new id (when it has none), appends it
// to the silences file in dir and returns it. Silences that ended more
// than a week before now are dropped from the file.
func AddSilence(dir string, s Silence, now time.Time) (Silence, error) {
	if err := s.Validate(); err != nil {
		return Silence{}, fmt.Errorf("add silence: %w", err)
	}
	list, err := LoadSilences(dir)
	if err != nil {
		return Silence{}, fmt.Errorf("add silence: %w", err)
	}
	if s.ID == "" {
		var b [6]byte
		if _, err := rand.Read(b[:]); err != nil {
			return Silence{}, fmt.Errorf("add silence: %w", err)
		}
		s.ID = hex.EncodeToString(b[:])
	}
	if s.CreatedAt.IsZero() {
		s.CreatedAt = now
	}
	kept := list[:0]
	for _, o := range list {
		if o.ID == s.ID {
			return Silence{}, fmt.Errorf("add silence: id %q exists", s.ID)
		}
		if o.EndsAt.After(now.Add(-7 * 24 * time.Hour)) {
			kept = append(kept, o)
		}
	}
	if err := saveSilences(dir, append(kept, s)); err != nil {
		return Silence{}, fmt.Errorf("add silence: %w", err)
	}
	return s, nil
}

// ExpireSilence ends the silence id at now (it then covers events before
// now only).
func ExpireSilence(dir, id string, now time.Time) error {
	list, err := LoadSilences(dir)
	if err != nil {
		return fmt.Errorf("expire silence: %w", err)
	}
	for i := range list {
		if list[i].ID != id {
			continue
		}
		if !list[i].EndsAt.After(now) {
			return fmt.Errorf("expire silence %s: already expired", id)
		}
		list[i].EndsAt = now
		if !list[i].EndsAt.After(list[i].StartsAt) {
			list[i].StartsAt = now.Add(-time.Nanosecond)
		}
		if err := saveSilences(dir, list); err != nil {
			return fmt.Errorf("expire silence: %w", err)
		}
		return nil
	}
	return fmt.Errorf("expire silence: no silence %q", id)
}

// compiledSilence is a silence with its match compiled.
type compiledSilence struct {
	Silence
	cond *rules.Condition
}

func (s *compiledSilence) matches(ruleID string, ev *rules.Event) bool {
	if s.Rule != "" && s.Rule != ruleID {
		return false
	}
	if !s.Active(ev.EventTime) {
		return false
	}
	if s.cond == nil {
		return true
	}
	ok, err := s.cond.Eval(ev)
	return err == nil && ok
}

// silenceCache re-reads the silences file when its size or modification
// time changed.
type silenceCache struct {
	mod  time.Time
	size int64
	list []*compiledSilence
	read bool
}

func (c *silenceCache) get(dir string, log *slog.Logger) []*compiledSilence {
	st, err := os.Stat(filepath.Join(dir, SilencesFileName))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.Warn("cannot read silences; keeping the last ones read", "error", err.Error())
			return c.list
		}
		c.list, c.read = nil, true
		return nil
	}
	if c.read && st.ModTime().Equal(c.mod) && st.Size() == c.size {
		return c.list
	}
	list, err := LoadSilences(dir)
	if err != nil {
		log.Warn("cannot read silences; keeping the last ones read", "error", err.Error())
		return c.list
	}
	c.mod, c.size, c.read = st.ModTime(), st.Size(), true
	c.list = c.list[:0:0]
	for _, s := range list {
		cs := &compiledSilence{Silence: s}
		if s.Match != "" {
			cond, err := rules.CompileCondition(s.Match)
			if err != nil {
				// Fail open: a broken silence must not hide alerts.
				log.Warn("silence has an invalid match and is ignored", "silence", s.ID, "error", err.Error())
				continue
			}
			cs.cond = cond
		}
		c.list = append(c.list, cs)
	}
	return c.list
}
