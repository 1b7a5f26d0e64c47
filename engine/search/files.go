package search

import (
	"context"
	"io"
	"time"

	"github.com/trailwatch/trailwatch/engine/awslogs"
	"github.com/trailwatch/trailwatch/engine/files"
	"github.com/trailwatch/trailwatch/engine/s3files"
)

// Files reads records from paths (files, directories, "-" for stdin,
// s3://bucket/prefix and s3://bucket/key), as trailwatch replay does, and
// offers each to the search. Directories, S3 folders and log files in
// CloudTrail's layout whose names put them outside the time range are
// skipped unopened (in S3, unlisted). It returns ctx's error when
// cancelled; the matches found until then are kept.
func (s *Searcher) Files(ctx context.Context, paths []string, stdin io.Reader) error {
	opts := files.Options{
		Stdin: stdin,
		SkipDir: func(p string) bool {
			if s.pruneDir(p) {
				s.stats.Pruned++
				return true
			}
			return false
		},
		SkipFile: func(p string) bool {
			if s.pruneFile(p) {
				s.stats.Pruned++
				if s.opts.SkipFile != nil {
					s.opts.SkipFile(p)
				}
				return true
			}
			return false
		},
	}
	current := ""
	s3opts := s3files.Options{Options: opts, Window: s.window(), Client: s.opts.S3, Stats: s.opts.S3Stats}
	return s3files.Walk(ctx, paths, s3opts, func(r files.Record) error {
		if r.File != current {
			current = r.File
			s.stats.Current = current
		}
		s.Offer(r.Data, r.Place(), time.Time{})
		return nil
	}, func(b *files.BadInput) { s.bad(b.Place, b.Err) })
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
