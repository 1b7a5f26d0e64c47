package cloudwatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/trailwatch/trailwatch/internal/awsconf"
)

// ErrLogGroupNotFound is returned (wrapped) by Check and Read when a
// configured log group does not exist.
var ErrLogGroupNotFound = errors.New("log group not found")

// Record is one log event read from a log group.
type Record struct {
	// LogGroup is the log group as configured (name or ARN).
	LogGroup string
	// LogStream is the stream the event was written to.
	LogStream string
	// CWEventID is CloudWatch's own id for the log event.
	CWEventID string
	// Timestamp is the log event's timestamp; for CloudTrail, the time of
	// the API call.
	Timestamp time.Time
	// IngestionTime is when CloudWatch Logs received the event.
	IngestionTime time.Time
	// Message is the raw log event message (a CloudTrail JSON record, or
	// anything else that was written to the group).
	Message []byte
}

// API is the subset of *cloudwatchlogs.Client that Source uses.
type API interface {
	FilterLogEvents(ctx context.Context, in *cloudwatchlogs.FilterLogEventsInput, optFns ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.FilterLogEventsOutput, error)
	DescribeLogGroups(ctx context.Context, in *cloudwatchlogs.DescribeLogGroupsInput, optFns ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.DescribeLogGroupsOutput, error)
}

var _ API = (*cloudwatchlogs.Client)(nil)

// Options are the Source's collaborators and tuning knobs. Only StateDir is
// required.
type Options struct {
	// Logger receives warnings (retries, late records) and debug detail;
	// nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// After is the timer used for poll intervals and backoff; nil means
	// time.After. Tests inject a fake.
	After func(time.Duration) <-chan time.Time
	// Limiter paces FilterLogEvents across every Source that shares it
	// (AWS allows 5 requests/s per account and region). Nil means a
	// private limiter of 5/s.
	Limiter *rate.Limiter
	// Registerer receives the metrics; nil means they are not exported.
	Registerer prometheus.Registerer
	// StateDir is the directory that holds each log group's position and
	// dedup window. Required; created if missing.
	StateDir string

	// TailSpan is how far back each quick poll (every poll_interval)
	// reads. Default: 5 minutes (CloudTrail's usual delivery delay), at
	// most the lookback. Negative disables quick polls: only sweeps run.
	TailSpan time.Duration
	// SweepInterval is how often the whole lookback is read again to catch
	// late records. Default: lookback/10, at least poll_interval.
	SweepInterval time.Duration
	// MaxChunk caps the time span of one catch-up query after downtime or
	// from "beginning"; it bounds the dedup window's memory. Default 6h.
	MaxChunk time.Duration
	// PageLimit is the FilterLogEvents page size (limit). Default 10000,
	// the maximum.
	PageLimit int32
	// MinBackoff and MaxBackoff bound the jittered exponential backoff
	// after throttling, 5xx and network errors. Defaults 250ms and 30s.
	MinBackoff, MaxBackoff time.Duration
}

// Source reads CloudTrail records from CloudWatch Logs log groups, without
// loss and without duplicates; see the package documentation.
type Source struct {
	api     API
	cfg     Config
	opts    Options
	log     *slog.Logger
	m       *metrics
	groups  []*group
	handleM sync.Mutex

	// afterHandle, when set (tests only), runs after handle succeeded and
	// before the state is saved; an error from it ends Read at once without
	// saving, as a crash there would.
	afterHandle func(logGroup string, batch []Record) error
}

// New returns a Source for the log groups in cfg. It applies cfg's
// defaults and validates it; it does not contact AWS (see Check).
func New(client API, cfg Config, opts Options) (*Source, error) {
	if client == nil {
		return nil, errors.New("new cloudwatch source: nil client")
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new cloudwatch source: %w", err)
	}
	if opts.StateDir == "" {
		return nil, errors.New("new cloudwatch source: a state dir is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.After == nil {
		opts.After = time.After
	}
	if opts.Limiter == nil {
		opts.Limiter = rate.NewLimiter(5, 1)
	}
	if opts.TailSpan == 0 {
		opts.TailSpan = min(5*time.Minute, cfg.Lookback)
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = max(cfg.Lookback/10, cfg.PollInterval)
	}
	if opts.MaxChunk <= 0 {
		opts.MaxChunk = 6 * time.Hour
	}
	opts.MaxChunk = max(opts.MaxChunk, cfg.Lookback)
	if opts.PageLimit <= 0 || opts.PageLimit > 10000 {
		opts.PageLimit = 10000
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 250 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.MinBackoff)
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("new cloudwatch source: %w", err)
	}
	s := &Source{api: client, cfg: cfg, opts: opts, log: opts.Logger, m: m}
	for _, name := range cfg.LogGroups {
		g := &group{s: s, name: name, lookback: cfg.Lookback.Milliseconds(), chunk: opts.MaxChunk}
		if strings.HasPrefix(name, "arn:") {
			g.ident = strings.TrimSuffix(name, ":*")
		}
		s.groups = append(s.groups, g)
	}
	return s, nil
}

