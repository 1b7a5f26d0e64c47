package cli

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/trailwatch/trailwatch/engine/cloudwatch"
	"github.com/trailwatch/trailwatch/engine/s3files"
	"github.com/trailwatch/trailwatch/engine/search"
	"github.com/trailwatch/trailwatch/internal/config"
	"github.com/trailwatch/trailwatch/rules"
)

// searchFlags are the values of trailwatch search's flags.
type searchFlags struct {
	q                 search.Query
	readOnly, where   string
	since, start, end string
	cfgPath, region   string
	logGroups         []string
	output            string
	show, quiet       bool
	limit             int
	workers           int
	deliveryMargin    time.Duration
	now               func() time.Time
	progressInterval  time.Duration
}

func newSearchCmd(stdio Stdio) *cobra.Command {
	f := &searchFlags{now: time.Now, progressInterval: 250 * time.Millisecond}
	cmd := &cobra.Command{
		Use:   "search [flags] [FILE|DIR|- ...]",
		Short: "Find CloudTrail records by Event History's lookup attributes, in log groups or files",
		Long: `search finds CloudTrail records the way CloudTrail's Event History does — by access
key, event name, event source, event id, user, resource type, resource name and
read-only — and also by any condition in the rule expression language (--where).
All the constraints given must hold.

Sources: the files and directories given as arguments (JSON Lines, CloudTrail's S3
log files, AWSLogs/ trees, "-" for stdin), the same in S3 (s3://bucket/prefix/,
s3://bucket/key), and the CloudWatch Logs log groups of
--log-group or of the configuration's source.cloudwatch (--config). For log groups
the constraints become a CloudWatch filter pattern, so only candidate records are
sent; every record is checked again here. In an AWSLogs/ tree, day directories and
log files whose delivery times (from their names) cannot hold events of the time
range are skipped unopened; a file is read if it was delivered up to
--delivery-margin after --end. In S3 those folders are not even listed: under
each CloudTrail/<region>/ prefix only the day prefixes the range needs are listed.

Given no source at all, search reads the log groups of the service's configuration:
$TRAILWATCH_CONFIG, else /etc/trailwatch/config.yaml when it exists.

--user matches userIdentity.userName, the principal or session issuer ARN, the
principal id, or the last part of the principal ARN (a role session name, "root").
--principal matches a principal ARN exactly: userIdentity.arn, or the role an
assumed-role session came from. --source-ip matches sourceIPAddress: an address, a
CIDR block (203.0.113.0/24), or a service host name (ec2.amazonaws.com).
--resource-type matches resources[].type, and for records without one a documented
mapping from eventSource and eventName (AWS::EC2::SecurityGroup for
AuthorizeSecurityGroupIngress, ...); --resource-name matches a resource ARN, the last
part of it, or the name of a mapped resource (a security group id, a bucket name).

Results are newest first, like Event History, and deduplicated by eventID; --limit
keeps the newest N (0: all). The table fits the terminal; --show prints each record's
details instead; --output json prints {"Records":[...]} and jsonl one record a line,
both readable by replay and search. Without a time range everything is searched.

Files are read --workers at a time (default: one per core), each by one goroutine;
the output is the same for any number of workers.

Interrupted (Ctrl-C), search prints what it found so far and exits 130. It exits 0
when the search completes, whether or not anything matched; 1 on an error; 2 on
wrong usage.`,
		Example: `  trailwatch search --access-key AKIAIOSFODNN7EXAMPLE examples/events/sample-trail.jsonl
  trailwatch search --event-name ConsoleLogin examples/events/AWSLogs/
  trailwatch search --resource-type AWS::EC2::SecurityGroup examples/events/AWSLogs/
  trailwatch search --event-name ConsoleLogin --since 24h s3://org-trail-bucket/AWSLogs/
  trailwatch search --user ci-bot --show examples/events/sample-trail.jsonl
  trailwatch search --source-ip 203.0.113.0/24 --since 7d examples/events/AWSLogs/
  trailwatch search --principal arn:aws:iam::111122223333:role/Deploy --since 24h
  trailwatch search --config config.yaml --since 24h --event-source iam --read-only false
  trailwatch search --log-group aws-cloudtrail-logs --region eu-west-1 --start 2024-05-01 --end 2024-05-02 \
      --where 'sourceIPAddress not startsWith "10."' --output jsonl`,
		PreRunE: func(*cobra.Command, []string) error {
			switch f.output {
			case search.FormatTable, search.FormatJSON, search.FormatJSONL:
			default:
				return usageError{fmt.Errorf("--output must be table, json or jsonl, not %q", f.output)}
			}
			if _, err := f.buildQuery(); err != nil {
				return usageError{err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSearch(cmd, stdio, f, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.q.AccessKey, "access-key", "", "userIdentity.accessKeyId")
	fl.StringVar(&f.q.EventName, "event-name", "", "eventName, exactly (ConsoleLogin)")
	fl.StringVar(&f.q.EventSource, "event-source", "", `eventSource ("iam.amazonaws.com", or "iam")`)
	fl.StringVar(&f.q.EventID, "event-id", "", "eventID")
	fl.StringVar(&f.q.User, "user", "", "user name, principal or session issuer ARN, principal id or role session name")
	fl.StringVar(&f.q.Principal, "principal", "", "principal ARN (userIdentity.arn, or the role an assumed-role session came from) or principal id")
	fl.StringVar(&f.q.SourceIP, "source-ip", "", "sourceIPAddress: an address, a CIDR block (203.0.113.0/24) or a service host name")
	fl.StringVar(&f.q.ResourceType, "resource-type", "", "resource type (AWS::EC2::Instance)")
	fl.StringVar(&f.q.ResourceName, "resource-name", "", "resource ARN or name (sg-0123..., a bucket name)")
	fl.StringVar(&f.readOnly, "read-only", "", "true or false")
	fl.StringVar(&f.where, "where", "", `condition in the rule expression language ('errorCode == "AccessDenied"')`)
	fl.StringVar(&f.since, "since", "", "search the last DURATION (90m, 24h, 7d)")
	fl.StringVar(&f.start, "start", "", "earliest eventTime: RFC 3339, 2006-01-02T15:04 or 2006-01-02 (UTC)")
	fl.StringVar(&f.end, "end", "", "eventTime before this: RFC 3339, 2006-01-02T15:04 or 2006-01-02 (UTC)")
	fl.StringVarP(&f.cfgPath, "config", "c", "", "search the log groups of this configuration's source.cloudwatch")
	fl.StringArrayVar(&f.logGroups, "log-group", nil, "CloudWatch Logs log group name or ARN (repeatable)")
	fl.StringVar(&f.region, "region", "", "AWS region of the log groups (default: the config's, then the SDK's chain)")
	fl.StringVarP(&f.output, "output", "o", "table", "table, json ({\"Records\":[...]}) or jsonl")
	fl.BoolVar(&f.show, "show", false, "print each record's details (ids, region, access key, request and response, user agent)")
	fl.IntVarP(&f.limit, "limit", "n", 100, "keep the newest N matches (0: all)")
	fl.DurationVar(&f.deliveryMargin, "delivery-margin", search.DefaultDeliveryMargin, "how late after --end CloudTrail may deliver an S3 log file holding in-range events")
	fl.IntVar(&f.workers, "workers", 0, "files read and checked at once (0: one per core); the output is the same for any number")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "do not list each skipped input (the count is still printed)")
	return cmd
}

// parseWhen parses --start and --end: RFC 3339, or a UTC date with or
// without a time of day.
func parseWhen(flag, s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("--%s %q: want RFC 3339 (2024-05-01T08:00:00Z), 2024-05-01T08:00 or 2024-05-01", flag, s)
}

// parseSince parses a duration, allowing a whole number of days ("7d").
func parseSince(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n > 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--since %q: want a positive duration such as 90m, 24h or 7d", s)
	}
	return d, nil
}

// buildQuery completes the query from the flags that need parsing.
func (f *searchFlags) buildQuery() (search.Query, error) {
	q := f.q
	switch f.readOnly {
	case "":
	case "true", "false":
		b := f.readOnly == "true"
		q.ReadOnly = &b
	default:
		return q, fmt.Errorf("--read-only must be true or false, not %q", f.readOnly)
	}
	if f.where != "" {
		c, err := rules.CompileCondition(f.where)
		if err != nil {
			return q, fmt.Errorf("--where: %w", err)
		}
		q.Where = c
	}
	if f.since != "" && f.start != "" {
		return q, errors.New("--since and --start cannot be combined")
	}
	var err error
	if f.since != "" {
		d, err := parseSince(f.since)
		if err != nil {
			return q, err
		}
		q.Start = f.now().UTC().Add(-d)
	}
	if f.start != "" {
		if q.Start, err = parseWhen("start", f.start); err != nil {
			return q, err
		}
	}
	if f.end != "" {
		if q.End, err = parseWhen("end", f.end); err != nil {
			return q, err
		}
	}
	if !q.Start.IsZero() && !q.End.IsZero() && !q.Start.Before(q.End) {
		return q, fmt.Errorf("the time range is empty: start %s is not before end %s", q.Start.Format(time.RFC3339), q.End.Format(time.RFC3339))
	}
	if f.limit < 0 {
		return q, fmt.Errorf("--limit must be 0 or more, not %d", f.limit)
	}
	if err := checkWorkers(f.workers); err != nil {
		return q, err
	}
	if strings.Contains(q.SourceIP, "/") {
		// Not an address or a host name: a CIDR block, or a mistake that
		// would match nothing.
		if _, err := netip.ParsePrefix(q.SourceIP); err != nil {
			return q, fmt.Errorf("--source-ip %q is not a CIDR block such as 203.0.113.0/24 or 2001:db8::/32", q.SourceIP)
		}
	}
	return q, nil
}

func runSearch(cmd *cobra.Command, stdio Stdio, f *searchFlags, args []string) error {
	ctx := cmd.Context()
	switch f.output {
	case search.FormatTable, search.FormatJSON, search.FormatJSONL:
	default:
		return usageError{fmt.Errorf("--output must be table, json or jsonl, not %q", f.output)}
	}
	q, err := f.buildQuery()
	if err != nil {
		return usageError{err}
	}
	if len(args) == 0 && len(f.logGroups) == 0 && f.cfgPath == "" {
		// No source given: the service's own log groups, as runbooks
		// assume (trailwatch search --user root --since 24h).
		f.cfgPath = defaultConfig()
	}
	groups := f.logGroups
	region := f.region
	if f.cfgPath != "" {
		cfg, err := loadConfig(stdio, f.cfgPath)
		if err != nil {
			return err
		}
		cw := config.SourceAs[cloudwatch.Config](cfg.Source)
		if cw == nil {
			has := "no source"
			if cfg.Source.Type != "" {
				has = "source." + cfg.Source.Type
			}
			return exitCode(1, fmt.Sprintf("%s: search --config reads the log groups of source.cloudwatch, and this configuration has %s: "+
				"give --log-group NAME (the log group CloudTrail delivers to), or the files, directories or s3://BUCKET/AWSLogs/ to read", cfg.File, has))
		}
		groups = append(groups, cw.LogGroups...)
		if region == "" {
			region = cw.Region
		}
	}
	if len(args) == 0 && len(groups) == 0 {
		return usageError{errors.New("search needs files or directories to read, --log-group NAME or --config FILE (or $TRAILWATCH_CONFIG, or /etc/trailwatch/config.yaml)")}
	}

	progress := newProgress(stdio.Err, f.now, f.progressInterval)
	var s3stats s3files.Stats
	opts := search.Options{
		S3Stats:        &s3stats,
		Limit:          f.limit,
		Workers:        f.workers,
		DeliveryMargin: f.deliveryMargin,
		OnBadInput: func(place string, err error) {
			if !f.quiet {
				progress.clear()
				fmt.Fprintf(stdio.Err, "trailwatch: skipped %s: %s\n", terminalSafe(place), terminalSafe(err.Error()))
			}
		},
		OnWhereError: func(place string, err error) {
			if !f.quiet {
				progress.clear()
				fmt.Fprintf(stdio.Err, "trailwatch: --where failed on %s: %s\n", terminalSafe(place), terminalSafe(err.Error()))
			}
		},
	}
	if progress != nil {
		opts.Progress = func(st search.Stats) {
			progress.show(fmt.Sprintf("scanned %d records (%s), %d matching: %s", st.Scanned, progress.rate(st.Scanned), st.Matched, terminalSafe(st.Current)))
		}
	}
	s := search.New(q, opts)

	if len(args) > 0 {
		err = s.Files(ctx, args, interruptible(ctx, stdio.In))
	}
	if err == nil && len(groups) > 0 {
		client, cerr := cloudwatch.NewClient(ctx, cloudwatch.Config{Region: region}, nil)
		if cerr != nil {
			err = cerr
		} else {
			err = s.LogGroups(ctx, client, groups)
		}
	}
	progress.clear()

	interrupted := err != nil && ctx.Err() != nil
	if err != nil && !interrupted {
		return err
	}
	results := s.Results()
	width := 0
	if w, ok := terminalWidth(stdio.Out); ok {
		width = w
	}
	if rerr := search.Render(stdio.Out, results, search.RenderOptions{
		Format: f.output, Width: width, Show: f.show, Escape: terminalSafe,
	}); rerr != nil {
		return rerr
	}
	printS3Stats(stdio, &s3stats)
	st := s.Stats()
	shown := fmt.Sprintf("%d matching records", st.Matched)
	if len(results) < st.Matched {
		shown = fmt.Sprintf("%d matching records, the newest %d shown (raise --limit to see more)", st.Matched, len(results))
	}
	fmt.Fprintf(stdio.Err, "trailwatch: %s; %d records scanned, %d duplicates dropped, %d files or directories pruned by time, %d inputs skipped\n",
		shown, st.Scanned, st.Duplicates, st.Pruned, st.BadInputs)
	if interrupted {
		return exitCode(130, "interrupted; the results above are what was found until then")
	}
	return nil
}

// terminalWidth returns w's width when it is a terminal. A variable, so
// that a test can make a buffer a terminal.
var terminalWidth = func(w io.Writer) (int, bool) {
	file, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(file.Fd())) {
		return 0, false
	}
	width, _, err := term.GetSize(int(file.Fd()))
	if err != nil || width <= 0 {
		return 0, false
	}
	return width, true
}

// progress is the one-line progress report on a terminal's stderr, shared
// by search and replay.
type progress struct {
	w     io.Writer
	now   func() time.Time
	every time.Duration // the line is redrawn at most this often
	start time.Time
	mu    sync.Mutex // replay clears the line from its output goroutine
	last  time.Time
	width int
	shown bool
}

// newProgress returns a progress line for w, or nil when w is not a
// terminal.
func newProgress(w io.Writer, now func() time.Time, every time.Duration) *progress {
	width, ok := terminalWidth(w)
	if !ok {
		return nil
	}
	t := now()
	return &progress{w: w, now: now, every: every, start: t, last: t, width: width}
}

// rate says how many records a second n records since the start make.
func (p *progress) rate(n int) string {
	secs := p.now().Sub(p.start).Seconds()
	if secs <= 0 {
		return "-/s"
	}
	return humanCount(float64(n)/secs) + "/s"
}

// due reports whether the line may be redrawn now.
func (p *progress) due() bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.now().Sub(p.last) >= p.every
}

// show redraws the line, at most once every p.every.
func (p *progress) show(line string) {
	if !p.due() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = p.now()
	p.shown = true
	if r := []rune(line); len(r) > p.width-1 {
		// A wrapped line could not be redrawn in place.
		line = string(r[:max(p.width-2, 0)]) + "…"
	}
	fmt.Fprint(p.w, "\r\x1b[K"+line)
}

// clear erases the progress line, if one is shown.
func (p *progress) clear() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.shown {
		return
	}
	p.shown = false
	fmt.Fprint(p.w, "\r\x1b[K")
}
