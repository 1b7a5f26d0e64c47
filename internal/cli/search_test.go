package cli

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"

	"github.com/trailwatch/trailwatch/engine/cloudwatch"
	"github.com/trailwatch/trailwatch/internal/testservers"
)

func runCLI(t *testing.T, ctx context.Context, cmdline string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(ctx, strings.Fields(cmdline), Stdio{In: strings.NewReader(""), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

// eventIDs returns the EVENT ID column of a table, in order.
func eventIDs(table string) []string {
	var ids []string
	for i, line := range strings.Split(strings.TrimSpace(table), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) == 0 {
			continue
		}
		ids = append(ids, f[len(f)-1][:8])
	}
	return ids
}

// TestSearchSampleLookups runs the README's four lookups on the bundled
// sample data, from the repository root as the README shows them.
func TestSearchSampleLookups(t *testing.T) {
	t.Chdir("../..")
	tests := []struct {
		cmdline string
		wantIDs []string // first 8 characters, newest first
		want    []string // in stdout
		summary string   // in stderr
	}{
		{
			"search --access-key AKIAIOSFODNN7EXAMPLE examples/events/sample-trail.jsonl",
			[]string{"a72991b9", "43c71b9a", "fe3bfada", "2607679d"},
			[]string{"CreateUser", "AccessDenied", "DeleteKeyPair", "prod-bastion", "arn:aws:iam::111122223333:user/ci-bot"},
			"4 matching records; 48 records scanned, 1 duplicates dropped",
		},
		{
			"search --event-name ConsoleLogin examples/events/AWSLogs/",
			[]string{"72158370", "bb2d420f"},
			[]string{"arn:aws:iam::111122223333:root", "203.0.113.200", "Failure"},
			"2 matching records",
		},
		{
			"search --resource-type AWS::EC2::SecurityGroup examples/events/",
			[]string{"fe3bfada", "2607679d"},
			[]string{"AuthorizeSecurityGroupIngress", "CreateSecurityGroup", "sg-0badc0ffee1234567"},
			"2 matching records; 96 records scanned, 2 duplicates dropped",
		},
		{
			"search --user app-role --start 2024-05-01T08:04:00Z --end 2024-05-01T08:05:00Z examples/events/AWSLogs/",
			[]string{"6472f1a3", "a7abe1c2"},
			[]string{"AssumeRole", "arn:aws:sts::111122223333:assumed-role/app-role/i-0abc123"},
			"2 matching records",
		},
	}
	for _, tt := range tests {
		t.Run(tt.cmdline, func(t *testing.T) {
			code, out, errs := runCLI(t, context.Background(), tt.cmdline)
			if code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, errs)
			}
			if got := eventIDs(out); strings.Join(got, ",") != strings.Join(tt.wantIDs, ",") {
				t.Errorf("event ids %v, want %v; output:\n%s", got, tt.wantIDs, out)
			}
			for _, s := range tt.want {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			if !strings.Contains(errs, tt.summary) {
				t.Errorf("stderr lacks %q:\n%s", tt.summary, errs)
			}
		})
	}
}

func TestSearchCommandLine(t *testing.T) {
	t.Chdir("../..")
	tests := []struct {
		name     string
		cmdline  string
		wantCode int
		want     string // in stdout
		wantErr  string // in stderr
	}{
		{"no source", "search --event-name X", 2, "", "needs files"},
		{"bad read-only", "search --read-only yes x", 2, "", "--read-only must be true or false"},
		{"bad output", "search -o yaml x", 2, "", "--output must be"},
		{"bad where", "search --where eventNam==1 x", 2, "", "--where"},
		{"since and start", "search --since 1h --start 2024-05-01 x", 2, "", "cannot be combined"},
		{"empty range", "search --start 2024-05-02 --end 2024-05-01 x", 2, "", "empty"},
		{"missing file", "search --event-name X no/such/file", 1, "", "no/such/file"},
		{"where and read only", "search --where errorCode==\"AccessDenied\" --read-only false examples/events/sample-trail.jsonl", 0, "a72991b9", "1 matching records"},
		{"jsonl", "search --event-id 43c71b9a-bd87-4865-97b6-fb7ebfeaa155 -o jsonl examples/events/", 0, `"eventName":"DeleteKeyPair"`, "1 matching records"},
		{"json", "search --event-source rds -o json examples/events/sample-trail.jsonl", 0, `{"Records":[`, "1 matching records"},
		{"limit", "search --user alice -n 2 examples/events/sample-trail.jsonl", 0, "04c9d78d", "the newest 2 shown"},
		{"show", "search --event-name StopDBInstance --show examples/events/sample-trail.jsonl", 0, `"dBInstanceIdentifier": "orders-prod"`, "1 matching records"},
		{"since excludes 2024", "search --since 7d examples/events/AWSLogs", 0, "", "0 matching records; 0 records scanned"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCLI(t, context.Background(), tt.cmdline)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, errs)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("stdout lacks %q:\n%s", tt.want, out)
			}
			if !strings.Contains(errs, tt.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantErr, errs)
			}
		})
	}
}

func TestSearchInterrupted(t *testing.T) {
	t.Chdir("../..")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	code, out, errs := runCLI(t, ctx, "search examples/events/sample-trail.jsonl")
	if code != 130 {
		t.Fatalf("exit %d, want 130; stderr:\n%s", code, errs)
	}
	if !strings.HasPrefix(out, "TIME") || !strings.Contains(errs, "interrupted") {
		t.Errorf("want the (empty) table and an interrupted note; stdout:\n%s\nstderr:\n%s", out, errs)
	}
}

