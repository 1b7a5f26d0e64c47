// Package lifecycle decides what becomes of an alert between the rule
// match and the outbox: silences (recorded, not sent), threshold rules (one
// alert when a group reaches a count inside a sliding window), dedup
// windows (repeats counted, not notified, until the window ends) and storm
// control per notifier (alerts above a rate folded into a periodic digest).
//
// Every window is measured in event time (the CloudTrail eventTime), never
// the clock on the wall, so replaying a day of recorded logs gives the
// alerts the live service gave. The state survives restarts (a JSON
// snapshot in the state directory, written atomically) and is bounded: at
// most Config.MaxKeys dedup keys and threshold groups are held, the least
// recently used evicted first (counted in
// trailwatch_lifecycle_evictions_total), and a threshold group holds at most
// its count of timestamps and Config.Samples short event samples.
//
// Use: Begin a Batch, Process each alert, enqueue the outputs in the
// outbox, then Commit (or Rollback if the enqueue failed). A Batch remembers
// the (rule, event) pairs it processed, so a batch that is read again after
// a crash between Commit and the source's checkpoint is not counted twice.
package lifecycle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailwatch/trailwatch/internal/idwindow"
	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// StateFileName is the lifecycle state's file name inside the state
// directory.
const StateFileName = "lifecycle.json"

// Defaults for the zero values of Config.
const (
	DefaultMaxKeys = 100_000
	DefaultSamples = 5
	DefaultSeenIDs = 8192
	// DefaultSilenceRefresh is how often shared silences are read again.
	DefaultSilenceRefresh = 10 * time.Second
	// MaxClockSkew is how far ahead of the clock an eventTime may be and
	// still be trusted: CloudTrail's clocks and this host's differ a
	// little, and no more. The windows never move further ahead than this.
	MaxClockSkew = 5 * time.Minute
)

// Config is the lifecycle's part of the configuration file.
type Config struct {
	// DedupWindow is the dedup window of rules whose `dedup:` block gives
	// none, and of rules without one. Zero turns dedup off for rules
	// without a `dedup:` block (each match is its own alert).
	DedupWindow time.Duration `yaml:"dedup_window"`
	// MaxKeys caps the dedup keys and threshold groups held (default
	// 100000); beyond it the least recently used is evicted.
	MaxKeys int `yaml:"max_keys"`
	// Samples is how many events a threshold or digest alert carries as
	// samples (default 5).
	Samples int `yaml:"samples"`
}

// Options are the lifecycle's dependencies.
type Options struct {
	// StateDir holds the state snapshot and the silences file. Empty
	// keeps state in memory only (replay) and applies no silences.
	StateDir string
	// ReadOnlySilences reads silences from StateDir but keeps the
	// windows in memory and never writes the state file (replay of
	// recorded logs with the live service's silences).
	ReadOnlySilences bool
	// Storm gives storm control per notifier name.
	Storm map[string]StormConfig
	// SeenIDs is how many (rule, event) pairs are remembered to ignore a
	// re-read batch (default 8192).
	SeenIDs int
	// Logger receives silenced alerts (info) and state problems. Nil
	// discards.
	Logger *slog.Logger
	// Now is the clock that bounds event time (MaxClockSkew). Nil means
	// time.Now.
	Now func() time.Time
	// Registerer, if set, receives the lifecycle metrics.
	Registerer prometheus.Registerer
	// SharedSilences, if set, is where the silences are read (instead of
	// StateDir's file), at most every SilenceRefresh (default 10s).
	SharedSilences SilenceStore
	SilenceRefresh time.Duration
	// Shared, if set, holds the dedup windows and threshold groups, and
	// what was decided for each (rule, event), where every process working
	// on the same alerts sees them (engine/dynamostate). The windows are
	// then not kept in memory or in the state file; storm control and the
	// record of silenced alerts stay per process.
	Shared Shared
}

// Output is one alert the lifecycle lets through.
type Output struct {
	// Key is the outbox idempotency key: the same for the same rule and
	// CloudTrail event however often it is read.
	Key string
	// Alert is what to send; Alert.DedupKey is its identity downstream.
	Alert notifiers.Alert
}

// entry is one dedup key or threshold group.
type entry struct {
	Key       string                  `json:"key"`
	Dedup     *rules.DedupState       `json:"dedup,omitempty"`
	Threshold *rules.ThresholdState   `json:"threshold,omitempty"`
	Window    time.Duration           `json:"window,omitempty"` // for pruning
	Samples   []notifiers.EventSample `json:"samples,omitempty"`

	// prev and next link the entry into the Lifecycle's LRU list.
	prev, next *entry
	// The spares keep the memory of a recycled entry's states and samples
	// (see freeEntry) for its next use; nothing else refers to them.
	spareDedup     *rules.DedupState
	spareThreshold *rules.ThresholdState
	spareSamples   []notifiers.EventSample
}

