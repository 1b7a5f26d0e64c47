package decide

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
	"sync/atomic"

	"github.com/trailwatch/trailwatch/internal/idwindow"
	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// Evaluator turns raw CloudTrail records into alerts with the current rule
// set. It is safe for concurrent use; SetRules swaps the rule set
// atomically, so a reload never tears an evaluation.
type Evaluator struct {
	set   atomic.Pointer[rules.Set]
	seen  *idwindow.Window
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
		e.seen = idwindow.New(1 << 18)
	case opts.DedupWindow > 0:
		e.seen = idwindow.New(opts.DedupWindow)
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
