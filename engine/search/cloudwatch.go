package search

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
)

// FilterAPI is the part of *cloudwatchlogs.Client a log group search uses.
type FilterAPI = cloudwatchlogs.FilterLogEventsAPIClient

// LogGroups reads every log group (by name or ARN) with FilterLogEvents
// over the query's time range, handing the service the query's filter
// pattern so that only candidate records travel, and offers each record
// to the search, which checks it again. It returns ctx's error when
// cancelled; the matches found until then are kept.
func (s *Searcher) LogGroups(ctx context.Context, api FilterAPI, groups []string) error {
	pat := s.q.FilterPattern()
	for _, g := range groups {
		if err := s.logGroup(ctx, api, g, pat); err != nil {
			return err
		}
	}
	return nil
}

// FilterInput returns the first FilterLogEvents request for log group g.
func (s *Searcher) FilterInput(g, pattern string) *cloudwatchlogs.FilterLogEventsInput {
	in := &cloudwatchlogs.FilterLogEventsInput{}
	if strings.HasPrefix(g, "arn:") {
		in.LogGroupIdentifier = aws.String(strings.TrimSuffix(g, ":*"))
	} else {
		in.LogGroupName = aws.String(g)
	}
	if pattern != "" {
		in.FilterPattern = aws.String(pattern)
	}
	// A CloudTrail log event's timestamp is the record's eventTime;
	// endTime is inclusive, so End (exclusive) less a millisecond.
	if !s.q.Start.IsZero() {
		in.StartTime = aws.Int64(s.q.Start.UnixMilli())
	}
	if !s.q.End.IsZero() {
		in.EndTime = aws.Int64(s.q.End.Add(-time.Millisecond).UnixMilli())
	}
	return in
}

func (s *Searcher) logGroup(ctx context.Context, api FilterAPI, g, pattern string) error {
	s.stats.Current = g
	p := cloudwatchlogs.NewFilterLogEventsPaginator(api, s.FilterInput(g, pattern))
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("search log group %q: filter log events: %w", g, err)
		}
		for _, e := range out.Events {
			var ts time.Time
			if e.Timestamp != nil {
				ts = time.UnixMilli(*e.Timestamp)
			}
			place := g + " " + aws.ToString(e.LogStreamName) + " " + aws.ToString(e.EventId)
			s.Offer([]byte(aws.ToString(e.Message)), place, ts)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}