// NewClient returns a CloudWatch Logs client from the SDK's default
// configuration chain, in cfg.Region when it is set, with the SDK's log
// lines sent to logger (nil: slog.Default(); see internal/awsconf). The SDK
// itself honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_CLOUDWATCH_LOGS.
func NewClient(ctx context.Context, cfg Config, logger *slog.Logger) (*cloudwatchlogs.Client, error) {
	awsCfg, err := awsconf.Load(ctx, cfg.Region, logger)
	if err != nil {
		return nil, fmt.Errorf("cloudwatch logs client: %w", err)
	}
	return cloudwatchlogs.NewFromConfig(awsCfg), nil
}

// Check verifies, for every log group, that it exists and can be read with
// the configured credentials. It reports every failing group at once.
func (s *Source) Check(ctx context.Context) error {
	var errs []error
	for _, g := range s.groups {
		if _, err := g.describe(ctx); err != nil {
			errs = append(errs, err)
			continue
		}
		in := g.input(s.opts.Now().Add(-time.Minute).UnixMilli(), nil, nil)
		in.Limit = aws.Int32(1)
		if err := s.opts.Limiter.Wait(ctx); err != nil {
			return fmt.Errorf("check log group %q: %w", g.name, err)
		}
		if _, err := s.api.FilterLogEvents(ctx, in); err != nil {
			errs = append(errs, fmt.Errorf("check log group %q: filter log events: %w", g.name, err))
		}
	}
	return errors.Join(errs...)
}

