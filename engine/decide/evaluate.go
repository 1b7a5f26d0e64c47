package decide

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// Evaluator turns raw CloudTrail records into alerts with the current rule
// set. It is safe for concurrent use; SetRules swaps the rule set
// atomically, so a reload never tears an evaluation.
type Evaluator struct {
	set   atomic.Pointer[rules.Set]
	seen  *IDWindow
	onErr func(rules.MatchError, *cloudtrail.Event)

	records    atomic.Uint64
	malformed  atomic.Uint64
	duplicates atomic.Uint64
	alerts     atomic.Uint64
	ruleErrors atomic.Uint64

	pool sync.Pool
}

// EvaluatorOptions adjusts an Evaluator.
type EvaluatorOptions struct {
	// DedupWindow is how many recent eventIDs are remembered to drop
	// CloudTrail's duplicate deliveries (0 means 262144; negative turns
	// deduplication off).
	DedupWindow int
	// OnRuleError is called when a rule's condition fails at run time on
	// an event (the rule is skipped for that event and goes on working).
	OnRuleError func(rules.MatchError, *cloudtrail.Event)
}

// NewEvaluator returns an Evaluator for set.
func NewEvaluator(set *rules.Set, opts EvaluatorOptions) *Evaluator {
	e := &Evaluator{onErr: opts.OnRuleError}
	e.set.Store(set)
	switch {
	case opts.DedupWindow == 0:
		e.seen = NewIDWindow(1 << 18)
	case opts.DedupWindow > 0:
		e.seen = NewIDWindow(opts.DedupWindow)
	}
	e.pool.New = func() any { return new(cloudtrail.Event) }
	return e
}

// SetRules swaps in a new rule set.
func (e *Evaluator) SetRules(set *rules.Set) { e.set.Store(set) }

// Rules returns the current rule set.
func (e *Evaluator) Rules() *rules.Set { return e.set.Load() }

// Stats are an Evaluator's counters since it was made.
type Stats struct {
	Records    uint64 `json:"records"`    // records evaluated (not malformed, not duplicates)
	Malformed  uint64 `json:"malformed"`  // inputs that were not CloudTrail records
	Duplicates uint64 `json:"duplicates"` // records dropped as repeats of a recent eventID
	Alerts     uint64 `json:"alerts"`
	RuleErrors uint64 `json:"rule_errors"` // rule evaluations that failed at run time
}

// Stats returns the counters.
func (e *Evaluator) Stats() Stats {
	return Stats{
		Records: e.records.Load(), Malformed: e.malformed.Load(), Duplicates: e.duplicates.Load(),
		Alerts: e.alerts.Load(), RuleErrors: e.ruleErrors.Load(),
	}
}

// Match is one rule matching one record: the alert it raises, the rule,
// and the record, decoded. The event is handed over with the alert so that
// nothing after the evaluator (the alert lifecycle) decodes the record
// again.
type Match struct {
	// Alert is the alert the match raises. From Parallel its Summary and
	// Event (the record's JSON) are left empty, to be made only if the
	// alert goes out: Decision makes them (lifecycle.Complete).
	Alert notifiers.Alert
	// Rule is the rule that matched, from the rule set the record was
	// evaluated with.
	Rule *rules.Rule
	// Event is the record as the rules saw it. It belongs to the match (the
	// evaluator does not reuse it) and is shared by the record's matches:
	// read it from one goroutine, do not change it. It owns its bytes
	// (cloudtrail.Event.Own), so it stays valid after the input buffer is
	// reused, and fields no rule needed yet are decoded from that copy on
	// first use; except from a Parallel with ReuseEvents, where it and the
	// alert's strings read the batch's buffer, valid until emit returns.
	Event *cloudtrail.Event
}

// Evaluate decodes one raw record and returns a match for each rule it
// matches, appended to dst. It returns an error (and counts the record as
// malformed) only when raw is not a CloudTrail record. A record whose
// eventID was seen recently returns no matches.
func (e *Evaluator) Evaluate(raw []byte, dst []Match) ([]Match, error) {
	ev := e.pool.Get().(*cloudtrail.Event)
	defer func() {
		if ev != nil {
			e.pool.Put(ev)
		}
	}()
	// Two tiers: the header (one validating pass, scalar fields only) is
	// enough to drop duplicates and to decide most records; the whole
	// record is decoded only when a candidate rule needs it.
	complete, err := cloudtrail.DecodeHeader(ev, raw)
	if err != nil {
		e.malformed.Add(1)
		return dst, err
	}
	if e.seen != nil && ev.EventID != "" && !e.seen.Add(ev.EventID) {
		e.duplicates.Add(1)
		return dst, nil
	}
	e.records.Add(1)
	n := len(dst)
	dst, err = e.match(ev, raw, complete, dst, e.handleRuleError, true, (*cloudtrail.Event).Own)
	if len(dst) > n {
		// The matches own the event now.
		ev = nil
	}
	if err != nil {
		// The header was valid but the whole record is not: count it as
		// malformed, as the one-tier decode would have.
		e.records.Add(^uint64(0))
		e.malformed.Add(1)
		return dst, err
	}
	e.alerts.Add(uint64(len(dst) - n))
	return dst, nil
}

