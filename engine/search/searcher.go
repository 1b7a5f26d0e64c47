package search

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"sort"
	"time"

	"github.com/trailwatch/trailwatch/engine/s3files"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// DefaultDeliveryMargin is how long after an event CloudTrail may deliver
// the S3 log file holding it, for pruning by file and directory names.
// CloudTrail delivers within about 5 minutes on average with no
// guarantee; an hour keeps pruning safe for all but pathological delays,
// and files read needlessly are only filtered out again.
const DefaultDeliveryMargin = time.Hour

// Options adjusts a Searcher.
type Options struct {
	// Limit is how many matches are kept, the newest; 0 keeps all.
	Limit int
	// DeliveryMargin is how late after an event its S3 log file may be
	// delivered (0 means DefaultDeliveryMargin).
	DeliveryMargin time.Duration
	// OnBadInput is told about each input that is not a CloudTrail record
	// (or cannot be read), with its place; nil ignores them.
	OnBadInput func(place string, err error)
	// OnWhereError is told when the Where condition fails at run time on
	// a record (the record does not match); nil ignores it.
	OnWhereError func(place string, err error)
	// Progress, if set, is called every ProgressEvery records read.
	Progress func(Stats)
	// ProgressEvery is how many records are read between Progress calls
	// (0 means DefaultProgressEvery).
	ProgressEvery int
	// SkipFile, if set, is told about every file pruned by its name.
	SkipFile func(path string)
	// S3 reads s3:// paths; nil means a client from the SDK's default
	// configuration chain.
	S3 s3files.Client
	// S3Stats, if set, counts the List calls, objects and bytes of s3://
	// paths.
	S3Stats *s3files.Stats
	// Workers is how many files Files reads and checks at once (0: one
	// per core). The results, counters and callbacks are the same, in the
	// same order, for any number: every callback runs on Files' caller.
	Workers int
}

// DefaultProgressEvery is how many records are read between Progress
// calls by default.
const DefaultProgressEvery = 4096

// Stats counts a search's work.
type Stats struct {
	Scanned    int    `json:"scanned"`      // records read
	Matched    int    `json:"matched"`      // distinct matching records
	Duplicates int    `json:"duplicates"`   // matching records dropped as repeats of an eventID
	BadInputs  int    `json:"bad_inputs"`   // inputs that were not CloudTrail records
	WhereErrs  int    `json:"where_errors"` // records on which Where failed
	Pruned     int    `json:"pruned"`       // files and directories skipped by the time range
	Current    string `json:"current"`      // the file or log group being read
}

// Result is one matching record.
type Result struct {
	// Event is the decoded record.
	Event *cloudtrail.Event
	// Raw is the record's JSON, compacted.
	Raw json.RawMessage
	// Place is where it was read (file:line, file: record N, or log group
	// and stream).
	Place string
}

// Searcher runs one Query over any number of sources and collects the
// matches, deduplicated by eventID, newest first. It is not safe for
// concurrent use (Files reads on several goroutines by itself).
type Searcher struct {
	q     Query
	opts  Options
	check checker // Offer's
	seen  map[string]struct{}
	kept  resultHeap
	stats Stats
}

// New returns a Searcher for q.
func New(q Query, opts Options) *Searcher {
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = DefaultProgressEvery
	}
	if opts.DeliveryMargin == 0 {
		opts.DeliveryMargin = DefaultDeliveryMargin
	}
	s := &Searcher{q: q, opts: opts, seen: map[string]struct{}{}}
	s.check = s.checker()
	return s
}

// Query returns the searcher's query.
func (s *Searcher) Query() Query { return s.q }

// Offer checks one raw record, read at place, and keeps it if it matches.
// fallback is the time to use when the record has no eventTime (a log
// event's timestamp), or zero.
func (s *Searcher) Offer(raw []byte, place string, fallback time.Time) {
	v := s.check.check(raw, fallback)
	s.tally(&v, place)
}

// checker decodes records and matches them against the query: the part of
// the search that touches no shared state, so that each goroutine reading
// records has its own and the Searcher takes the verdicts in input order.
type checker struct {
	q    *Query
	lits [][]byte
	ev   *cloudtrail.Event // the event the next record is decoded into
}

func (s *Searcher) checker() checker { return checker{q: &s.q, lits: s.q.literals()} }

// verdict is what checking one record found.
type verdict struct {
	kind verdictKind
	err  error             // malformed, whereFailed
	ev   *cloudtrail.Event // matched: the decoded record, owned
	raw  json.RawMessage   // matched: the record, compacted
}