// cloneInto makes c, an entry from newEntry, a copy of e that shares no
// memory with it, using c's spare memory where it can. nil slices stay
// nil.
func (e *entry) cloneInto(c *entry) *entry {
	c.Key, c.Window = e.Key, e.Window
	if e.Samples != nil {
		c.Samples = cloneInto(c.takeSamples(), e.Samples)
	}
	if e.Dedup != nil {
		*c.dedupState() = *e.Dedup
	}
	if e.Threshold != nil {
		t := c.thresholdState()
		t.Times = cloneInto(t.Times, e.Threshold.Times)
	}
	return c
}

// dedupState returns e.Dedup, made (zero) if e has none.
func (e *entry) dedupState() *rules.DedupState {
	if e.Dedup == nil {
		e.Dedup, e.spareDedup = e.spareDedup, nil
		if e.Dedup == nil {
			e.Dedup = new(rules.DedupState)
		}
		*e.Dedup = rules.DedupState{}
	}
	return e.Dedup
}

// thresholdState returns e.Threshold, made (no times) if e has none.
func (e *entry) thresholdState() *rules.ThresholdState {
	if e.Threshold == nil {
		e.Threshold, e.spareThreshold = e.spareThreshold, nil
		if e.Threshold == nil {
			e.Threshold = new(rules.ThresholdState)
		}
		// A new state's times are inserted into at once (Observe): keeping
		// the spare's memory cannot show.
		e.Threshold.Times = e.Threshold.Times[:0]
	}
	return e.Threshold
}

// takeSamples returns the spare samples' memory (length 0), or nil.
func (e *entry) takeSamples() []notifiers.EventSample {
	s := e.spareSamples
	e.spareSamples = nil
	return s[:0]
}

// cloneInto returns a copy of src in dst's memory when it is large
// enough: slices.Clone(src) without the allocation. A nil src gives nil.
func cloneInto[T any](dst, src []T) []T {
	if src == nil {
		return nil
	}
	if cap(dst) < len(src) {
		return slices.Clone(src)
	}
	return append(dst[:0], src...)
}

// lruList is a doubly linked list of entries, least recently used first,
// linked through the entries themselves (no allocation per entry).
type lruList struct {
	root entry // root.next is the front, root.prev the back
	n    int
}

func (q *lruList) init() {
	q.root.next, q.root.prev = &q.root, &q.root
}

// Len returns the number of entries in the list.
func (q *lruList) Len() int { return q.n }

// Front returns the least recently used entry, or nil.
func (q *lruList) Front() *entry {
	if q.n == 0 {
		return nil
	}
	return q.root.next
}

// PushBack appends e, which is in no list.
func (q *lruList) PushBack(e *entry) {
	last := q.root.prev
	e.prev, e.next = last, &q.root
	last.next, q.root.prev = e, e
	q.n++
}

// Remove unlinks e, which is in the list.
func (q *lruList) Remove(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	q.n--
}

// maxFreeEntries bounds the Lifecycle's free list of entries.
const maxFreeEntries = 64

// newEntry returns an empty entry from the free list, or a new one.
// l.mu is held.
func (l *Lifecycle) newEntry() *entry {
	if n := len(l.free); n > 0 {
		e := l.free[n-1]
		l.free[n-1] = nil
		l.free = l.free[:n-1]
		return e
	}
	return new(entry)
}

// freeEntry puts e, which nothing refers to any more, on the free list
// (entries are replaced by their changed copies at every commit), keeping
// its slices' and states' memory. Shared mode's entries are not recycled.
// l.mu is held.
func (l *Lifecycle) freeEntry(e *entry) {
	if len(l.free) >= maxFreeEntries || l.opts.Shared != nil {
		return
	}
	spare := entry{spareDedup: e.Dedup, spareThreshold: e.Threshold, spareSamples: e.Samples}
	if spare.spareDedup == nil {
		spare.spareDedup = e.spareDedup
	}
	if spare.spareThreshold == nil {
		spare.spareThreshold = e.spareThreshold
	}
	if spare.spareSamples == nil {
		spare.spareSamples = e.spareSamples
	}
	clear(spare.spareSamples[:cap(spare.spareSamples)]) // drop what the samples refer to
	*e = spare
	l.free = append(l.free, e)
}

// expired reports whether the entry holds nothing that can matter for
// events at or after watermark.
func (e *entry) expired(watermark time.Time) bool {
	switch {
	case e.Threshold != nil:
		n := len(e.Threshold.Times)
		return n == 0 || !time.Unix(0, e.Threshold.Times[n-1]).Add(e.Window).After(watermark)
	case e.Dedup != nil:
		// Held-back repeats are kept until the next notification reports
		// them (or the LRU evicts them).
		return e.Dedup.Suppressed == 0 && !e.Dedup.Start.Add(e.Window).After(watermark)
	}
	return true
}

