package engine

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailwatch/trailwatch/notifiers"
)

// Rule ids of the dead man's switch's built-in alerts.
const (
	// QuietRuleID is the rule id of the alert raised when a log group has
	// delivered no records for the configured quiet_after.
	QuietRuleID = "trailwatch-log-group-quiet"
	// ResumedRuleID is the rule id of the alert raised when a log group
	// that was reported quiet delivers records again.
	ResumedRuleID = "trailwatch-log-group-resumed"
	// QuietSeverity is the severity of both built-in alerts: the same for
	// both, so that whoever a route sends "quiet" to also hears "resumed".
	QuietSeverity = "high"
)

// QuietWatch is the dead man's switch: it remembers when each log group
// last delivered records, says which groups have been quiet for longer than
// a limit, and which quiet groups have resumed. It is safe for concurrent
// use. Its state lives in memory: after a restart every group starts a new
// quiet period.
type QuietWatch struct {
	after  time.Duration
	now    func() time.Time
	mu     sync.Mutex
	groups map[string]*quietGroup
	names  []string
}

type quietGroup struct {
	last  time.Time // last records delivered (or the watch's start)
	quiet bool      // a quiet alert was raised and no records came since
}

// NewQuietWatch watches groups, raising their quiet alerts after they
// deliver nothing for after. now is the clock (nil: time.Now); each group's
// quiet period starts now.
func NewQuietWatch(after time.Duration, groups []string, now func() time.Time) *QuietWatch {
	if now == nil {
		now = time.Now
	}
	q := &QuietWatch{after: after, now: now, groups: map[string]*quietGroup{}}
	start := now()
	for _, g := range groups {
		if _, dup := q.groups[g]; dup {
			continue
		}
		q.groups[g] = &quietGroup{last: start}
		q.names = append(q.names, g)
	}
	sort.Strings(q.names)
	return q
}

// After returns the quiet limit.
func (q *QuietWatch) After() time.Duration { return q.after }

// Due returns a quiet alert for every group that has delivered nothing for
// the limit and is not already reported quiet. It changes nothing: call
// MarkQuiet once the alerts are safely stored.
func (q *QuietWatch) Due() []notifiers.Alert {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	var out []notifiers.Alert
	for _, name := range q.names {
		g := q.groups[name]
		if g.quiet || now.Sub(g.last) < q.after {
			continue
		}
		out = append(out, q.quietAlert(name, g.last, now))
	}
	return out
}

// MarkQuiet records that the quiet alerts for groups were raised, so that
// Due does not raise them again and the next records raise a resumed alert.
func (q *QuietWatch) MarkQuiet(groups ...string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, name := range groups {
		if g := q.groups[name]; g != nil {
			g.quiet = true
		}
	}
}

// Resumed returns the resumed alert for group if it is reported quiet, and
// false otherwise. It changes nothing: call Seen once the alert is stored.
func (q *QuietWatch) Resumed(group string) (notifiers.Alert, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	g := q.groups[group]
	if g == nil || !g.quiet {
		return notifiers.Alert{}, false
	}
	return q.resumedAlert(group, g.last, q.now()), true
}

// Seen records that group delivered records now, ending its quiet period.
func (q *QuietWatch) Seen(group string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	g := q.groups[group]
	if g == nil {
		return
	}
	g.last = q.now()
	g.quiet = false
}

// Quiet reports whether group is currently reported quiet.
func (q *QuietWatch) Quiet(group string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	g := q.groups[group]
	return g != nil && g.quiet
}

// NextCheck returns how long until the earliest group that is not yet
// reported quiet reaches the limit (at least a second, at most the limit).
func (q *QuietWatch) NextCheck() time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	next := q.after
	for _, g := range q.groups {
		if g.quiet {
			continue
		}
		next = min(next, g.last.Add(q.after).Sub(now))
	}
	return max(next, time.Second)
}

