package decide

import (
	"runtime"
	"sync"

	"github.com/trailwatch/trailwatch/internal/idwindow"
	"github.com/trailwatch/trailwatch/rules"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// Parallel evaluates a stream of records on several goroutines and hands
// the results back in input order, on the goroutine that adds the records:
// its output (matches, malformed records, rule errors, the Evaluator's
// counters) is the same, byte for byte, as evaluating each record with
// Evaluate in turn. Records travel in batches, and at most a few batches
// per worker are in flight, so memory is bounded by the batch size times
// the number of workers, whatever the input size.
//
// What must happen in input order happens on the caller's goroutine, when
// a batch is handed back: dropping repeated eventIDs (the first delivery
// wins, as in a sequential replay), counting, and reporting rule errors.
// The workers only decode and evaluate.
//
// A Parallel is used by one goroutine: Add and Pass, then Close.
type Parallel[T any] struct {
	ev      *Evaluator
	emit    func(meta T, matches []Match, err error) error
	workers int
	window  int
	reuse   bool // ParallelOptions.ReuseEvents

	cur      *batch[T]
	event    *cloudtrail.Event // one worker: the event the next record is decoded into
	inflight []*batch[T]       // in input order
	work     chan *batch[T]
	free     []*batch[T]
	wg       sync.WaitGroup
	err      error
	closed   bool
}

// ParallelOptions adjusts a Parallel.
type ParallelOptions struct {
	// Workers is the number of evaluating goroutines; 0 means GOMAXPROCS.
	// With 1 the records are evaluated on the caller's goroutine, each as
	// it is added (from the caller's buffer: nothing is copied).
	Workers int
	// BatchRecords and BatchBytes bound a batch (0: 256 records, 512 KiB).
	BatchRecords, BatchBytes int
	// ReuseEvents says that emit keeps none of the matches' events, nor
	// anything read from them (their strings, record JSON, the alerts'
	// fields, which are views of the record's bytes), once it returns:
	// what it keeps, it copies. Parallel then decodes later records into
	// the same events, and keeps a matched record in its batch's buffer
	// instead of giving its event a copy of its own (cloudtrail.Event.Own).
	ReuseEvents bool
}

// Batch defaults: small enough that the first matches come out promptly and
// that memory stays low, large enough that handing a batch over costs
// little next to evaluating it.
const (
	defaultBatchRecords = 256
	defaultBatchBytes   = 512 << 10
)

// NewParallel returns a Parallel that evaluates with ev and calls emit, in
// input order, for every record that matched or was malformed (err is
// then what Evaluate would have returned), and for every meta handed to
// Pass (with no matches and a nil err). The matches slice is valid only
// during the call (the matches' events stay valid). An error from emit
// stops the evaluation: Add, Pass and Close return it.
func NewParallel[T any](ev *Evaluator, opts ParallelOptions, emit func(meta T, matches []Match, err error) error) *Parallel[T] {
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.BatchRecords <= 0 {
		opts.BatchRecords = defaultBatchRecords
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = defaultBatchBytes
	}
	p := &Parallel[T]{ev: ev, emit: emit, workers: opts.Workers, reuse: opts.ReuseEvents}
	// Two batches a worker: one being evaluated, one waiting, so that a
	// worker never idles while the caller hands results over.
	p.window = 2 * opts.Workers
	for range p.window + 1 {
		b := &batch[T]{
			maxRecords: opts.BatchRecords, maxBytes: opts.BatchBytes,
			done: make(chan struct{}, 1),
		}
		b.onErr = b.ruleError
		b.moveIn = b.moveEvent
		p.free = append(p.free, b)
	}
	if p.workers > 1 {
		p.work = make(chan *batch[T], p.window)
		p.wg.Add(p.workers)
		for range p.workers {
			go func() {
				defer p.wg.Done()
				for b := range p.work {
					p.evaluate(b)
					b.done <- struct{}{}
				}
			}()
		}
	}
	return p
}

// Add queues one record; data is copied (or evaluated at once, with one
// worker), so the caller may reuse it. meta comes back with the record's
// result.
func (p *Parallel[T]) Add(data []byte, meta T) error {
	if p.err != nil {
		return p.err
	}
	b := p.batch()
	b.entries = append(b.entries, entry[T]{meta: meta, record: true, key: -1})
	b.size += len(data)
	if p.work == nil {
		// One worker: evaluate the record now, while it is in the cache,
		// instead of copying it into the batch to evaluate it later. What
		// the result keeps of it owns its memory (the matches' events,
		// the rule errors' copies).
		if p.event == nil {
			p.event = p.ev.pool.Get().(*cloudtrail.Event)
		}
		p.event = p.evaluateOne(b, &b.entries[len(b.entries)-1], data, p.event)
	} else {
		en := &b.entries[len(b.entries)-1]
		en.start, en.end = len(b.data), len(b.data)+len(data)
		b.data = append(b.data, data...)
	}
	if len(b.entries) >= b.maxRecords || b.size >= b.maxBytes {
		p.dispatch()
	}
	return p.err
}

// Pass queues meta to be handed to emit in its place among the records,
// without evaluating anything: for events of the input (a file that could
// not be read) whose report must keep its place in the output.
func (p *Parallel[T]) Pass(meta T) error {
	if p.err != nil {
		return p.err
	}
	b := p.batch()
	b.entries = append(b.entries, entry[T]{meta: meta})
	if len(b.entries) >= b.maxRecords {
		p.dispatch()
	}
	return p.err
}

// Close evaluates what is queued, hands back every result, stops the
// workers and returns the first error from emit. It must be called once
// the last record is added, also after an error.
func (p *Parallel[T]) Close() error {
	if p.closed {
		return p.err
	}
	if p.cur != nil && len(p.cur.entries) > 0 {
		p.dispatch()
	}
	for len(p.inflight) > 0 {
		p.collect()
	}
	p.closed = true
	if p.work != nil {
		close(p.work)
		p.wg.Wait()
	}
	if p.event != nil {
		p.ev.pool.Put(p.event)
		p.event = nil
	}
	return p.err
}

func (p *Parallel[T]) batch() *batch[T] {
	if p.cur == nil {
		p.cur = p.free[len(p.free)-1]
		p.free = p.free[:len(p.free)-1]
	}
	return p.cur
}

// dispatch hands the current batch to a worker (or evaluates it here with
// one worker), then hands back what is finished, waiting only while the
// window is full.
func (p *Parallel[T]) dispatch() {
	b := p.cur
	p.cur = nil
	if p.work == nil {
		// Evaluated already, record by record (Add).
		p.inflight = append(p.inflight, b)
		p.collect()
		return
	}
	p.inflight = append(p.inflight, b)
	p.work <- b
	for len(p.inflight) > 0 {
		select {
		case <-p.inflight[0].done:
			p.handBack()
			continue
		default:
		}
		break
	}
	for len(p.inflight) >= p.window {
		p.collect()
	}
}

// collect waits for the oldest batch in flight and hands it back.
func (p *Parallel[T]) collect() {
	if p.work != nil {
		<-p.inflight[0].done
	}
	p.handBack()
}

// handBack applies, in input order, what a sequential Evaluate does
// around decoding and matching (dedup, counters, rule errors) to the
// oldest batch, calls emit, and recycles the batch.
func (p *Parallel[T]) handBack() {
	b := p.inflight[0]
	p.inflight = p.inflight[1:]
	e := p.ev
	// The eventIDs of the whole batch go through the window at once (in
	// input order, as one by one): see idwindow.Window.AddKeys.
	if e.seen != nil {
		b.fresh = e.seen.AddKeys(b.keys, b.fresh[:0])
	}
	// The counters are added once a batch: an atomic add a record each
	// cost more than the rest of a duplicate's or a non-match's hand-back.
	var records, malformed, duplicates, alerts uint64
	defer func() {
		e.records.Add(records)
		e.malformed.Add(malformed)
		e.duplicates.Add(duplicates)
		e.alerts.Add(alerts)
	}()
	for i := range b.entries {
		if p.err != nil {
			break
		}
		en := &b.entries[i]
		if !en.record {
			p.err = p.emit(en.meta, nil, nil)
			continue
		}
		var err error
		matches := b.matches[en.matches[0]:en.matches[1]]
		switch {
		case en.headerErr != nil:
			malformed++
			err = en.headerErr
		case e.seen != nil && en.key >= 0 && !b.fresh[en.key]:
			duplicates++
			if len(matches) > 0 {
				e.pool.Put(matches[0].Event) // never handed out
			}
			continue
		case en.matchErr != nil:
			malformed++
			err = en.matchErr
		default:
			records++
			for _, re := range b.ruleErrs[en.errs[0]:en.errs[1]] {
				e.handleRuleError(re)
			}
			alerts += uint64(len(matches))
		}
		if err != nil || len(matches) > 0 {
			p.err = p.emit(en.meta, matches, err)
			if p.reuse && len(matches) > 0 && p.err == nil {
				e.pool.Put(matches[0].Event) // the record's matches share it
			}
		}
	}
	b.reset()
	p.free = append(p.free, b)
}

// evaluate decodes and matches every record of b, touching no counter:
// Evaluate's work between its bookkeeping, which handBack does in order.
func (p *Parallel[T]) evaluate(b *batch[T]) {
	ev := p.ev.pool.Get().(*cloudtrail.Event)
	for i := range b.entries {
		en := &b.entries[i]
		if en.record {
			ev = p.evaluateOne(b, en, b.data[en.start:en.end], ev)
		}
	}
	p.ev.pool.Put(ev)
}

// evaluateOne decodes raw into ev and matches it, for en, the last entry
// of b. It returns the event to decode the next record into: ev again,
// or a new one when the matches own ev.
func (p *Parallel[T]) evaluateOne(b *batch[T], en *entry[T], raw []byte, ev *cloudtrail.Event) *cloudtrail.Event {
	e := p.ev
	en.matches[0], en.errs[0] = len(b.matches), len(b.ruleErrs)
	complete, err := cloudtrail.DecodeHeader(ev, raw)
	if err != nil {
		en.headerErr = err
	} else {
		if ev.EventID != "" {
			en.key = len(b.keys)
			b.keys = append(b.keys, idwindow.Key(ev.EventID))
		}
		// Where a matched record's bytes stay while the matches are held:
		// without ReuseEvents, in a copy the event owns; with it, in the
		// batch's buffer until emit returned (nothing holds the event, or a
		// string read from it, after that), where several workers read it
		// already and one worker moves it from the caller's buffer.
		place := (*cloudtrail.Event).Own
		if p.reuse {
			place = nil
			if p.work == nil {
				place = b.moveIn
			}
		}
		b.matches, en.matchErr = e.match(ev, raw, complete, b.matches, b.onErr, false, place)
		if len(b.matches) > en.matches[0] {
			// The matches own ev now.
			ev = e.pool.Get().(*cloudtrail.Event)
		}
	}
	en.matches[1], en.errs[1] = len(b.matches), len(b.ruleErrs)
	return ev
}

// ruleError keeps a rule error for handBack to report. The event is
// reused for the next record, and the record's bytes may be the caller's:
// the report gets a copy that owns its memory (rule errors are rare).
func (b *batch[T]) ruleError(me rules.MatchError) {
	cp := new(cloudtrail.Event)
	*cp = *me.Event
	cp.Own()
	me.Event = cp
	b.ruleErrs = append(b.ruleErrs, me)
}

// moveEvent copies ev's record into b.data and moves ev's views there
// (cloudtrail.Event.MoveTo): one worker evaluates from the caller's
// buffer, which the caller reuses before the batch is handed back. When
// b.data grows, the records already in it stay where they are (the old
// array is only read, by their events, until the batch is handed back).
func (b *batch[T]) moveEvent(ev *cloudtrail.Event) {
	start := len(b.data)
	b.data = append(b.data, ev.Raw()...)
	ev.MoveTo(b.data[start:len(b.data):len(b.data)])
}

// batch is a run of records and their results.
type batch[T any] struct {
	entries  []entry[T]
	data     []byte                  // the records, back to back (several workers; one: the matched ones, ReuseEvents)
	size     int                     // the records' bytes
	onErr    func(rules.MatchError)  // ruleError
	moveIn   func(*cloudtrail.Event) // moveEvent
	matches  []Match
	ruleErrs []rules.MatchError
	keys     [][16]byte // the dedup keys of the records that have one, in order
	fresh    []bool     // whether each of keys was new to the window
	done     chan struct{}

	maxRecords, maxBytes int
}

type entry[T any] struct {
	meta       T
	start, end int  // the record in data (several workers)
	record     bool // false: a Pass
	headerErr  error
	matchErr   error
	key        int    // its eventID's dedup key in keys; -1: none
	matches    [2]int // the record's matches in matches
	errs       [2]int // its rule errors in ruleErrs
}

func (b *batch[T]) reset() {
	clear(b.entries) // drop the metas and errors for the collector
	b.entries = b.entries[:0]
	b.data = b.data[:0]
	b.size = 0
	clear(b.matches)
	b.matches = b.matches[:0]
	clear(b.ruleErrs)
	b.ruleErrs = b.ruleErrs[:0]
	b.keys = b.keys[:0]
	if cap(b.data) > 4*b.maxBytes {
		// One huge record: do not keep its buffer for good.
		b.data = nil
	}
}