// TestSearchLogGroup searches a log group on moto, reached through
// AWS_ENDPOINT_URL as a real deployment would reach a VPC endpoint.
func TestSearchLogGroup(t *testing.T) {
	m := testservers.StartMoto(t)
	t.Setenv("AWS_ENDPOINT_URL", m.Endpoint)
	ctx := context.Background()
	c, err := cloudwatch.NewClient(ctx, cloudwatch.Config{Region: "us-east-1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateLogGroup(ctx, &cloudwatchlogs.CreateLogGroupInput{LogGroupName: aws.String("trail")}); err != nil {
		t.Fatal(err)
	}
	base := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	for s, users := range map[string][]string{"s1": {"alice", "bob"}, "s2": {"alice", "carol"}} {
		if _, err := c.CreateLogStream(ctx, &cloudwatchlogs.CreateLogStreamInput{LogGroupName: aws.String("trail"), LogStreamName: aws.String(s)}); err != nil {
			t.Fatal(err)
		}
		in := &cloudwatchlogs.PutLogEventsInput{LogGroupName: aws.String("trail"), LogStreamName: aws.String(s)}
		for i, u := range users {
			ts := base.Add(time.Duration(i) * time.Minute)
			if s == "s2" {
				ts = ts.Add(30 * time.Second)
			}
			msg := fmt.Sprintf(`{"eventVersion":"1.09","userIdentity":{"type":"IAMUser","userName":%q,"arn":"arn:aws:iam::111122223333:user/%s","accessKeyId":"AKIA%s"},"eventTime":%q,"eventSource":"iam.amazonaws.com","eventName":"CreateAccessKey","sourceIPAddress":"192.0.2.9","eventID":"%s-%s-%d","readOnly":false}`,
				u, u, strings.ToUpper(u), ts.Format(time.RFC3339), s, u, i)
			in.LogEvents = append(in.LogEvents, types.InputLogEvent{Timestamp: aws.Int64(ts.UnixMilli()), Message: aws.String(msg)})
		}
		if _, err := c.PutLogEvents(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errs := runCLI(t, ctx, "search --log-group trail --region us-east-1 --since 3h --user alice --event-name CreateAccessKey --read-only false -o jsonl")
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"eventID":"s2-alice-0"`) || !strings.Contains(lines[1], `"eventID":"s1-alice-0"`) {
		t.Errorf("want s2-alice-0 then s1-alice-0, got:\n%s", out)
	}

	// A runbook's command line names no source (trailwatch search --user
	// root --since 24h): the real program, on the service's host, searches
	// the log groups of the service's configuration.
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"config.yaml": "source:\n  cloudwatch:\n    log_groups: [trail]\n    region: us-east-1\nstate_dir: state\n"})
	code, out, errs = proc{Env: []string{"TRAILWATCH_CONFIG=" + filepath.Join(dir, "config.yaml")}}.run(t, "search", "--user", "alice", "--since", "3h")
	if code != 0 || !strings.Contains(out, "s2-alice-0") || !strings.Contains(out, "s1-alice-0") || strings.Contains(out, "bob") {
		t.Errorf("search with no source, $TRAILWATCH_CONFIG set: exit %d, want alice's two records\n%s%s", code, out, errs)
	}
}

// TestSearchWorkersSameOutput runs the same searches with one worker and
// with several: stdout and stderr (skipped inputs, failed --where, the
// summary line with its counts) must be byte for byte the same. The
// engine's TestFilesParallelIsSequential holds the parallel reading to
// the sequential one over many more inputs.
func TestSearchWorkersSameOutput(t *testing.T) {
	t.Chdir("../..")
	bad := t.TempDir()
	writeTree(t, bad, map[string]string{
		"a.jsonl":          `{"eventVersion":"1.09","eventTime":"2024-05-01T08:00:00Z","eventName":"CreateUser","eventID":"x-1","userIdentity":{"userName":"alice"}}` + "\nnot json\n",
		"b.json.gz":        "not gzip",
		"c/d.json":         `{"Records":[{"eventName":"CreateUser","eventTime":7},{"eventVersion":"1.09","eventTime":"2024-05-01T09:00:00Z","eventName":"DeleteUser","eventID":"x-2","userIdentity":{"userName":"bob"}}`,
		"c/e/f.jsonl":      "",
		"c/e/.hidden.json": "garbage",
	})
	sources := "examples/events/ examples/events/sample-trail.jsonl " + bad
	for _, cmdline := range []string{
		"search -o jsonl --limit 0 " + sources,
		"search --limit 5 " + sources,
		"search --show --user alice " + sources,
		`search -o json --start 2024-05-01T08:03 --end 2024-05-02 --read-only false ` + sources,
		"search --where int(userIdentity.userName)>0||eventName=='GetObject' -o jsonl " + sources,
	} {
		t.Run(cmdline, func(t *testing.T) {
			code, wantOut, wantErr := runCLI(t, context.Background(), cmdline+" --workers 1")
			if code != 0 || !strings.Contains(wantErr, "inputs skipped") {
				t.Fatalf("one worker: exit %d; stderr:\n%s", code, wantErr)
			}
			for _, workers := range []string{"2", "5", "0"} {
				code, out, errs := runCLI(t, context.Background(), cmdline+" --workers "+workers)
				if code != 0 || out != wantOut || errs != wantErr {
					t.Errorf("--workers %s: exit %d, output differs from --workers 1\nstdout:\n%s\nwant:\n%s\nstderr:\n%s\nwant:\n%s", workers, code, out, wantOut, errs, wantErr)
				}
			}
		})
	}
	if code, _, errs := runCLI(t, context.Background(), "search --workers -1 "+sources); code != 2 || !strings.Contains(errs, "--workers") {
		t.Errorf("--workers -1: exit %d, want 2 and a message naming --workers; stderr:\n%s", code, errs)
	}
}