// SilencedRecord is what the lifecycle recorded of the alerts one silence
// held back.
type SilencedRecord struct {
	Count       int       `json:"count"`
	LastRule    string    `json:"last_rule"`
	LastEventID string    `json:"last_event_id"`
	LastTime    time.Time `json:"last_event_time"`
}

// Lifecycle holds the state of every window. Batches are processed one at
// a time: Begin blocks while another Batch is open.
type Lifecycle struct {
	cfg     Config
	opts    Options
	log     *slog.Logger
	metrics *metrics

	mu        sync.Mutex
	entries   map[string]*entry
	lru       lruList          // front is the least recently used
	free      []*entry         // entries to reuse (freeEntry)
	seen      *idwindow.Window // the pairs processed, the last SeenIDs (nil: none yet)
	seenRing  []string         // the same pairs' keys, for the state file
	seenNext  int
	watermark time.Time
	silenced  map[string]SilencedRecord
	storm     map[string]*stormState
	silences  silenceCache
	size      atomic.Int64 // len(entries), readable while a batch is open
	spare     batchMaps    // the last batch's maps, emptied, for the next (dirty nil: none)
}

// Open returns a Lifecycle, loading its state from opts.StateDir if a
// snapshot is there.
func Open(cfg Config, opts Options) (*Lifecycle, error) {
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.Samples <= 0 {
		cfg.Samples = DefaultSamples
	}
	if opts.SeenIDs <= 0 {
		opts.SeenIDs = DefaultSeenIDs
	}
	if opts.SilenceRefresh <= 0 {
		opts.SilenceRefresh = DefaultSilenceRefresh
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	for name, sc := range opts.Storm {
		if err := sc.Validate(); err != nil {
			return nil, fmt.Errorf("open lifecycle: notifier %q: %w", name, err)
		}
	}
	l := &Lifecycle{
		cfg: cfg, opts: opts, log: opts.Logger,
		entries:  map[string]*entry{},
		silenced: map[string]SilencedRecord{},
		storm:    map[string]*stormState{},
	}
	l.lru.init()
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.metrics = newMetrics(opts.Registerer, l)
	if opts.StateDir != "" && !opts.ReadOnlySilences {
		if err := l.load(); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Config returns the configuration in effect (defaults filled in).
func (l *Lifecycle) Config() Config { return l.cfg }

// Len returns the number of dedup keys and threshold groups held.
func (l *Lifecycle) Len() int { return int(l.size.Load()) }

// Silenced returns what was recorded, per silence id, of the alerts
// silences held back.
func (l *Lifecycle) Silenced() map[string]SilencedRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]SilencedRecord, len(l.silenced))
	for k, v := range l.silenced {
		out[k] = v
	}
	return out
}

// Batch is a set of changes to the lifecycle state that become visible
// together on Commit. It implements rules.StateStore. A Batch is not safe
// for concurrent use.
type Batch struct {
	l         *Lifecycle
	ctx       context.Context
	err       error            // the first shared-state failure
	versions  map[string]int64 // shared mode: the version each entry was read at
	dirty     map[string]*entry
	order     []string
	seen      map[string]struct{}
	watermark time.Time
	silenced  map[string]SilencedRecord
	storm     map[string]*stormState
	silences  []*compiledSilence
	done      bool
	stats     batchStats
	keyBuf    []byte // get's
}

// batchMaps are a batch's working maps. Batches are one at a time, and
// most are small (replay decides record by record): the Lifecycle keeps
// the last batch's maps, emptied, for the next one instead of making them
// anew.
type batchMaps struct {
	dirty    map[string]*entry
	order    []string
	seen     map[string]struct{}
	silenced map[string]SilencedRecord
	storm    map[string]*stormState
	stats    batchStats
	keyBuf   []byte
}

// maxSpareKeys bounds the maps kept for the next batch: emptying a map
// costs what it once held, so a big batch's maps are dropped instead.
const maxSpareKeys = 64

// takeMaps gives b the spare maps, or new ones. l.mu is held.
func (b *Batch) takeMaps() {
	m := b.l.spare
	b.l.spare = batchMaps{}
	if m.dirty == nil {
		m = batchMaps{dirty: map[string]*entry{}, seen: map[string]struct{}{},
			silenced: map[string]SilencedRecord{}, storm: map[string]*stormState{}}
	}
	b.dirty, b.order, b.seen, b.silenced, b.storm, b.stats = m.dirty, m.order[:0], m.seen, m.silenced, m.storm, m.stats
	b.keyBuf = m.keyBuf
}