// match is Evaluate's second half, shared with Parallel: it evaluates the
// rules on ev, which cloudtrail.DecodeHeader filled from raw, and appends a
// match for each to dst, which then hold ev: the caller must not reuse ev
// when dst grew. It touches no counter. An error means the record is not
// valid JSON past its header. Without full the alerts' summaries and
// records are left empty (see Match.Alert). place, if set, moves a
// matched ev's views of raw elsewhere before the alerts read them
// (cloudtrail.Event.Own, or MoveTo); without, ev and the alerts' strings
// are views of raw, which the caller keeps unchanged while it uses them.
func (e *Evaluator) match(ev *cloudtrail.Event, raw []byte, complete bool, dst []Match, onErr func(rules.MatchError), full bool, place func(*cloudtrail.Event)) ([]Match, error) {
	set := e.set.Load()
	var buf [8]*rules.Rule
	matched, _, err := set.MatchHeaderInPlace(ev, complete, buf[:0], onErr)
	if err != nil || len(matched) == 0 {
		return dst, err
	}
	if place != nil {
		place(ev)
	}
	// The alerts share ev's bytes.
	var record json.RawMessage
	if full {
		record = notifiers.RecordJSON(ev.Raw())
	}
	for _, r := range matched {
		dst = append(dst, Match{Alert: newAlert(r, ev, record, full), Rule: r, Event: ev})
	}
	return dst, nil
}

func (e *Evaluator) handleRuleError(me rules.MatchError) {
	e.ruleErrors.Add(1)
	if e.onErr != nil {
		e.onErr(me, me.Event)
	}
}

// NewAlert builds the alert for rule r matching event ev, whose raw JSON is
// raw.
func NewAlert(r *rules.Rule, ev *cloudtrail.Event, raw json.RawMessage) notifiers.Alert {
	return newAlert(r, ev, notifiers.CleanJSON(raw), true) // no invalid UTF-8 or lone surrogates in any output
}

// newAlert is NewAlert for raw already cleaned (notifiers.CleanJSON),
// without the summary unless summary is set.
func newAlert(r *rules.Rule, ev *cloudtrail.Event, clean json.RawMessage, summary bool) notifiers.Alert {
	u := &ev.UserIdentity
	user := u.UserName
	if user == "" {
		user = u.SessionContext.SessionIssuer.UserName
	}
	var sum string
	if summary {
		sum = r.Summary(ev)
	}
	return notifiers.Alert{
		RuleID:       r.ID,
		Title:        r.Title,
		Severity:     r.Severity,
		Summary:      sum,
		Description:  r.Description,
		Tags:         r.Tags,
		Runbook:      r.Runbook,
		References:   r.References,
		DedupKey:     AlertKey(r.ID, ev),
		EventID:      ev.EventID,
		EventTime:    ev.EventTime,
		EventName:    ev.EventName,
		EventSource:  ev.EventSource,
		Principal:    ev.Principal(),
		UserName:     user,
		AccessKeyID:  u.AccessKeyID,
		SourceIP:     ev.SourceIPAddress,
		UserAgent:    ev.UserAgent,
		AWSRegion:    ev.AWSRegion,
		AccountID:    ev.AccountID(),
		ErrorCode:    ev.ErrorCode,
		ErrorMessage: ev.ErrorMessage,
		Count:        1,
		Event:        clean,
	}
}

// AlertKey is the identity of the match of rule ruleID on ev: the same rule
// on the same CloudTrail event always gives the same key, however often the
// record is delivered or re-read. NewAlert puts it in Alert.DedupKey; the
// alert lifecycle (engine/lifecycle) keeps it as the outbox idempotency key
// and replaces DedupKey with the dedup key, the alert's identity downstream.
func AlertKey(ruleID string, ev *cloudtrail.Event) string {
	id := ev.EventID
	if id == "" {
		// No eventID (rare: synthetic records): fall back to what identifies
		// the call.
		id = ev.RequestID + "|" + ev.EventTime.String() + "|" + ev.EventName + "|" + ev.Principal()
	}
	// ruleID, a zero byte and id, hashed from a buffer on the stack: the
	// key is made for every match, and its string is all it allocates.
	var buf [160]byte
	sum := sha256.Sum256(append(append(append(buf[:0], ruleID...), 0), id...))
	var key [32]byte
	hex.Encode(key[:], sum[:16])
	return string(key[:])
}