// Read reads every log group until ctx is cancelled, calling handle with
// each batch of new records (one FilterLogEvents page's worth, in timestamp
// order); Run is Read for the pipeline (source.Source). handle is never
// called concurrently, even with several log groups. A log group's
// position and dedup window are saved after each batch that handle
// accepted, and advance past a record only once handle has returned nil
// for it.
//
// Read returns nil when ctx is cancelled, after saving the state. When
// handle returns an error, Read stops and returns it; the failed batch is
// read again by the next Read. A missing log group or a refused request
// (4xx other than throttling) is returned as an error; throttling, 5xx and
// network errors are retried with backoff for as long as it takes.
func (s *Source) Read(ctx context.Context, handle func(ctx context.Context, batch []Record) error) error {
	for _, g := range s.groups {
		if err := g.init(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(s.groups))
	for _, g := range s.groups {
		go func() { errc <- g.run(ctx, handle) }()
	}
	var first error
	for range s.groups {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

// group is one log group being read.
type group struct {
	s        *Source
	name     string // as configured
	ident    string // ARN without ":*" when configured by ARN
	lookback int64  // ms
	chunk    time.Duration
	st       *groupState
}

func (g *group) input(startMS int64, endMS *int64, token *string) *cloudwatchlogs.FilterLogEventsInput {
	in := &cloudwatchlogs.FilterLogEventsInput{
		StartTime: aws.Int64(startMS),
		EndTime:   endMS,
		NextToken: token,
		Limit:     aws.Int32(g.s.opts.PageLimit),
	}
	if g.ident != "" {
		in.LogGroupIdentifier = aws.String(g.ident)
	} else {
		in.LogGroupName = aws.String(g.name)
	}
	return in
}

// describe finds the log group with DescribeLogGroups.
func (g *group) describe(ctx context.Context) (types.LogGroup, error) {
	in := &cloudwatchlogs.DescribeLogGroupsInput{}
	match := func(lg types.LogGroup) bool { return aws.ToString(lg.LogGroupName) == g.name }
	if g.ident != "" {
		in.LogGroupIdentifiers = []string{g.ident}
		arn, _ := parseLogGroupARN(g.ident)
		match = func(lg types.LogGroup) bool { return aws.ToString(lg.LogGroupName) == arn.Name }
	} else {
		in.LogGroupNamePrefix = aws.String(g.name)
	}
	for {
		out, err := g.s.api.DescribeLogGroups(ctx, in)
		if err != nil {
			var ae smithy.APIError
			if errors.As(err, &ae) && ae.ErrorCode() == "ResourceNotFoundException" {
				return types.LogGroup{}, fmt.Errorf("check log group %q: %w", g.name, ErrLogGroupNotFound)
			}
			return types.LogGroup{}, fmt.Errorf("check log group %q: describe log groups: %w", g.name, err)
		}
		for _, lg := range out.LogGroups {
			if match(lg) {
				return lg, nil
			}
		}
		if aws.ToString(out.NextToken) == "" {
			return types.LogGroup{}, fmt.Errorf("check log group %q: %w", g.name, ErrLogGroupNotFound)
		}
		in.NextToken = out.NextToken
	}
}

// maxBackdate is how far before its ingestion CloudWatch Logs accepts a log
// event's timestamp: the oldest record "beginning" can find.
const maxBackdate = 14 * 24 * time.Hour

// init loads the log group's state or, on a first run, places it at the
// configured start.
func (g *group) init(ctx context.Context) error {
	st, ok, err := loadState(g.s.opts.StateDir, g.name)
	if err != nil {
		return err
	}
	if ok {
		g.st = st
		if was, clamped := st.clampFuture(g.s.opts.Now()); clamped {
			g.s.log.Warn("saved position is in the future (was the clock stepped back?): reading from now instead, or records until then would be skipped",
				"log_group", g.name, "saved_position", was.UTC(), "now", time.UnixMilli(st.Position).UTC())
		}
		g.s.log.Info("resuming log group", "log_group", g.name, "position", time.UnixMilli(st.Position).UTC(), "window", len(st.Seen))
		g.s.m.position.WithLabelValues(g.name).Set(float64(st.Position) / 1000)
		return nil
	}
	now := g.s.opts.Now()
	start, err := parseStart(g.s.cfg.Start, now)
	if err != nil {
		return fmt.Errorf("start log group %q: %w", g.name, err)
	}
	st = &groupState{Seen: map[string]seenEntry{}}
	if start.Equal(beginning) {
		lg, err := g.describe(ctx)
		if err != nil {
			return err
		}
		earliest := time.UnixMilli(aws.ToInt64(lg.CreationTime)).Add(-maxBackdate)
		st.Position = max(earliest.UnixMilli(), 0) + g.lookback
		g.chunk = max(time.Hour, g.s.cfg.Lookback)
	} else {
		st.Position = start.UnixMilli()
		st.Floor = start.UnixMilli()
	}
	g.st = st
	if err := os.MkdirAll(g.s.opts.StateDir, 0o700); err != nil {
		return fmt.Errorf("start log group %q: create state dir: %w", g.name, err)
	}
	if err := saveState(g.s.opts.StateDir, g.name, st); err != nil {
		return fmt.Errorf("start log group %q: %w", g.name, err)
	}
	g.s.log.Info("starting log group", "log_group", g.name, "start", g.s.cfg.Start, "position", time.UnixMilli(st.Position).UTC())
	g.s.m.position.WithLabelValues(g.name).Set(float64(st.Position) / 1000)
	return nil
}

// run is the polling loop of one log group.
func (g *group) run(ctx context.Context, handle func(context.Context, []Record) error) error {
	var nextSweep time.Time
	for {
		now := g.s.opts.Now()
		caughtUp := true
		var err error
		if !now.Before(nextSweep) {
			caughtUp, err = g.sweep(ctx, now, handle)
			if err == nil && caughtUp {
				nextSweep = now.Add(g.s.opts.SweepInterval)
			}
		} else if g.s.opts.TailSpan > 0 {
			err = g.tail(ctx, now, handle)
		}
		if err != nil {
			if ctx.Err() != nil {
				return g.finish()
			}
			return err
		}
		if !caughtUp {
			if ctx.Err() != nil {
				return g.finish()
			}
			continue
		}
		select {
		case <-ctx.Done():
			return g.finish()
		case <-g.s.opts.After(g.s.cfg.PollInterval):
		}
	}
}

// finish saves the state when Read ends on cancellation.
func (g *group) finish() error {
	if err := saveState(g.s.opts.StateDir, g.name, g.st); err != nil {
		return fmt.Errorf("stop log group %q: %w", g.name, err)
	}
	return nil
}

// Chunk sizing for catch-up queries: grow while chunks are light, shrink
// when one holds many records, so the dedup window stays bounded.
const (
	chunkGrowBelow   = 5_000
	chunkShrinkAbove = 50_000
)

// sweep reads from Position-lookback, up to now (caughtUp) or, when far
// behind, up to one chunk past Position; then it advances Position.
func (g *group) sweep(ctx context.Context, now time.Time, handle func(context.Context, []Record) error) (caughtUp bool, err error) {
	st := g.st
	startMS := st.Position - g.lookback
	nowMS := now.UnixMilli()
	endMS := st.Position + g.chunk.Milliseconds()
	newPos := nowMS
	var end *int64
	if endMS < nowMS {
		end = &endMS
		newPos = endMS
	} else {
		caughtUp = true
	}
	n, err := g.query(ctx, startMS, end, handle)
	if err != nil {
		return false, err
	}
	if newPos > st.Position {
		st.Position = newPos
	}
	st.prune(st.Position - g.lookback)
	switch {
	case n < chunkGrowBelow:
		g.chunk = min(g.chunk*2, g.s.opts.MaxChunk)
	case n > chunkShrinkAbove:
		g.chunk = max(g.chunk/2, g.s.cfg.Lookback)
	}
	g.s.m.position.WithLabelValues(g.name).Set(float64(st.Position) / 1000)
	if err := saveState(g.s.opts.StateDir, g.name, st); err != nil {
		// The next save retries; until then a restart re-reads (and the
		// dedup window drops) what was already handled: safe, not lossy.
		g.s.log.Error("save cloudwatch state", "log_group", g.name, "err", err)
	}
	return caughtUp, nil
}

// tail reads the recent TailSpan for records that arrived since the last
// poll; it leaves Position to the sweeps.
func (g *group) tail(ctx context.Context, now time.Time, handle func(context.Context, []Record) error) error {
	startMS := max(g.st.Position-g.lookback, now.Add(-g.s.opts.TailSpan).UnixMilli())
	_, err := g.query(ctx, startMS, nil, handle)
	return err
}

// query pages through one FilterLogEvents query, handing on each page's new
// records. It returns how many log events it read.
func (g *group) query(ctx context.Context, startMS int64, endMS *int64, handle func(context.Context, []Record) error) (int, error) {
	var token *string
	n := 0
	for {
		out, err := g.filter(ctx, g.input(startMS, endMS, token))
		if err != nil {
			return n, err
		}
		n += len(out.Events)
		if err := g.page(ctx, out.Events, handle); err != nil {
			return n, err
		}
		// A page may be empty while a token remains: keep going.
		if aws.ToString(out.NextToken) == "" {
			return n, nil
		}
		token = out.NextToken
	}
}

// page dedups one page of events, hands the new ones on, and records them
// in the dedup window once handle has accepted them.
func (g *group) page(ctx context.Context, events []types.FilteredLogEvent, handle func(context.Context, []Record) error) error {
	st := g.st
	m := g.s.m
	var batch []Record
	var keys []string
	var ents []seenEntry
	inBatch := map[string]struct{}{}
	for _, e := range events {
		msg := aws.ToString(e.Message)
		cwid := aws.ToString(e.EventId)
		ts := aws.ToInt64(e.Timestamp)
		ing := aws.ToInt64(e.IngestionTime)
		key := dedupKey(msg, cwid)
		ent := seenEntry{TS: ts, CWID: hashCWID(cwid)}
		if prev, ok := st.Seen[key]; ok {
			if prev.CWID == ent.CWID || !st.countDup(ent) {
				m.rereads.WithLabelValues(g.name).Inc()
			} else {
				m.duplicates.WithLabelValues(g.name).Inc()
			}
			continue
		}
		if _, ok := inBatch[key]; ok {
			if st.countDup(ent) {
				m.duplicates.WithLabelValues(g.name).Inc()
			}
			continue
		}
		if st.Floor != 0 && ts < st.Floor && ing < st.Floor {
			// Stamped and ingested before the configured start: skip it,
			// and remember it so re-reads do not look at it again.
			st.Seen[key] = ent
			continue
		}
		if ing-ts > g.lookback {
			m.late.WithLabelValues(g.name).Inc()
			g.s.log.Warn("record ingested later than the lookback; records like it can be missed",
				"log_group", g.name, "log_stream", aws.ToString(e.LogStreamName),
				"timestamp", time.UnixMilli(ts).UTC(), "ingestion_time", time.UnixMilli(ing).UTC(),
				"lookback", g.s.cfg.Lookback)
		}
		inBatch[key] = struct{}{}
		batch = append(batch, Record{
			LogGroup:      g.name,
			LogStream:     aws.ToString(e.LogStreamName),
			CWEventID:     cwid,
			Timestamp:     time.UnixMilli(ts).UTC(),
			IngestionTime: time.UnixMilli(ing).UTC(),
			Message:       []byte(msg),
		})
		keys = append(keys, key)
		ents = append(ents, ent)
	}
	if len(batch) == 0 {
		return nil
	}
	// Pages come in any order; hand records on in timestamp order.
	idx := make([]int, len(batch))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		ra, rb := &batch[idx[a]], &batch[idx[b]]
		if !ra.Timestamp.Equal(rb.Timestamp) {
			return ra.Timestamp.Before(rb.Timestamp)
		}
		if ra.LogStream != rb.LogStream {
			return ra.LogStream < rb.LogStream
		}
		return ra.CWEventID < rb.CWEventID
	})
	sorted := make([]Record, len(batch))
	for i, j := range idx {
		sorted[i] = batch[j]
	}
	g.s.handleM.Lock()
	err := handle(ctx, sorted)
	g.s.handleM.Unlock()
	if err != nil {
		return fmt.Errorf("handle records from log group %q: %w", g.name, err)
	}
	for i, k := range keys {
		st.Seen[k] = ents[i]
	}
	m.records.WithLabelValues(g.name).Add(float64(len(sorted)))
	if g.s.afterHandle != nil {
		if err := g.s.afterHandle(g.name, sorted); err != nil {
			return err
		}
	}
	if err := saveState(g.s.opts.StateDir, g.name, st); err != nil {
		g.s.log.Error("save cloudwatch state", "log_group", g.name, "err", err)
	}
	return nil
}

// dedupKey is the record's CloudTrail eventID, or CloudWatch's event id for
// a log event that has none.
func dedupKey(msg, cwid string) string {
	if strings.Contains(msg, `"eventID"`) {
		var r struct {
			EventID string `json:"eventID"`
		}
		if json.Unmarshal([]byte(msg), &r) == nil && r.EventID != "" {
			return r.EventID
		}
	}
	return "cw:" + cwid
}

// filter sends one FilterLogEvents request through the shared limiter,
// retrying throttling, 5xx and network errors with jittered exponential
// backoff. The SDK's own retryer is off for this call so that every
// throttle is seen (and counted) here.
func (g *group) filter(ctx context.Context, in *cloudwatchlogs.FilterLogEventsInput) (*cloudwatchlogs.FilterLogEventsOutput, error) {
	for attempt := 0; ; attempt++ {
		if err := g.s.opts.Limiter.Wait(ctx); err != nil {
			return nil, fmt.Errorf("filter log events in %q: wait for rate limiter: %w", g.name, err)
		}
		g.s.m.calls.WithLabelValues(g.name).Inc()
		out, err := g.s.api.FilterLogEvents(ctx, in, noSDKRetries)
		if err == nil {
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("filter log events in %q: %w", g.name, ctx.Err())
		}
		retry, throttled := classify(err)
		if throttled {
			g.s.m.throttles.WithLabelValues(g.name).Inc()
		}
		if !retry {
			var ae smithy.APIError
			if errors.As(err, &ae) && ae.ErrorCode() == "ResourceNotFoundException" {
				return nil, fmt.Errorf("filter log events in %q: %w: %w", g.name, ErrLogGroupNotFound, err)
			}
			return nil, fmt.Errorf("filter log events in %q: %w", g.name, err)
		}
		g.s.m.retries.WithLabelValues(g.name).Inc()
		d := g.backoff(attempt)
		g.s.log.Warn("filter log events failed; retrying", "log_group", g.name, "attempt", attempt+1,
			"throttled", throttled, "retry_in", d, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("filter log events in %q: %w", g.name, ctx.Err())
		case <-g.s.opts.After(d):
		}
	}
}

func noSDKRetries(o *cloudwatchlogs.Options) { o.Retryer = aws.NopRetryer{} }

// backoff is exponential from MinBackoff, capped at MaxBackoff, with
// "equal jitter": half fixed, half random, so that several sources
// throttled together spread out.
func (g *group) backoff(attempt int) time.Duration {
	d := g.s.opts.MinBackoff
	for i := 0; i < attempt && d < g.s.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, g.s.opts.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// classify says whether a FilterLogEvents error is worth retrying, and
// whether it was throttling.
func classify(err error) (retry, throttled bool) {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
			"RequestLimitExceeded", "RequestThrottled", "RequestThrottledException", "SlowDown":
			return true, true
		case "ServiceUnavailableException", "ServiceUnavailable", "InternalFailure", "InternalServerError",
			"RequestTimeout", "RequestTimeoutException":
			return true, false
		}
	}
	var sc interface{ HTTPStatusCode() int }
	if errors.As(err, &sc) {
		switch code := sc.HTTPStatusCode(); {
		case code == 429:
			return true, true
		case code >= 500:
			return true, false
		case code > 0:
			return false, false
		}
	}
	// No HTTP response at all: a dropped connection, a timeout, a reset.
	return true, false
}