// releaseMaps keeps b's maps, emptied, for the next batch (small ones
// only), and leaves b without them. l.mu is held.
func (b *Batch) releaseMaps() {
	small := len(b.dirty) <= maxSpareKeys && len(b.seen) <= maxSpareKeys &&
		len(b.silenced) <= maxSpareKeys && len(b.storm) <= maxSpareKeys && b.stats.small()
	if small && b.dirty != nil && b.seen != nil && b.silenced != nil && b.storm != nil {
		clear(b.dirty)
		clear(b.order)
		clear(b.seen)
		clear(b.silenced)
		clear(b.storm)
		b.stats.clear()
		b.l.spare = batchMaps{dirty: b.dirty, order: b.order[:0], seen: b.seen, silenced: b.silenced, storm: b.storm, stats: b.stats, keyBuf: b.keyBuf}
	}
	b.dirty, b.order, b.seen, b.silenced, b.storm, b.stats = nil, nil, nil, nil, nil, batchStats{}
}

type batchStats struct {
	suppressed, thresholdHeld, late, replayed, silenced map[string]int
	folded                                              map[string]int
	untrusted                                           map[string]int // by reason
}

func (s *batchStats) maps() []map[string]int {
	return []map[string]int{s.suppressed, s.thresholdHeld, s.late, s.replayed, s.silenced, s.folded, s.untrusted}
}

func (s *batchStats) small() bool {
	for _, m := range s.maps() {
		if len(m) > maxSpareKeys {
			return false
		}
	}
	return true
}

// clear empties the counts, keeping the maps.
func (s *batchStats) clear() {
	for _, m := range s.maps() {
		clear(m)
	}
}

func (s *batchStats) add(m *map[string]int, k string) {
	if *m == nil {
		*m = map[string]int{}
	}
	(*m)[k]++
}

// Begin starts a batch. It blocks until the previous batch is committed or
// rolled back, and re-reads the silences file if it changed.
func (l *Lifecycle) Begin() *Batch { return l.BeginContext(context.Background()) }

// BeginContext is Begin with the context for the shared state's requests.
func (l *Lifecycle) BeginContext(ctx context.Context) *Batch { return l.BeginReusing(ctx, nil) }

// BeginReusing is BeginContext in the memory of prev, a finished batch of
// l (committed or rolled back) that nothing will use any more, when there
// is one: for a caller that decides record after record and keeps no
// batch, whose Batch is then not made anew for each. A nil prev, or one
// that is not finished, is not reused.
func (l *Lifecycle) BeginReusing(ctx context.Context, prev *Batch) *Batch {
	l.mu.Lock()
	b := prev
	if b == nil || b.l != l || !b.done {
		b = new(Batch)
	}
	*b = Batch{l: l, ctx: ctx, watermark: l.watermark}
	b.takeMaps()
	switch {
	case l.opts.SharedSilences != nil:
		b.silences = l.silences.getShared(ctx, l.opts.SharedSilences, l.opts.SilenceRefresh, l.log)
	case l.opts.StateDir != "":
		b.silences = l.silences.get(l.opts.StateDir, l.log)
	}
	return b
}

// Kinds of entries: an entry's key is its kind, a zero byte and the
// rule-scoped key.
const (
	kindDedup     = 'd'
	kindThreshold = 't'
)

// get returns the batch's copy of the entry of kind for key, made from the
// committed one (or empty) on first use. The full key is built in a buffer
// of the batch's: a key string is made only for an entry that is new.
func (b *Batch) get(kind byte, key string) *entry {
	b.keyBuf = append(append(append(b.keyBuf[:0], kind), 0), key...)
	if e, ok := b.dirty[string(b.keyBuf)]; ok {
		return e
	}
	var e *entry
	var full string
	if b.l.opts.Shared != nil {
		full = string(b.keyBuf)
		e = b.loadShared(full)
	} else if base, ok := b.l.entries[string(b.keyBuf)]; ok {
		full = base.Key
		e = base.cloneInto(b.l.newEntry())
	} else {
		full = string(b.keyBuf)
		e = b.l.newEntry()
		e.Key = full
	}
	b.dirty[full] = e
	b.order = append(b.order, full)
	return e
}

// Dedup implements rules.StateStore.
func (b *Batch) Dedup(key string) *rules.DedupState {
	return b.get(kindDedup, key).dedupState()
}

// Threshold implements rules.StateStore.
func (b *Batch) Threshold(key string) *rules.ThresholdState {
	return b.get(kindThreshold, key).thresholdState()
}

func (b *Batch) seenBefore(key string) bool {
	if _, ok := b.seen[key]; ok {
		return true
	}
	return b.l.seen != nil && b.l.seen.Has(key)
}

