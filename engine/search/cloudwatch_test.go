package search

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"

	"github.com/trailwatch/trailwatch/engine/cloudwatch"
	"github.com/trailwatch/trailwatch/internal/testservers"
)

// motoLogGroup starts moto, points the SDK at it through AWS_ENDPOINT_URL
// and writes records to two streams of a new log group.
func motoLogGroup(t *testing.T, group string, streams map[string][]logEvent) *cloudwatchlogs.Client {
	t.Helper()
	m := testservers.StartMoto(t)
	t.Setenv("AWS_ENDPOINT_URL", m.Endpoint)
	ctx := context.Background()
	c, err := cloudwatch.NewClient(ctx, cloudwatch.Config{Region: "us-east-1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateLogGroup(ctx, &cloudwatchlogs.CreateLogGroupInput{LogGroupName: aws.String(group)}); err != nil {
		t.Fatalf("create log group: %v", err)
	}
	for stream, evs := range streams {
		if _, err := c.CreateLogStream(ctx, &cloudwatchlogs.CreateLogStreamInput{LogGroupName: aws.String(group), LogStreamName: aws.String(stream)}); err != nil {
			t.Fatalf("create log stream: %v", err)
		}
		sort.Slice(evs, func(i, j int) bool { return evs[i].ts.Before(evs[j].ts) })
		in := &cloudwatchlogs.PutLogEventsInput{LogGroupName: aws.String(group), LogStreamName: aws.String(stream)}
		for _, e := range evs {
			in.LogEvents = append(in.LogEvents, types.InputLogEvent{Timestamp: aws.Int64(e.ts.UnixMilli()), Message: aws.String(e.msg)})
		}
		if _, err := c.PutLogEvents(ctx, in); err != nil {
			t.Fatalf("put log events: %v", err)
		}
	}
	return c
}

type logEvent struct {
	ts  time.Time
	msg string
}

func ev(id, name, user string, ts time.Time) logEvent {
	return logEvent{ts: ts, msg: record(id, name, user, ts)}
}

func TestLogGroupsMoto(t *testing.T) {
	base := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	at := func(m int) time.Time { return base.Add(time.Duration(m) * time.Minute) }
	c := motoLogGroup(t, "trail", map[string][]logEvent{
		"111122223333_CloudTrail_us-east-1": {
			ev("a", "CreateUser", "alice", at(0)),
			ev("b", "DeleteUser", "alice", at(10)),
			ev("c", "CreateUser", "bob", at(20)),
			{ts: at(25), msg: "not json at all"},
		},
		"111122223333_CloudTrail_us-east-1_2": {
			ev("d", "CreateUser", "alice", at(30)),
			ev("a", "CreateUser", "alice", at(0)), // a second delivery
		},
	})
	tests := []struct {
		name string
		q    Query
		want string
	}{
		{"everything, newest first across streams", Query{}, "d,c,b,a"},
		{"event name and user", Query{EventName: "CreateUser", User: "alice"}, "d,a"},
		{"access key", Query{AccessKey: "AKIABOB"}, "c"},
		{"time range", Query{Start: at(5), End: at(30)}, "c,b"},
		{"where", Query{Where: mustWhere(t, `eventName startsWith "Delete"`)}, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(tt.q, Options{})
			if err := s.LogGroups(context.Background(), c, []string{"trail"}); err != nil {
				t.Fatal(err)
			}
			if got := ids(s.Results()); got != tt.want {
				t.Errorf("got %s, want %s (pattern %s)", got, tt.want, tt.q.FilterPattern())
			}
		})
	}
	t.Run("missing log group", func(t *testing.T) {
		s := New(Query{}, Options{})
		if err := s.LogGroups(context.Background(), c, []string{"nope"}); err == nil {
			t.Fatal("got no error for a missing log group")
		}
	})
}

func TestFilterInput(t *testing.T) {
	start := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	s := New(Query{EventName: "ConsoleLogin", Start: start, End: start.Add(time.Hour)}, Options{})
	q := s.Query()
	in := s.FilterInput("arn:aws:logs:us-east-1:111122223333:log-group:trail:*", q.FilterPattern())
	if got := aws.ToString(in.LogGroupIdentifier); got != "arn:aws:logs:us-east-1:111122223333:log-group:trail" {
		t.Errorf("identifier %q", got)
	}
	if in.LogGroupName != nil {
		t.Errorf("name set with an identifier")
	}
	if got, want := aws.ToInt64(in.StartTime), start.UnixMilli(); got != want {
		t.Errorf("start %d, want %d", got, want)
	}
	if got, want := aws.ToInt64(in.EndTime), start.Add(time.Hour).UnixMilli()-1; got != want {
		t.Errorf("end %d, want %d", got, want)
	}
	if got := aws.ToString(in.FilterPattern); got != `{ $.eventName = "ConsoleLogin" }` {
		t.Errorf("pattern %s", got)
	}
}