// quietDetails is the Event of the built-in alerts: facts, not a
// CloudTrail record.
type quietDetails struct {
	LogGroup   string    `json:"logGroup"`
	LastRecord time.Time `json:"lastRecordAt"`
	QuietAfter string    `json:"quietAfter"`
	Detected   time.Time `json:"detectedAt"`
}

func (q *QuietWatch) details(group string, last, now time.Time) json.RawMessage {
	b, _ := json.Marshal(quietDetails{LogGroup: group, LastRecord: last.UTC(), QuietAfter: q.after.String(), Detected: now.UTC()})
	return b
}

func (q *QuietWatch) quietAlert(group string, last, now time.Time) notifiers.Alert {
	return notifiers.Alert{
		RuleID:   QuietRuleID,
		Title:    "CloudTrail log group delivers no records",
		Severity: QuietSeverity,
		Summary: fmt.Sprintf("Log group %s has delivered no records for %s (since %s)",
			group, now.Sub(last).Round(time.Second), last.UTC().Format(time.RFC3339)),
		Description: "trailwatch has read no records from this log group for longer than quiet_after. " +
			"The trail may have been stopped or deleted, its delivery to CloudWatch Logs broken, " +
			"or trailwatch's access to the log group lost: until records resume, nothing in it is detected.",
		Runbook: "1. Check the trail: aws cloudtrail get-trail-status (IsLogging, LatestCloudWatchLogsDeliveryError).\n" +
			"2. Check the trail's CloudWatch Logs role and the log group's existence.\n" +
			"3. Look for StopLogging, DeleteTrail or UpdateTrail in the CloudTrail Event History.",
		Tags:      []string{"trailwatch", "dead-mans-switch"},
		DedupKey:  fmt.Sprintf("%s:%s:%d", QuietRuleID, group, last.UnixMilli()),
		EventTime: now.UTC(),
		EventName: "LogGroupQuiet",
		Count:     1,
		Event:     q.details(group, last, now),
	}
}

func (q *QuietWatch) resumedAlert(group string, last, now time.Time) notifiers.Alert {
	return notifiers.Alert{
		RuleID:   ResumedRuleID,
		Title:    "CloudTrail log group delivers records again",
		Severity: QuietSeverity,
		Summary: fmt.Sprintf("Log group %s delivers records again after %s without any",
			group, now.Sub(last).Round(time.Second)),
		Description: "The log group that was reported quiet delivers records again. " +
			"Events of the quiet period that CloudTrail delivers late are still read within the lookback.",
		Tags:      []string{"trailwatch", "dead-mans-switch"},
		DedupKey:  fmt.Sprintf("%s:%s:%d", ResumedRuleID, group, last.UnixMilli()),
		EventTime: now.UTC(),
		EventName: "LogGroupResumed",
		Count:     1,
		Event:     q.details(group, last, now),
	}
}

// quietCollector exports the watch's state at scrape time.
type quietCollector struct{ q *QuietWatch }

var (
	quietDesc      = prometheus.NewDesc("trailwatch_log_group_quiet", "1 while the log group is reported quiet by the dead man's switch (quiet_after), else 0.", []string{"log_group"}, nil)
	lastRecordDesc = prometheus.NewDesc("trailwatch_log_group_last_records_timestamp_seconds", "Unix time at which the log group last delivered records (or trailwatch started).", []string{"log_group"}, nil)
)

// Collector returns a Prometheus collector of the watch's per-group state.
func (q *QuietWatch) Collector() prometheus.Collector { return quietCollector{q} }

func (c quietCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- quietDesc
	ch <- lastRecordDesc
}

func (c quietCollector) Collect(ch chan<- prometheus.Metric) {
	c.q.mu.Lock()
	defer c.q.mu.Unlock()
	for _, name := range c.q.names {
		g := c.q.groups[name]
		v := 0.0
		if g.quiet {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(quietDesc, prometheus.GaugeValue, v, name)
		ch <- prometheus.MustNewConstMetric(lastRecordDesc, prometheus.GaugeValue, float64(g.last.UnixNano())/1e9, name)
	}
}