// Process runs one alert, raised by rule r on the event ev, through
// silences, the rule's threshold and dedup, and returns what to enqueue:
// nothing (silenced, held back, below the threshold, or already processed)
// or one Output. ev is the record the evaluator decoded (a decide.Match
// hands it over), so the record is never decoded twice; it is only read.
// An alert of an unknown rule (nil) or without an event passes through
// unchanged. Alert.DedupKey must be the per-(rule, event) key the
// evaluator sets; it becomes Output.Key. An alert let through is
// completed (Complete): a caller may leave its summary and record JSON to
// be made only for the alerts that go out.
func (b *Batch) Process(a notifiers.Alert, r *rules.Rule, ev *cloudtrail.Event) []Output {
	return b.ProcessAppend(nil, a, r, ev)
}

// ProcessAppend is Process appending its outputs to dst: a caller that
// gathers a batch's outputs in one slice (decide.Decision) makes none for
// each alert.
func (b *Batch) ProcessAppend(dst []Output, a notifiers.Alert, r *rules.Rule, ev *cloudtrail.Event) []Output {
	if b.done {
		panic("lifecycle: Process on a finished batch")
	}
	idem := a.DedupKey
	if r == nil || ev == nil || idem == "" {
		Complete(&a, r, ev)
		return append(dst, Output{Key: idem, Alert: a})
	}
	if b.seenBefore(idem) {
		b.stats.add(&b.stats.replayed, a.RuleID)
		return dst
	}
	b.seen[idem] = struct{}{}
	if reason, problem := b.l.eventTimeProblem(ev); problem != "" {
		return b.untrustedTime(dst, a, r, ev, idem, reason, problem)
	}
	if ev.EventTime.After(b.watermark) {
		b.watermark = ev.EventTime
	}
	if b.l.opts.Shared != nil {
		return append(dst, b.processShared(a, r, ev, idem)...)
	}
	dst, silence := b.decide(dst, a, r, ev, idem, &b.stats)
	if silence != nil {
		b.recordSilenced(silence, r, ev)
	}
	return dst
}

// Complete fills in what an evaluator may leave out of an alert until it
// is known to go out: an empty Summary gets the summary rule r renders for
// ev, an empty Event the record's JSON (notifiers.RecordJSON of ev.Raw()).
// Both cost more than the rest of an alert, and most matches are held back
// by thresholds and dedup windows. Without a rule or an event it does
// nothing (a summary that renders empty renders empty again).
func Complete(a *notifiers.Alert, r *rules.Rule, ev *cloudtrail.Event) {
	if ev == nil {
		return
	}
	if a.Summary == "" && r != nil {
		a.Summary = r.Summary(ev)
	}
	if a.Event == nil {
		a.Event = notifiers.RecordJSON(ev.Raw())
	}
}

// Reasons an eventTime is not trusted, the label of
// trailwatch_event_time_untrusted_total.
const (
	timeInvalid = "invalid" // missing, unparseable, or before 1970
	timeFuture  = "future"  // more than MaxClockSkew ahead of the clock
)

// eventTimeProblem says why ev's eventTime cannot be trusted to place it
// in the windows, or "". Whoever can write to the log group can write any
// eventTime: one stamped 20 minutes ahead moved the windows ahead with it
// (every threshold group looked expired, so bursts never alerted, and the
// watermark was saved so); one past year 2262 overflowed the nanosecond
// count; an unparseable one alerted at 0001-01-01.
func (l *Lifecycle) eventTimeProblem(ev *cloudtrail.Event) (reason, problem string) {
	t := ev.EventTime
	switch {
	case t.IsZero():
		return timeInvalid, "eventTime is missing or not a time"
	case t.Year() < 1970:
		return timeInvalid, fmt.Sprintf("eventTime %s is before 1970", t.UTC().Format(time.RFC3339))
	}
	if now := l.opts.Now(); t.After(now.Add(MaxClockSkew)) {
		return timeFuture, fmt.Sprintf("eventTime %s is %s ahead of the clock", t.UTC().Format(time.RFC3339), t.Sub(now).Round(time.Second))
	}
	return "", ""
}

// untrustedTime handles an alert whose record's eventTime cannot be
// trusted: it takes no part in dedup or threshold windows and does not
// move them (it cannot blind them), goes out on its own — silences still
// apply, at the time it was read — and says why in Alert.EventTimeWarning.
func (b *Batch) untrustedTime(dst []Output, a notifiers.Alert, r *rules.Rule, ev *cloudtrail.Event, idem, reason, problem string) []Output {
	now := b.l.opts.Now().UTC()
	b.stats.add(&b.stats.untrusted, reason)
	at := *ev
	at.EventTime = now
	for _, s := range b.silences {
		if s.matches(r.ID, &at) {
			b.stats.add(&b.stats.silenced, r.ID)
			b.recordSilenced(s, r, &at)
			return dst
		}
	}
	Complete(&a, r, ev)
	a.EventTimeWarning = problem + ": the record may be forged or damaged, so dedup and threshold windows were not applied"
	if reason == timeInvalid {
		a.EventTime = now
		a.EventTimeWarning += "; event_time is when trailwatch read it"
	}
	b.l.log.Warn("alert on a record whose eventTime cannot be trusted", "rule", r.ID, "event_id", ev.EventID, "problem", problem)
	return append(dst, Output{Key: idem, Alert: a})
}