// IDWindow remembers the most recent N distinct ids, to drop repeats. Its
// memory is bounded by N whatever the input size. It is safe for
// concurrent use.
//
// It is an open-addressing table of the ids' 16-byte keys (twice as many
// slots as ids, linear probing, a deleted key's cluster shifted back) with
// a ring that says which key to forget next. The keys are seeded hashes
// (idKey), uniform already, so a key's first eight bytes are its slot: a lookup is
// usually one cache line, where a Go map of the same keys touches two or
// three (the window is checked for every record, in input order, on the
// one goroutine that hands results back).
type IDWindow struct {
	mu    sync.Mutex
	slots [][16]byte // the zero key marks an empty slot
	mask  uint64
	ring  [][16]byte
	next  int
}

// NewIDWindow returns a window that remembers n ids.
func NewIDWindow(n int) *IDWindow {
	size := 2
	for size < 2*n {
		size <<= 1
	}
	// The table and the ring in one mapping outside the heap: see keyMemory.
	keys, free := keyMemory(size + n)
	w := &IDWindow{slots: keys[:size:size], mask: uint64(size - 1), ring: keys[size : size : size+n]}
	freeWithWindow(w, free)
	return w
}

// Add records id and reports whether it was new.
func (w *IDWindow) Add(id string) bool { return w.addKey(idKey(id)) }

// idKey is the window's key for id: a hash, so that the window's memory
// does not depend on the ids' lengths (nor keep the records they alias).
// It is 128 bits of two hash/maphash hashes with seeds made at random for
// the process: ids collide by chance with probability 2^-128 a pair, and
// no one can make two collide on purpose without the seeds, which never
// leave the process (the window is in memory only). SHA-256, which it
// replaces, cost ten times as much, once for every record.
func idKey(id string) [16]byte {
	var key [16]byte
	binary.LittleEndian.PutUint64(key[:8], maphash.String(idSeeds[0], id))
	binary.LittleEndian.PutUint64(key[8:], maphash.String(idSeeds[1], id))
	return key
}

// idSeeds are idKey's seeds.
var idSeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

func (w *IDWindow) addKey(key [16]byte) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.addLocked(key)
}

func (w *IDWindow) addLocked(key [16]byte) bool {
	if key == ([16]byte{}) {
		key[15] = 1 // the zero key marks an empty slot
	}
	i := w.home(key)
	for w.slots[i] != ([16]byte{}) {
		if w.slots[i] == key {
			return false
		}
		i = (i + 1) & w.mask
	}
	if len(w.ring) < cap(w.ring) {
		w.ring = append(w.ring, key)
	} else {
		w.remove(w.ring[w.next])
		w.ring[w.next] = key
		w.next = (w.next + 1) % len(w.ring)
		// The removal may have shifted the cluster key lands in.
		i = w.home(key)
		for w.slots[i] != ([16]byte{}) {
			i = (i + 1) & w.mask
		}
	}
	w.slots[i] = key
	return true
}

// addKeys is addKey for each of keys in turn, appending to fresh whether
// each was new, under one lock: a lookup nearly always misses the cache
// (the table is megabytes large and a key's slot is random), and taken
// together, with the slots read first, the misses overlap instead of each
// lookup waiting for its own behind a lock.
func (w *IDWindow) addKeys(keys [][16]byte, fresh []bool) []bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	var x byte
	for i := range keys {
		x += w.slots[w.home(keys[i])][15]
	}
	prefetchSink = x
	for _, k := range keys {
		fresh = append(fresh, w.addLocked(k))
	}
	return fresh
}

// prefetchSink keeps addKeys' first reads from being optimized away.
var prefetchSink byte

func (w *IDWindow) home(key [16]byte) uint64 {
	return binary.LittleEndian.Uint64(key[:8]) & w.mask
}

// remove deletes key (which is in the table) and shifts back the keys
// after it in its cluster that would no longer be found past the gap.
func (w *IDWindow) remove(key [16]byte) {
	i := w.home(key)
	for w.slots[i] != key {
		i = (i + 1) & w.mask
	}
	for j := i; ; {
		j = (j + 1) & w.mask
		if w.slots[j] == ([16]byte{}) {
			break
		}
		// The key at j stays if its home lies cyclically in (i, j].
		h := w.home(w.slots[j])
		if (i <= j && i < h && h <= j) || (i > j && (i < h || h <= j)) {
			continue
		}
		w.slots[i] = w.slots[j]
		i = j
	}
	w.slots[i] = [16]byte{}
}