type verdictKind uint8

const (
	rejected    verdictKind = iota // not a match
	malformed                      // not a CloudTrail record
	whereFailed                    // Where failed at run time
	matched
)

// check decodes raw and matches it.
func (c *checker) check(raw []byte, fallback time.Time) verdict {
	if quickReject(raw, c.lits) {
		return verdict{}
	}
	if c.ev == nil {
		c.ev = new(cloudtrail.Event)
	}
	ev := c.ev
	if err := cloudtrail.DecodeEventInto(ev, raw); err != nil {
		return verdict{kind: malformed, err: err}
	}
	if ev.EventTime.IsZero() && !fallback.IsZero() {
		ev.EventTime = fallback.UTC()
	}
	ok, err := c.q.Match(ev)
	if err != nil {
		return verdict{kind: whereFailed, err: err}
	}
	if !ok {
		return verdict{}
	}
	// The decoded event is kept: the next record needs a fresh one.
	c.ev = nil
	return verdict{kind: matched, ev: ev, raw: compact(raw)}
}

// scanned counts n records read, calling Progress as they pass each
// multiple of ProgressEvery. Once ctx has ended, it counts no further
// record (records are read until ctx ends) and returns false.
func (s *Searcher) scanned(ctx context.Context, n int) bool {
	if s.opts.Progress == nil {
		s.stats.Scanned += n
		return true
	}
	every := s.opts.ProgressEvery
	for n > 0 {
		if ctx.Err() != nil {
			return false
		}
		step := every - s.stats.Scanned%every
		if step > n {
			s.stats.Scanned += n
			return true
		}
		s.stats.Scanned += step
		n -= step
		s.opts.Progress(s.stats)
	}
	return true
}

// tally counts the record of v, read at place, and keeps it if it
// matched: the searcher's state, updated in input order.
func (s *Searcher) tally(v *verdict, place string) {
	s.scanned(context.Background(), 1)
	switch v.kind {
	case rejected:
		return
	case malformed:
		s.bad(place, v.err)
		return
	case whereFailed:
		s.stats.WhereErrs++
		if s.opts.OnWhereError != nil {
			s.opts.OnWhereError(place, v.err)
		}
		return
	}
	ev := v.ev
	if ev.EventID != "" {
		if _, dup := s.seen[ev.EventID]; dup {
			s.stats.Duplicates++
			return
		}
		s.seen[ev.EventID] = struct{}{}
	}
	s.stats.Matched++
	r := &Result{Event: ev, Raw: v.raw, Place: place}
	heap.Push(&s.kept, r)
	if s.opts.Limit > 0 && s.kept.Len() > s.opts.Limit {
		heap.Pop(&s.kept)
	}
}

func (s *Searcher) bad(place string, err error) {
	s.stats.BadInputs++
	if s.opts.OnBadInput != nil {
		s.opts.OnBadInput(place, err)
	}
}

func compact(raw []byte) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return append(json.RawMessage(nil), bytes.TrimSpace(raw)...)
	}
	return b.Bytes()
}

// Stats returns the counters so far.
func (s *Searcher) Stats() Stats { return s.stats }

// Results returns the matches kept so far, newest first (ties by eventID).
// With a Limit, they are the Limit newest of Stats().Matched.
func (s *Searcher) Results() []Result {
	out := make([]Result, len(s.kept))
	for i, r := range s.kept {
		out[i] = *r
	}
	sort.Slice(out, func(i, j int) bool { return newer(&out[i], &out[j]) })
	return out
}

// newer orders results newest first, then by eventID, then by place, so
// that output is deterministic.
func newer(a, b *Result) bool {
	if !a.Event.EventTime.Equal(b.Event.EventTime) {
		return a.Event.EventTime.After(b.Event.EventTime)
	}
	if a.Event.EventID != b.Event.EventID {
		return a.Event.EventID < b.Event.EventID
	}
	return a.Place < b.Place
}

// resultHeap is a min-heap by recency: its root is the oldest kept match,
// the one a newer match evicts when the limit is reached.
type resultHeap []*Result

func (h resultHeap) Len() int           { return len(h) }
func (h resultHeap) Less(i, j int) bool { return newer(h[j], h[i]) }
func (h resultHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *resultHeap) Push(x any)        { *h = append(*h, x.(*Result)) }
func (h *resultHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return r
}