// recordSilenced counts an alert silence s held back.
func (b *Batch) recordSilenced(s *compiledSilence, r *rules.Rule, ev *cloudtrail.Event) {
	rec := b.silenceRecord(s.ID)
	rec.Count++
	// The record outlives ev, whose strings may be views of a buffer its
	// caller reuses (and would keep a whole record alive).
	rec.LastRule, rec.LastEventID, rec.LastTime = r.ID, strings.Clone(ev.EventID), ev.EventTime
	b.silenced[s.ID] = rec
	b.l.log.Info("alert silenced", "rule", r.ID, "event_id", ev.EventID, "silence", s.ID)
}

// decide runs one alert through the silences, the rule's threshold and
// dedup, reading and changing the entries through b.get, and counting in
// st. It returns dst with the output appended, or the silence that holds
// the alert back.
func (b *Batch) decide(dst []Output, a notifiers.Alert, r *rules.Rule, ev *cloudtrail.Event, idem string, st *batchStats) ([]Output, *compiledSilence) {
	for _, s := range b.silences {
		if s.matches(r.ID, ev) {
			st.add(&st.silenced, r.ID)
			return dst, s
		}
	}
	out, err := r.Observe(ev, b, b.l.cfg.DedupWindow)
	if err != nil {
		// A dedup key or group_by that fails on this event must not
		// swallow the alert: send it as a plain match.
		b.l.log.Warn("rule lifecycle expression failed; alert sent without dedup or threshold",
			"rule", r.ID, "event_id", ev.EventID, "error", err.Error())
		Complete(&a, r, ev)
		return append(dst, Output{Key: idem, Alert: a}), nil
	}
	var samples []notifiers.EventSample
	if th := r.Threshold; th != nil {
		e := b.get(kindThreshold, out.ThresholdKey)
		e.Window = th.Window
		if out.Late {
			st.add(&st.late, r.ID)
		} else {
			if e.Samples == nil {
				e.Samples = e.takeSamples() // addSample appends at once: nil or not cannot show
			}
			e.Samples = addSample(e.Samples, sampleOf(r.ID, ev), th.Window, b.l.cfg.Samples)
		}
		if !out.Fired {
			st.add(&st.thresholdHeld, r.ID)
			return dst, nil
		}
		samples = e.Samples
		e.Samples = nil
	}
	if out.DedupKey != "" {
		e := b.get(kindDedup, out.DedupKey)
		e.Window = dedupWindow(r, b.l.cfg.DedupWindow)
	}
	if !out.Notify {
		st.add(&st.suppressed, r.ID)
		return dst, nil
	}
	switch {
	case out.DedupKey != "":
		a.DedupKey = hashKey(out.DedupKey)
	case out.ThresholdKey != "":
		// A threshold alert stands for its group, dedup or not.
		a.DedupKey = hashKey(out.ThresholdKey)
	}
	Complete(&a, r, ev)
	a.Count = out.Count
	a.Suppressed = out.Suppressed
	if out.Count > 1 {
		a.FirstTime, a.LastTime = out.First.UTC(), out.Last.UTC()
	}
	a.Group = out.Group
	a.Samples = samples
	switch {
	case r.Threshold != nil:
		a.Summary = fmt.Sprintf("%d matching events in %s (%s to %s): %s", out.Count-out.Suppressed,
			r.Threshold.Window, out.First.UTC().Format(time.RFC3339), out.Last.UTC().Format(time.RFC3339), a.Summary)
		if out.Suppressed > 0 {
			a.Summary += fmt.Sprintf(" (and %d more since the previous alert)", out.Suppressed)
		}
	case out.Suppressed > 0:
		a.Summary += fmt.Sprintf(" (and %d repeats suppressed since %s)", out.Suppressed, out.First.UTC().Format(time.RFC3339))
	}
	return append(dst, Output{Key: idem, Alert: a}), nil
}

func dedupWindow(r *rules.Rule, def time.Duration) time.Duration {
	switch {
	case r.Dedup != nil && r.Dedup.Window > 0:
		return r.Dedup.Window
	case r.Dedup != nil && def <= 0:
		return rules.DefaultDedupWindow
	}
	return def
}

func (b *Batch) silenceRecord(id string) SilencedRecord {
	if rec, ok := b.silenced[id]; ok {
		return rec
	}
	return b.l.silenced[id]
}

