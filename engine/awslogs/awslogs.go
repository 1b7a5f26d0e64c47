// Package awslogs knows the layout in which CloudTrail writes its log
// files to S3, and in which a local copy of a bucket keeps them:
//
//	[prefix/]AWSLogs/[o-orgid/]<account>/CloudTrail/<region>/YYYY/MM/DD/
//	    <account>_CloudTrail_<region>_<YYYYMMDDTHHmmZ>_<unique>.json.gz
//
// Beside CloudTrail/ an account's folder may hold CloudTrail-Digest/
// (digest files: hashes of the log files, no events) and
// CloudTrail-Insight/ (CloudTrail Insights events), and a bucket may hold
// other services' logs under AWSLogs/<account>/ (Config, ELB, ...).
//
// The date folders and the time in a log file's name are delivery times,
// not event times: a file holds events from before its delivery, usually
// by about five minutes, with no guarantee. A Window says which delivery
// times can hold the events of a time range, so that a reader opens (or,
// in S3, lists) only the folders and files that can hold them. The same
// rules serve local trees (engine/files, engine/search) and S3
// (engine/s3files, engine/s3sqs), so both prune alike.
package awslogs

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Kind says what an object of a CloudTrail bucket holds.
type Kind int

const (
	// Other is anything that is not CloudTrail's: another service's
	// logs, a folder marker, a file outside an AWSLogs/ tree.
	Other Kind = iota
	// Log is a CloudTrail log file: AWSLogs/.../CloudTrail/<region>/...
	// with a .json or .json.gz name.
	Log
	// Digest is under CloudTrail-Digest/: hashes, no events.
	Digest
	// Insight is under CloudTrail-Insight/: CloudTrail Insights events.
	Insight
)

// String names the kind for logs and metrics labels.
func (k Kind) String() string {
	switch k {
	case Log:
		return "log"
	case Digest:
		return "digest"
	case Insight:
		return "insight"
	}
	return "other"
}

// Folder names under an account's folder.
const (
	LogFolder     = "CloudTrail"
	DigestFolder  = "CloudTrail-Digest"
	InsightFolder = "CloudTrail-Insight"
)

// Classify says what the object at key (a key in a bucket, or a slash- or
// OS-separated path) holds. A key is a Log when, after an AWSLogs
// segment, a CloudTrail segment is followed by at least the region, and
// its name ends with .json or .json.gz; under CloudTrail-Digest or
// CloudTrail-Insight it is a Digest or an Insight whatever its name.
func Classify(key string) Kind {
	segs := strings.Split(filepath.ToSlash(key), "/")
	aws := -1
	for i, s := range segs {
		if s == "AWSLogs" {
			aws = i
		}
	}
	if aws < 0 {
		return Other
	}
	// The folder comes after the account (and the organization id of an
	// organization trail), so at least two segments after AWSLogs.
	for i := aws + 2; i < len(segs)-1; i++ {
		switch segs[i] {
		case DigestFolder:
			return Digest
		case InsightFolder:
			return Insight
		case LogFolder:
			name := strings.ToLower(segs[len(segs)-1])
			if len(segs)-i >= 3 && (strings.HasSuffix(name, ".json.gz") || strings.HasSuffix(name, ".json")) {
				return Log
			}
			return Other
		}
	}
	return Other
}

// Window is the span of delivery times whose log files can hold the
// events of a time range: files delivered from From to To (either zero
// for an open end). The zero Window holds everything.
type Window struct {
	From, To time.Time
}

// ClockSkew allows for an eventTime stamped slightly after the delivery
// time in a log file's name (the two clocks are different machines').
const ClockSkew = 5 * time.Minute

// ForRange returns the window of the event-time range [start, end) (either
// zero for an open end): a file delivered before start (less ClockSkew)
// holds only earlier events; one delivered more than margin after end
// holds only later ones.
func ForRange(start, end time.Time, margin time.Duration) Window {
	var w Window
	if !start.IsZero() {
		w.From = start.Add(-ClockSkew)
	}
	if !end.IsZero() {
		w.To = end.Add(margin)
	}
	return w
}

// Open reports whether the window holds every delivery time.
func (w Window) Open() bool { return w.From.IsZero() && w.To.IsZero() }

// Overlaps reports whether files delivered in [from, to) can hold events
// of the window's range.
func (w Window) Overlaps(from, to time.Time) bool {
	if !w.From.IsZero() && !to.After(w.From) {
		return false
	}
	if !w.To.IsZero() && from.After(w.To) {
		return false
	}
	return true
}

// SkipDir reports, while the window is not open, whether directory (or
// key prefix) p is a YYYY, MM or DD folder of the layout whose delivery
// days are all outside the window, or a folder of an account's that holds
// no CloudTrail events (CloudTrail-Digest, other services' logs). It is
// the one pruning rule for local trees and S3 prefixes.
func (w Window) SkipDir(p string) bool {
	if w.Open() {
		return false
	}
	if name, ok := serviceFolder(p); ok && name != LogFolder && name != InsightFolder {
		return true
	}
	from, to, ok := DirPeriod(p)
	return ok && !w.Overlaps(from, to)
}

