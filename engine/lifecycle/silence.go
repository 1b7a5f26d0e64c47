package lifecycle

import (
	"context"
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
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
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
	list, err := LoadSilences(dir)
	if err != nil {
		return Silence{}, fmt.Errorf("add silence: %w", err)
	}
	list, s, err = addToList(list, s, now)
	if err != nil {
		return Silence{}, err
	}
	if err := saveSilences(dir, list); err != nil {
		return Silence{}, fmt.Errorf("add silence: %w", err)
	}
	return s, nil
}

// addToList validates s, gives it an id if it has none, and returns list
// with s appended and the silences that ended over a week ago dropped.
func addToList(list []Silence, s Silence, now time.Time) ([]Silence, Silence, error) {
	if err := s.Validate(); err != nil {
		return nil, Silence{}, fmt.Errorf("add silence: %w", err)
	}
	if s.ID == "" {
		var b [6]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, Silence{}, fmt.Errorf("add silence: %w", err)
		}
		s.ID = hex.EncodeToString(b[:])
	}
	if s.CreatedAt.IsZero() {
		s.CreatedAt = now
	}
	kept := list[:0]
	for _, o := range list {
		if o.ID == s.ID {
			return nil, Silence{}, fmt.Errorf("add silence: id %q exists", s.ID)
		}
		if o.EndsAt.After(now.Add(-7 * 24 * time.Hour)) {
			kept = append(kept, o)
		}
	}
	return append(kept, s), s, nil
}

// ExpireSilence ends the silence id at now (it then covers events before
// now only).
func ExpireSilence(dir, id string, now time.Time) error {
	list, err := LoadSilences(dir)
	if err != nil {
		return fmt.Errorf("expire silence: %w", err)
	}
	if err := expireInList(list, id, now); err != nil {
		return err
	}
	if err := saveSilences(dir, list); err != nil {
		return fmt.Errorf("expire silence: %w", err)
	}
	return nil
}

// expireInList ends the silence id of list at now.
func expireInList(list []Silence, id string, now time.Time) error {
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
		return nil
	}
	return fmt.Errorf("expire silence: no silence %q", id)
}

// SilenceStore keeps the list of silences where every process reads it
// (engine/dynamostate keeps it in the shared table). The list is one
// versioned document: writers read it, change it and write it back on
// condition that nobody wrote it in between.
type SilenceStore interface {
	// SilenceList returns the encoded list and its version (nil and 0
	// when there is none).
	SilenceList(ctx context.Context) (data []byte, version int64, err error)
	// PutSilenceList writes the list if its version is still version
	// (0: there is none), else fails with an error wrapping ErrConflict.
	PutSilenceList(ctx context.Context, data []byte, version int64) error
}

// LoadSharedSilences reads the silences of store, expired ones included.
func LoadSharedSilences(ctx context.Context, store SilenceStore) ([]Silence, error) {
	list, _, err := loadShared(ctx, store)
	return list, err
}

func loadShared(ctx context.Context, store SilenceStore) ([]Silence, int64, error) {
	data, ver, err := store.SilenceList(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("load silences: %w", err)
	}
	if data == nil {
		return nil, 0, nil
	}
	var f silencesFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, 0, fmt.Errorf("load silences: %w", err)
	}
	return f.Silences, ver, nil
}

// changeShared applies change to the shared list, reading it again and
// retrying when another writer got there first. Errors of the store are
// prefixed with op; change's are returned as they are.
func changeShared(ctx context.Context, op string, store SilenceStore, change func([]Silence) ([]Silence, error)) error {
	for range 5 {
		list, ver, err := loadShared(ctx, store)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		if list, err = change(list); err != nil {
			return err
		}
		data, err := json.Marshal(silencesFile{Silences: list})
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		err = store.PutSilenceList(ctx, data, ver)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		return nil
	}
	return fmt.Errorf("%s: the silences kept changing under this command; try again", op)
}

// AddSharedSilence is AddSilence on a SilenceStore.
func AddSharedSilence(ctx context.Context, store SilenceStore, s Silence, now time.Time) (Silence, error) {
	var added Silence
	err := changeShared(ctx, "add silence", store, func(list []Silence) ([]Silence, error) {
		l, a, err := addToList(list, s, now)
		added = a
		return l, err
	})
	if err != nil {
		return Silence{}, err
	}
	return added, nil
}

// ExpireSharedSilence is ExpireSilence on a SilenceStore.
func ExpireSharedSilence(ctx context.Context, store SilenceStore, id string, now time.Time) error {
	return changeShared(ctx, "expire silence", store, func(list []Silence) ([]Silence, error) {
		return list, expireInList(list, id, now)
	})
}

// compiledSilence is a silence with its match compiled.
type compiledSilence struct {
	Silence
	cond *rules.Condition
}

func (s *compiledSilence) matches(ruleID string, ev *cloudtrail.Event) bool {
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
// time changed, or the shared list when it is due and its version changed.
type silenceCache struct {
	mod  time.Time
	size int64
	list []*compiledSilence
	read bool

	readAt  time.Time // shared: when the list was last fetched
	version int64     // shared: the version of list
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
	c.list = compileSilences(list, log)
	return c.list
}

// getShared re-reads the shared silences when the last read is older than
// every; on a failure it keeps the last ones read.
func (c *silenceCache) getShared(ctx context.Context, store SilenceStore, every time.Duration, log *slog.Logger) []*compiledSilence {
	now := time.Now()
	if c.read && now.Sub(c.readAt) < every {
		return c.list
	}
	data, ver, err := store.SilenceList(ctx)
	if err != nil {
		log.Warn("cannot read the shared silences; keeping the last ones read", "error", err.Error())
		return c.list
	}
	c.readAt = now
	if c.read && ver == c.version {
		return c.list
	}
	var f silencesFile
	if data != nil {
		if err := json.Unmarshal(data, &f); err != nil {
			log.Warn("cannot read the shared silences; keeping the last ones read", "error", err.Error())
			return c.list
		}
	}
	c.version, c.read = ver, true
	c.list = compileSilences(f.Silences, log)
	return c.list
}

func compileSilences(list []Silence, log *slog.Logger) []*compiledSilence {
	var out []*compiledSilence
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
		out = append(out, cs)
	}
	return out
}