func sampleOf(ruleID string, ev *cloudtrail.Event) notifiers.EventSample {
	return notifiers.EventSample{EventID: ev.EventID, EventTime: ev.EventTime.UTC(), EventName: ev.EventName,
		RuleID: ruleID, Principal: ev.Principal(), SourceIP: ev.SourceIPAddress, ErrorCode: ev.ErrorCode}
}

// ownSample returns x with its strings copied into memory of their own, in
// one allocation: samples are kept in the lifecycle's state, and the
// strings of the event they come from may be views of a buffer its caller
// reuses (decide.ParallelOptions.ReuseEvents), and would otherwise keep
// the whole record alive.
func ownSample(x notifiers.EventSample) notifiers.EventSample {
	fields := [...]*string{&x.EventID, &x.EventName, &x.RuleID, &x.Principal, &x.SourceIP, &x.ErrorCode}
	n := 0
	for _, f := range fields {
		n += len(*f)
	}
	if n == 0 {
		return x
	}
	var b strings.Builder
	b.Grow(n)
	for _, f := range fields {
		b.WriteString(*f)
	}
	all := b.String()
	for _, f := range fields {
		n := len(*f)
		*f, all = all[:n], all[n:]
	}
	return x
}

// addSample keeps the first n samples of the current window: samples that
// fell out of the window (relative to the newest) make room.
func addSample(s []notifiers.EventSample, x notifiers.EventSample, window time.Duration, n int) []notifiers.EventSample {
	newest := x.EventTime
	for _, e := range s {
		if e.EventTime.After(newest) {
			newest = e.EventTime
		}
	}
	cut := newest.Add(-window)
	s = slices.DeleteFunc(s, func(e notifiers.EventSample) bool { return !e.EventTime.After(cut) })
	if len(s) < n {
		s = append(s, ownSample(x))
		slices.SortStableFunc(s, func(a, b notifiers.EventSample) int { return a.EventTime.Compare(b.EventTime) })
	}
	return s
}

// hashKey turns a rule-scoped key into the alert's DedupKey.
func hashKey(k string) string {
	sum := sha256.Sum256([]byte(k))
	return hex.EncodeToString(sum[:16])
}

// Err returns the first failure of the shared state in this batch (nil
// without Options.Shared). A batch with an error must not be delivered:
// roll it back and read it again later; Commit refuses it.
func (b *Batch) Err() error { return b.err }

// Rollback discards the batch's changes.
func (b *Batch) Rollback() {
	if b.done {
		return
	}
	b.done = true
	b.releaseMaps()
	b.l.mu.Unlock()
}

// Commit makes the batch's changes visible and, with a state directory,
// writes the state snapshot. Call it only after every Output (and digest)
// of the batch is durably enqueued. The in-memory state is updated even
// when writing the snapshot fails (it describes what was enqueued); the
// error says the snapshot is behind.
func (b *Batch) Commit() error {
	if b.done {
		return errors.New("commit lifecycle batch: already finished")
	}
	if b.err != nil {
		b.Rollback()
		return fmt.Errorf("commit lifecycle batch: %w", b.err)
	}
	b.done = true
	l := b.l
	defer l.mu.Unlock()
	defer b.releaseMaps() // before the unlock
	changed := len(b.dirty) > 0 || len(b.seen) > 0 || len(b.silenced) > 0 || len(b.storm) > 0
	for _, k := range b.order {
		e := b.dirty[k]
		old, had := l.entries[k]
		if had {
			l.lru.Remove(old)
			l.freeEntry(old) // replaced by its changed copy e
		}
		if e.Threshold != nil && len(e.Threshold.Times) == 0 && len(e.Samples) == 0 {
			// A group that fired or never counted holds nothing.
			if had {
				delete(l.entries, k)
			}
			l.freeEntry(e)
			continue
		}
		l.lru.PushBack(e)
		l.entries[k] = e
	}
	for k := range b.seen {
		l.addSeen(k)
	}
	if b.watermark.After(l.watermark) {
		l.watermark = b.watermark
	}
	for k, v := range b.silenced {
		l.silenced[k] = v
	}
	for k, v := range b.storm {
		l.storm[k] = v
	}
	// Expired entries gather at the front of the LRU; drop a bounded
	// number per commit so the cost stays small.
	for i := 0; i < 256 && l.lru.Len() > 0; i++ {
		front := l.lru.Front()
		if !front.expired(l.watermark) {
			break
		}
		l.lru.Remove(front)
		delete(l.entries, front.Key)
		l.freeEntry(front)
	}
	for len(l.entries) > l.cfg.MaxKeys {
		front := l.lru.Front()
		l.lru.Remove(front)
		delete(l.entries, front.Key)
		l.freeEntry(front)
		l.metrics.evictions.Inc()
	}
	l.size.Store(int64(len(l.entries)))
	l.metrics.observe(&b.stats)
	if !changed || l.opts.StateDir == "" || l.opts.ReadOnlySilences {
		return nil
	}
	if err := l.save(); err != nil {
		return fmt.Errorf("commit lifecycle batch: %w", err)
	}
	return nil
}

