package search

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/trailwatch/trailwatch/engine/awslogs"
	"github.com/trailwatch/trailwatch/engine/files"
	"github.com/trailwatch/trailwatch/engine/s3files"
	"github.com/trailwatch/trailwatch/internal/ordered"
)

// Files reads records from paths (files, directories, "-" for stdin,
// s3://bucket/prefix and s3://bucket/key), as trailwatch replay does, and
// offers each to the search. Directories, S3 folders and log files in
// CloudTrail's layout whose names put them outside the time range are
// skipped unopened (in S3, unlisted). It returns ctx's error when
// cancelled; the matches found until then are kept.
//
// Options.Workers files are read and checked at once, each on its own
// goroutine; what they find is taken in input order on the caller's
// goroutine, so results, counters and callbacks are those of reading the
// files one after another. One file (or stdin) is read by one goroutine.
func (s *Searcher) Files(ctx context.Context, paths []string, stdin io.Reader) error {
	// What the listing finds (pruned names, what cannot be listed) goes
	// into the output in its place, before the next input. S3 listing
	// runs on a goroutine of its own, hence the lock.
	var (
		mu      sync.Mutex
		listing = &chunk{}
	)
	note := func(it item) {
		mu.Lock()
		listing.items = append(listing.items, it)
		mu.Unlock()
	}
	opts := files.Options{
		Stdin: stdin,
		SkipDir: func(p string) bool {
			if s.pruneDir(p) {
				note(item{kind: prunedDir, place: p})
				return true
			}
			return false
		},
		SkipFile: func(p string) bool {
			if s.pruneFile(p) {
				note(item{kind: prunedFile, place: p})
				return true
			}
			return false
		},
	}
	// flush adds what the listing found as a task of its own.
	flush := func(add func(ordered.Task[*chunk]) error) error {
		mu.Lock()
		c := listing
		if len(c.items) == 0 {
			mu.Unlock()
			return nil
		}
		listing = &chunk{}
		mu.Unlock()
		return add(func(_ context.Context, emit func(*chunk) error) error { return emit(c) })
	}
	s3opts := s3files.Options{Options: opts, Window: s.window(), Client: s.opts.S3, Stats: s.opts.S3Stats}
	return ordered.Run(ctx, ordered.Options{Workers: s.opts.Workers, Buffer: 2},
		func(ctx context.Context, add func(ordered.Task[*chunk]) error) error {
			err := s3files.Inputs(ctx, paths, s3opts, func(in files.Input) error {
				if err := flush(add); err != nil {
					// The run has stopped: release the input unread.
					_ = in.Read(ctx, func(files.Record) error { return err }, nil)
					return err
				}
				return add(s.readTask(in))
			}, func(b *files.BadInput) { note(item{kind: badInput, place: b.Place, err: b.Err}) })
			if ferr := flush(add); err == nil {
				err = ferr
			}
			return err
		},
		func(c *chunk) error { return s.take(ctx, c) })
}

// Bounds of a chunk: small enough that memory stays low with every worker
// ahead of the consumer, large enough that handing chunks over costs
// little next to reading them. Variables for the tests, which make them
// tiny to cut inputs into many chunks.
var (
	chunkItems   = 256
	chunkBytes   = 1 << 20
	chunkRecords = DefaultProgressEvery // so that progress keeps moving
)

// chunk is a run of what reading an input found, in order.
type chunk struct {
	file    string // the input, for Stats.Current (when records > 0)
	items   []item
	tail    int // records rejected after the last item
	records int // records read
	bytes   int // bytes of the matches' records
}

// item is one thing found: a record that was not simply rejected, or
// something about the input itself.
type item struct {
	kind    itemKind
	skipped int // records rejected just before it
	v       verdict
	place   string
	err     error // badInput
}

type itemKind uint8

const (
	recordItem itemKind = iota
	badInput            // a part of the input that cannot be read
	prunedDir
	prunedFile
)

// readTask reads in and checks its records on a worker, emitting chunks.
func (s *Searcher) readTask(in files.Input) ordered.Task[*chunk] {
	return func(ctx context.Context, emit func(*chunk) error) error {
		check := s.checker()
		c := &chunk{file: in.Name}
		var stopped error
		// A stream's chunk goes out with every record: what was read
		// before the input fell quiet (or Ctrl-C) is taken at once, as
		// the sequential reading took it.
		full := func() {
			if in.Stream || len(c.items) >= chunkItems || c.bytes >= chunkBytes || c.records >= chunkRecords {
				stopped = emit(c)
				c = &chunk{file: in.Name}
			}
		}
		err := in.Read(ctx, func(r files.Record) error {
			if stopped != nil {
				return stopped
			}
			c.records++
			v := check.check(r.Data, time.Time{})
			if v.kind == rejected {
				c.tail++
			} else {
				c.items = append(c.items, item{skipped: c.tail, v: v, place: r.Place()})
				c.tail = 0
				c.bytes += len(v.raw)
			}
			full()
			return stopped
		}, func(b *files.BadInput) {
			if stopped == nil {
				c.items = append(c.items, item{kind: badInput, skipped: c.tail, place: b.Place, err: b.Err})
				c.tail = 0
				full()
			}
		})
		if stopped == nil && (len(c.items) > 0 || c.tail > 0) {
			stopped = emit(c)
		}
		if err == nil {
			err = stopped
		}
		return err
	}
}

// take applies a chunk to the search, in input order. Once ctx has ended
// it stops where the sequential reading would have: before the next
// record (a Progress callback may end it).
func (s *Searcher) take(ctx context.Context, c *chunk) error {
	if c.records > 0 {
		s.stats.Current = c.file
	}
	for i := range c.items {
		it := &c.items[i]
		if !s.scanned(ctx, it.skipped) || ctx.Err() != nil {
			return ctx.Err()
		}
		switch it.kind {
		case recordItem:
			s.tally(&it.v, it.place)
		case badInput:
			s.bad(it.place, it.err)
		case prunedDir:
			s.stats.Pruned++
		case prunedFile:
			s.stats.Pruned++
			if s.opts.SkipFile != nil {
				s.opts.SkipFile(it.place)
			}
		}
	}
	if !s.scanned(ctx, c.tail) {
		return ctx.Err()
	}
	return nil
}

// window is the delivery-time window of the query's time range.
func (s *Searcher) window() awslogs.Window {
	return awslogs.ForRange(s.q.Start, s.q.End, s.opts.DeliveryMargin)
}

// pruneDir reports whether directory p is a date folder of CloudTrail's
// layout whose delivery days are all outside the range, or a digest
// folder while there is a range.
func (s *Searcher) pruneDir(p string) bool { return s.window().SkipDir(p) }

// pruneFile reports whether a CloudTrail log file's delivery time (in its
// name) puts all its events outside the range.
func (s *Searcher) pruneFile(p string) bool { return s.window().SkipFile(p) }
