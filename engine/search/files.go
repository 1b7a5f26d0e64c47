package search

import (
	"context"
	"io"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/trailwatch/trailwatch/engine/files"
)

// clockSkew allows for an eventTime stamped slightly after the delivery
// time in a log file's name (the two clocks are different machines').
const clockSkew = 5 * time.Minute

// Files reads records from paths (files, directories, "-" for stdin),
// as trailwatch replay does, and offers each to the search. Directories and
// files in CloudTrail's S3 layout whose names put them outside the time
// range are skipped unopened. It returns ctx's error when cancelled; the
// matches found until then are kept.
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
	return files.Walk(ctx, paths, opts, func(r files.Record) error {
		if r.File != current {
			current = r.File
			s.stats.Current = current
		}
		s.Offer(r.Data, r.Place(), time.Time{})
		return nil
	}, func(b *files.BadInput) { s.bad(b.Place, b.Err) })
}

// overlaps reports whether files delivered in [from, to) can hold events
// of the query's range: a file delivered before Start (less the clock skew)
// holds only earlier events; one delivered more than the delivery margin
// after End holds only later ones.
func (s *Searcher) overlaps(from, to time.Time) bool {
	if !s.q.Start.IsZero() && !to.After(s.q.Start.Add(-clockSkew)) {
		return false
	}
	if !s.q.End.IsZero() && from.After(s.q.End.Add(s.opts.DeliveryMargin)) {
		return false
	}
	return true
}

// pruneDir reports whether directory p is a YYYY, MM or DD directory of
// the S3 layout (AWSLogs/.../CloudTrail/<region>/YYYY/MM/DD) whose
// delivery days are all outside the range.
func (s *Searcher) pruneDir(p string) bool {
	if s.q.Start.IsZero() && s.q.End.IsZero() {
		return false
	}
	if filepath.Base(p) == "CloudTrail-Digest" {
		// Digest files hold hashes, not events.
		return true
	}
	from, to, ok := dirPeriod(p)
	if !ok {
		return false
	}
	return !s.overlaps(from, to)
}

// dirPeriod returns the delivery period [from, to) that a date directory
// of the S3 layout covers.
func dirPeriod(p string) (from, to time.Time, ok bool) {
	parts := strings.Split(filepath.ToSlash(filepath.Clean(p)), "/")
	ct := -1
	for i := len(parts) - 1; i >= 0; i-- {
		if parts[i] == "CloudTrail" {
			ct = i
			break
		}
	}
	// CloudTrail/<region>/YYYY[/MM[/DD]]
	if ct < 0 || ct+2 >= len(parts) {
		return time.Time{}, time.Time{}, false
	}
	date := parts[ct+2:]
	if len(date) > 3 {
		return time.Time{}, time.Time{}, false
	}
	widths := []int{4, 2, 2}
	nums := make([]int, len(date))
	for i, d := range date {
		n, err := strconv.Atoi(d)
		if err != nil || len(d) != widths[i] {
			return time.Time{}, time.Time{}, false
		}
		nums[i] = n
	}
	switch len(nums) {
	case 1:
		from = time.Date(nums[0], 1, 1, 0, 0, 0, 0, time.UTC)
		to = from.AddDate(1, 0, 0)
	case 2:
		if nums[1] < 1 || nums[1] > 12 {
			return time.Time{}, time.Time{}, false
		}
		from = time.Date(nums[0], time.Month(nums[1]), 1, 0, 0, 0, 0, time.UTC)
		to = from.AddDate(0, 1, 0)
	case 3:
		if nums[1] < 1 || nums[1] > 12 || nums[2] < 1 || nums[2] > 31 {
			return time.Time{}, time.Time{}, false
		}
		from = time.Date(nums[0], time.Month(nums[1]), nums[2], 0, 0, 0, 0, time.UTC)
		to = from.AddDate(0, 0, 1)
	}
	return from, to, true
}

// s3FileName matches a CloudTrail log file name:
// <account>_CloudTrail_<region>_<YYYYMMDDTHHmmZ>_<unique>.json.gz.
var s3FileName = regexp.MustCompile(`^[0-9]{12}_CloudTrail_[a-z0-9-]+_([0-9]{8}T[0-9]{4}Z)_[A-Za-z0-9]+\.json(\.gz)?$`)

// pruneFile reports whether a CloudTrail log file's delivery time (in its
// name, to the minute) puts all its events outside the range.
func (s *Searcher) pruneFile(p string) bool {
	if s.q.Start.IsZero() && s.q.End.IsZero() {
		return false
	}
	t, ok := fileDelivery(filepath.Base(p))
	if !ok {
		return false
	}
	// The name is truncated to the minute: the file was delivered in
	// [t, t+1m).
	return !s.overlaps(t, t.Add(time.Minute))
}

// fileDelivery returns the delivery time in a CloudTrail log file name.
func fileDelivery(name string) (time.Time, bool) {
	m := s3FileName.FindStringSubmatch(name)
	if m == nil {
		return time.Time{}, false
	}
	t, err := time.Parse("20060102T1504Z", m[1])
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}