// addSeen records a processed pair's idempotency key. The window (an
// open-addressing table of the keys' hashes: a Go map of the strings cost
// a cache miss or two a pair to forget the oldest) and the ring of the
// keys move in step: each forgets its oldest when a new key comes in.
func (l *Lifecycle) addSeen(idem string) {
	if l.seen == nil {
		l.seen = idwindow.New(l.opts.SeenIDs) // 384 KiB by default: not before the first alert
	}
	if !l.seen.Add(idem) {
		return
	}
	if len(l.seenRing) < l.opts.SeenIDs {
		l.seenRing = append(l.seenRing, idem)
	} else {
		l.seenRing[l.seenNext] = idem
		l.seenNext = (l.seenNext + 1) % len(l.seenRing)
	}
}

// snapshot is the state file's content.
type snapshot struct {
	Version   int                       `json:"version"`
	Watermark time.Time                 `json:"watermark,omitzero"`
	Entries   []*entry                  `json:"entries"` // least recently used first
	Seen      []string                  `json:"seen"`    // oldest first
	Silenced  map[string]SilencedRecord `json:"silenced,omitempty"`
	Storm     map[string]*stormState    `json:"storm,omitempty"`
}

func (l *Lifecycle) save() error {
	snap := snapshot{Version: 1, Watermark: l.watermark, Silenced: l.silenced, Storm: l.storm,
		Entries: make([]*entry, 0, len(l.entries)), Seen: make([]string, 0, len(l.seenRing))}
	for e := l.lru.Front(); e != nil && e != &l.lru.root; e = e.next {
		snap.Entries = append(snap.Entries, e)
	}
	snap.Seen = append(snap.Seen, l.seenRing[l.seenNext:]...)
	snap.Seen = append(snap.Seen, l.seenRing[:l.seenNext]...)
	data, err := json.Marshal(&snap)
	if err != nil {
		return fmt.Errorf("save lifecycle state: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(l.opts.StateDir, StateFileName), data); err != nil {
		return fmt.Errorf("save lifecycle state: %w", err)
	}
	return nil
}

func (l *Lifecycle) load() error {
	path := filepath.Join(l.opts.StateDir, StateFileName)
	snap, err := readSnapshot(path)
	if err != nil || snap == nil {
		return err
	}
	l.watermark = snap.Watermark
	if now := l.opts.Now(); l.watermark.After(now.Add(MaxClockSkew)) {
		// Saved by a version that trusted any eventTime, or before the
		// clock was stepped back: left there, it would expire every window.
		// It is dropped: the next records set it again.
		l.log.Warn("lifecycle watermark is in the future: dropping it, the next records set it again",
			"watermark", l.watermark.UTC(), "now", now.UTC())
		l.watermark = time.Time{}
	}
	for _, e := range snap.Entries {
		if e == nil || e.Key == "" {
			continue
		}
		if old, ok := l.entries[e.Key]; ok {
			l.lru.Remove(old)
		}
		l.lru.PushBack(e)
		l.entries[e.Key] = e
	}
	for len(l.entries) > l.cfg.MaxKeys {
		front := l.lru.Front()
		l.lru.Remove(front)
		delete(l.entries, front.Key)
		l.metrics.evictions.Inc()
	}
	l.size.Store(int64(len(l.entries)))
	for _, k := range snap.Seen {
		l.addSeen(k)
	}
	for k, v := range snap.Silenced {
		l.silenced[k] = v
	}
	for k, v := range snap.Storm {
		if v != nil {
			l.storm[k] = v
		}
	}
	return nil
}

// readSnapshot reads a state file; a missing file is no state (nil).
func readSnapshot(path string) (*snapshot, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load lifecycle state: %w", err)
	}
	var snap snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return nil, fmt.Errorf("load lifecycle state %s: %w", path, err)
	}
	if snap.Version != 1 {
		return nil, fmt.Errorf("load lifecycle state %s: unknown version %d", path, snap.Version)
	}
	return &snap, nil
}

// ReadSilenced reads, without opening a Lifecycle (the service may be
// running), what the state in dir recorded of silenced alerts.
func ReadSilenced(dir string) (map[string]SilencedRecord, error) {
	snap, err := readSnapshot(filepath.Join(dir, StateFileName))
	if err != nil || snap == nil {
		return nil, err
	}
	return snap.Silenced, nil
}

// writeFileAtomic writes data to a temporary file beside path, fsyncs it,
// renames it over path and fsyncs the directory.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