// accountID matches an AWS account id, and orgID an organization's. The
// patterns compile on first use, not in every command's start-up.
var (
	accountID = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9]{12}$`) })
	orgID     = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^o-[a-z0-9]{10,32}$`) })
)

// serviceFolder returns the name of p's last segment when p is the folder
// of one service's logs in an account's folder:
// AWSLogs/[o-orgid/]<account>/<name>.
func serviceFolder(p string) (string, bool) {
	parts := strings.Split(strings.Trim(filepath.ToSlash(filepath.Clean(p)), "/"), "/")
	n := len(parts)
	if n < 3 || !accountID().MatchString(parts[n-2]) {
		return "", false
	}
	switch {
	case parts[n-3] == "AWSLogs":
	case n >= 4 && orgID().MatchString(parts[n-3]) && parts[n-4] == "AWSLogs":
	default:
		return "", false
	}
	return parts[n-1], true
}

// SkipFile reports whether a CloudTrail log file's delivery time (in its
// name, to the minute) puts all its events outside the window.
func (w Window) SkipFile(p string) bool {
	if w.Open() {
		return false
	}
	t, ok := FileDelivery(filepath.Base(p))
	// The name is truncated to the minute: the file was delivered in
	// [t, t+1m).
	return ok && !w.Overlaps(t, t.Add(time.Minute))
}

// Days returns the first instant of every UTC day that overlaps the
// window, in order, when the window is closed at both ends and spans at
// most max days; ok is false otherwise.
func (w Window) Days(max int) (days []time.Time, ok bool) {
	if w.From.IsZero() || w.To.IsZero() || w.To.Before(w.From) {
		return nil, false
	}
	first := time.Date(w.From.Year(), w.From.Month(), w.From.Day(), 0, 0, 0, 0, time.UTC)
	for d := first; !d.After(w.To); d = d.AddDate(0, 0, 1) {
		if len(days) == max {
			return nil, false
		}
		if w.Overlaps(d, d.AddDate(0, 0, 1)) {
			days = append(days, d)
		}
	}
	return days, true
}

// DayFolder returns the YYYY/MM/DD folder of day, as the layout names it.
func DayFolder(day time.Time) string { return day.UTC().Format("2006/01/02") }

// Place says where a path sits in the layout's CloudTrail/ (or
// CloudTrail-Insight/) tree.
type Place struct {
	// Depth counts the folders after CloudTrail: 0 for CloudTrail itself,
	// 1 for a region, 2 for a year, 3 for a month, 4 for a day; -1 when
	// the path is not inside a CloudTrail/ folder.
	Depth int
	// From and To bound the delivery period of a date folder (Depth 2 to
	// 4); they are zero otherwise.
	From, To time.Time
}

// Locate says where directory (or key prefix) p sits in the layout's
// CloudTrail/ or CloudTrail-Insight/ tree.
func Locate(p string) Place {
	parts, ct := logFolderParts(p)
	if ct < 0 {
		return Place{Depth: -1}
	}
	depth := len(parts) - 1 - ct
	if depth <= 1 {
		return Place{Depth: depth}
	}
	from, to, ok := DirPeriod(p)
	if !ok {
		return Place{Depth: -1}
	}
	return Place{Depth: depth, From: from, To: to}
}

// DirPeriod returns the delivery period [from, to) that a date folder of
// the layout (CloudTrail/<region>/YYYY[/MM[/DD]], or the same under
// CloudTrail-Insight) covers.
func DirPeriod(p string) (from, to time.Time, ok bool) {
	parts, ct := logFolderParts(p)
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

// logFolderParts splits p into its segments and returns the index of the
// last CloudTrail (or CloudTrail-Insight) segment, or -1: both folders
// hold <region>/YYYY/MM/DD/ trees of events.
func logFolderParts(p string) (parts []string, ct int) {
	parts = strings.Split(strings.Trim(filepath.ToSlash(filepath.Clean(p)), "/"), "/")
	for i := len(parts) - 1; i >= 0; i-- {
		if parts[i] == LogFolder || parts[i] == InsightFolder {
			return parts, i
		}
	}
	return parts, -1
}

// logFileName matches a CloudTrail log file name,
// <account>_CloudTrail_<region>_<YYYYMMDDTHHmmZ>_<unique>.json.gz, or an
// Insights file's, with CloudTrail-Insight in place of CloudTrail.
var logFileName = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[0-9]{12}_CloudTrail(?:-Insight)?_[a-z0-9-]+_([0-9]{8}T[0-9]{4}Z)_[A-Za-z0-9]+\.json(\.gz)?$`)
})

// FileDelivery returns the delivery time in a CloudTrail log file name.
func FileDelivery(name string) (time.Time, bool) {
	m := logFileName().FindStringSubmatch(name)
	if m == nil {
		return time.Time{}, false
	}
	t, err := time.Parse("20060102T1504Z", m[1])
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}
