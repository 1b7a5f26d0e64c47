package kinesis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	kds "github.com/aws/aws-sdk-go-v2/service/kinesis"
	kdstypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailwatch/trailwatch/engine/cwlogs"
	"github.com/trailwatch/trailwatch/engine/source"
	"github.com/trailwatch/trailwatch/internal/awsconf"
)

// API is the part of the Kinesis client the source uses.
type API interface {
	ListShards(ctx context.Context, in *kds.ListShardsInput, opts ...func(*kds.Options)) (*kds.ListShardsOutput, error)
	GetShardIterator(ctx context.Context, in *kds.GetShardIteratorInput, opts ...func(*kds.Options)) (*kds.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *kds.GetRecordsInput, opts ...func(*kds.Options)) (*kds.GetRecordsOutput, error)
	DescribeStreamSummary(ctx context.Context, in *kds.DescribeStreamSummaryInput, opts ...func(*kds.Options)) (*kds.DescribeStreamSummaryOutput, error)
}

// Options adjust a Source. The zero value is ready for production.
type Options struct {
	// Logger receives lease changes and read problems; nil discards.
	Logger *slog.Logger
	// Now is the clock of the leases; nil means time.Now. Instances
	// sharing a lease table need clocks that agree to well within the
	// lease duration (NTP does).
	Now func() time.Time
	// After waits, like time.After (the default), between reads and lease
	// refreshes.
	After func(time.Duration) <-chan time.Time
	// RefreshInterval is how often leases are renewed, shards listed and
	// free leases taken; zero means a third of the lease duration.
	RefreshInterval time.Duration
	// Registerer, if set, receives the source's metrics.
	Registerer prometheus.Registerer
	// Refreshed, if set, is called after each successful lease refresh
	// (readiness: the stream and the lease table answer).
	Refreshed func()
}

// Source reads a Kinesis data stream that a CloudWatch Logs subscription
// filter feeds, sharing its shards with the other instances that use the
// same lease table.
type Source struct {
	kin     API
	cfg     Config
	opts    Options
	leases  *Leases
	log     *slog.Logger
	refresh time.Duration
	metrics *metrics
}

// New returns a source reading the stream of cfg through kin, with its
// leases in cfg.LeaseTable through ddb. cfg must have passed Validate.
func New(kin API, ddb DynamoDB, cfg Config, opts Options) (*Source, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kinesis source: %w", err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.After == nil {
		opts.After = time.After
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	worker := cfg.WorkerID
	if worker == "" {
		var err error
		if worker, err = defaultWorkerID(); err != nil {
			return nil, err
		}
	}
	leases, err := NewLeases(ddb, cfg.LeaseTable, worker, cfg.LeaseDuration, opts.Now)
	if err != nil {
		return nil, err
	}
	refresh := opts.RefreshInterval
	if refresh <= 0 {
		refresh = cfg.LeaseDuration / 3
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	return &Source{
		kin: kin, cfg: cfg, opts: opts, leases: leases, refresh: refresh, metrics: m,
		log: opts.Logger.With("stream", streamName(cfg.Stream), "worker", worker),
	}, nil
}

func defaultWorkerID() (string, error) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "trailwatch"
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("kinesis source: worker id: %w", err)
	}
	return host + "-" + hex.EncodeToString(b[:]), nil
}

// Worker returns the id this source holds leases as.
func (s *Source) Worker() string { return s.leases.Worker() }

// NewClients returns Kinesis and DynamoDB clients from the SDK's default
// configuration chain, in cfg.Region when it is set (AWS_ENDPOINT_URL,
// AWS_ENDPOINT_URL_KINESIS and AWS_ENDPOINT_URL_DYNAMODB are honoured),
// with the SDK's log lines sent to logger (nil: slog.Default(); see
// internal/awsconf).
func NewClients(ctx context.Context, cfg Config, logger *slog.Logger) (*kds.Client, *dynamodb.Client, error) {
	awsCfg, err := awsconf.Load(ctx, cfg.Region, logger)
	if err != nil {
		return nil, nil, fmt.Errorf("kinesis clients: %w", err)
	}
	return kds.NewFromConfig(awsCfg), dynamodb.NewFromConfig(awsCfg), nil
}

// Check verifies that the stream can be described and the lease table
// read with the configured credentials.
func (s *Source) Check(ctx context.Context) error {
	in := &kds.DescribeStreamSummaryInput{}
	s.setStream(&in.StreamName, &in.StreamARN)
	var errs []error
	if _, err := s.kin.DescribeStreamSummary(ctx, in); err != nil {
		errs = append(errs, fmt.Errorf("check kinesis stream %q: %w", streamName(s.cfg.Stream), err))
	}
	if _, err := s.leases.List(ctx); err != nil {
		errs = append(errs, fmt.Errorf("check lease table %q: %w", s.cfg.LeaseTable, err))
	}
	return errors.Join(errs...)
}

func (s *Source) setStream(name, arn **string) {
	if strings.HasPrefix(s.cfg.Stream, "arn:") {
		*arn = aws.String(s.cfg.Stream)
	} else {
		*name = aws.String(s.cfg.Stream)
	}
}

func streamName(s string) string {
	if i := strings.LastIndex(s, ":stream/"); i >= 0 {
		return s[i+len(":stream/"):]
	}
	return s
}

// shard is a lease this worker holds and the reader working under it.
type shard struct {
	id    string
	mu    sync.Mutex // orders writes on the lease (renew, checkpoint)
	lease Lease
	lost  bool

	cancel context.CancelFunc
	done   chan struct{}
}

func (sh *shard) current() (Lease, bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.lease, sh.lost
}

func (sh *shard) finished() bool {
	select {
	case <-sh.done:
		return true
	default:
		return false
	}
}

// Run reads the shards this worker holds leases on and calls handle for
// each batch (the log events of one log group from consecutive records of
// one shard, each with its log group, stream and log event id), in order
// per shard; batches of different shards may be
// handled concurrently. A shard's checkpoint advances past a batch only
// after handle returned nil for it, and only while the worker still holds
// the shard's lease. Run returns nil when ctx ends, after checkpointing
// and releasing its leases; it returns an error when handle fails (the
// batch is read again by whoever holds the shard next).
func (s *Source) Run(ctx context.Context, handle source.Handler) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	held := map[string]*shard{}
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	defer func() {
		cancel()
		wg.Wait()
		s.releaseAll(ctx, held)
	}()
	s.log.Info("kinesis source started", "lease_table", s.cfg.LeaseTable)
	for {
		if err := s.rebalance(runCtx, held, func(sctx context.Context, sh *shard) {
			wg.Go(func() {
				defer close(sh.done)
				if err := s.consume(sctx, sh, handle); err != nil {
					select {
					case errc <- err:
					default:
					}
					cancel()
				}
			})
		}); err != nil && runCtx.Err() == nil {
			s.log.Warn("kinesis lease refresh failed; retrying", "err", err)
		} else if err == nil && s.opts.Refreshed != nil {
			s.opts.Refreshed()
		}
		select {
		case err := <-errc:
			return err
		case <-runCtx.Done():
			select {
			case err := <-errc:
				return err
			default:
			}
			return nil
		case <-s.opts.After(s.refresh):
		}
	}
}

// releaseAll gives up every lease still held once the readers stopped, so
// the other workers take them at once instead of waiting for expiry.
func (s *Source) releaseAll(ctx context.Context, held map[string]*shard) {
	rctx, cancel := leaseWriteContext(ctx)
	defer cancel()
	for id, sh := range held {
		l, lost := sh.current()
		if lost || l.Owner != s.Worker() {
			s.log.Debug("not releasing a shard lease this worker no longer holds", "shard", id, "lost", lost, "owner", l.Owner)
			continue
		}
		if err := s.leases.Release(rctx, l); err != nil {
			s.log.Warn("release shard lease", "shard", id, "err", err)
			continue
		}
		s.log.Info("released shard lease", "shard", id)
	}
}

// rebalance renews the held leases, creates the leases of new shards, and
// takes its share of the free ones, calling start for each shard taken.
func (s *Source) rebalance(ctx context.Context, held map[string]*shard, start func(context.Context, *shard)) error {
	defer func() { s.metrics.held.Set(float64(len(held))) }()
	for id, sh := range held {
		if sh.finished() {
			if ctx.Err() != nil {
				// Stopping: the reader ended because of that, and
				// releaseAll gives its lease up. Dropping it here would
				// leave the lease held until it expired.
				continue
			}
			if l, lost := sh.current(); !lost {
				// The reader gave up without losing the lease: free it so
				// the shard is taken again, here or elsewhere, from its
				// checkpoint.
				if err := s.leases.Release(ctx, l); err != nil {
					s.log.Warn("release shard lease", "shard", id, "err", err)
				}
			}
			delete(held, id)
			s.metrics.behind.DeleteLabelValues(id)
			continue
		}
		sh.mu.Lock()
		if !sh.lost {
			// Not cancelled with ctx, for the same reason as a take: the
			// release on stop must know the counter the lease now has.
			wctx, wcancel := leaseWriteContext(ctx)
			l, err := s.leases.Renew(wctx, sh.lease)
			wcancel()
			switch {
			case errors.Is(err, ErrLeaseLost):
				sh.lost = true
				sh.cancel()
				s.log.Info("shard lease lost to another worker", "shard", id)
			case err != nil && ctx.Err() == nil:
				s.log.Warn("renew shard lease", "shard", id, "err", err)
			case err != nil:
			default:
				sh.lease = l
			}
		}
		sh.mu.Unlock()
	}
	leases, err := s.leases.List(ctx)
	if err != nil {
		return err
	}
	created, err := s.ensureLeases(ctx, leases)
	if err != nil {
		return err
	}
	if created {
		if leases, err = s.leases.List(ctx); err != nil {
			return err
		}
	}
	take, steal := plan(leases, s.Worker(), s.opts.Now())
	if steal != nil {
		s.log.Info("taking a shard lease from a worker holding more than its share", "shard", steal.ShardID, "from", steal.Owner)
		take = append(take, *steal)
	}
	for _, l := range take {
		if _, ok := held[l.ShardID]; ok {
			continue
		}
		if ctx.Err() != nil {
			return nil // stopping: take nothing more
		}
		// The write is not cancelled with ctx: a take that DynamoDB applied
		// but whose answer was lost would leave the shard owned by nobody
		// running until the lease expired. Taken, it is released on stop.
		wctx, wcancel := leaseWriteContext(ctx)
		nl, err := s.leases.Take(wctx, l)
		wcancel()
		if errors.Is(err, ErrLeaseLost) {
			continue // another worker was quicker
		}
		if err != nil {
			return err
		}
		s.log.Info("took shard lease", "shard", l.ShardID, "checkpoint", nl.Checkpoint, "previous_owner", l.Owner)
		if l.Owner != "" && l.Owner != s.Worker() {
			s.metrics.takeovers.Inc()
		}
		cctx, cancel := context.WithCancel(ctx)
		sh := &shard{id: l.ShardID, lease: nl, cancel: cancel, done: make(chan struct{})}
		held[l.ShardID] = sh
		start(cctx, sh)
	}
	return nil
}

// ensureLeases creates a lease for every shard of the stream that has
// none; it reports whether it created any.
func (s *Source) ensureLeases(ctx context.Context, leases []Lease) (bool, error) {
	known := make(map[string]bool, len(leases))
	for _, l := range leases {
		known[l.ShardID] = true
	}
	shards, err := s.listShards(ctx)
	if err != nil {
		return false, err
	}
	created := false
	for _, sh := range shards {
		id := aws.ToString(sh.ShardId)
		if known[id] {
			continue
		}
		var parents []string
		for _, p := range []*string{sh.ParentShardId, sh.AdjacentParentShardId} {
			if aws.ToString(p) != "" {
				parents = append(parents, aws.ToString(p))
			}
		}
		sort.Strings(parents)
		cp := s.cfg.startCheckpoint(s.opts.Now())
		if len(parents) > 0 {
			// A child of a reshard: every record after its parents' last.
			cp = CheckpointTrimHorizon
		}
		if err := s.leases.Ensure(ctx, id, parents, cp); err != nil {
			return created, err
		}
		created = true
	}
	return created, nil
}

func (s *Source) listShards(ctx context.Context) ([]kdstypes.Shard, error) {
	var out []kdstypes.Shard
	var token *string
	for {
		in := &kds.ListShardsInput{}
		if token != nil {
			in.NextToken = token
		} else {
			s.setStream(&in.StreamName, &in.StreamARN)
		}
		page, err := s.kin.ListShards(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list shards of %q: %w", streamName(s.cfg.Stream), err)
		}
		out = append(out, page.Shards...)
		if aws.ToString(page.NextToken) == "" {
			return out, nil
		}
		token = page.NextToken
	}
}

// iterator returns a shard iterator positioned after the checkpoint.
func (s *Source) iterator(ctx context.Context, l Lease) (*string, error) {
	in := &kds.GetShardIteratorInput{ShardId: aws.String(l.ShardID)}
	s.setStream(&in.StreamName, &in.StreamARN)
	at, isAt := atTimestamp(l.Checkpoint)
	switch {
	case isAt:
		in.ShardIteratorType = kdstypes.ShardIteratorTypeAtTimestamp
		in.Timestamp = aws.Time(at)
	case l.Checkpoint == CheckpointTrimHorizon || l.Checkpoint == "":
		in.ShardIteratorType = kdstypes.ShardIteratorTypeTrimHorizon
	case l.Checkpoint == CheckpointLatest:
		in.ShardIteratorType = kdstypes.ShardIteratorTypeLatest
	default:
		in.ShardIteratorType = kdstypes.ShardIteratorTypeAfterSequenceNumber
		in.StartingSequenceNumber = aws.String(l.Checkpoint)
	}
	out, err := s.kin.GetShardIterator(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("get iterator of shard %s: %w", l.ShardID, err)
	}
	return out.ShardIterator, nil
}

// wait waits d or until ctx ends; it reports whether ctx is still live.
func (s *Source) wait(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-s.opts.After(d):
		return true
	}
}

// consume reads one shard until the lease is lost, the shard ends or ctx
// ends. It returns an error only when handle failed.
func (s *Source) consume(ctx context.Context, sh *shard, handle source.Handler) error {
	log := s.log.With("shard", sh.id)
	var iter *string
	backoff := s.cfg.PollInterval
	for ctx.Err() == nil {
		l, lost := sh.current()
		if lost {
			return nil
		}
		if iter == nil {
			var err error
			if iter, err = s.iterator(ctx, l); err != nil {
				log.Warn("kinesis read failed; retrying", "err", err)
				if !s.wait(ctx, backoff) {
					return nil
				}
				backoff = min(2*backoff, 30*time.Second)
				continue
			}
		}
		out, err := s.kin.GetRecords(ctx, &kds.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(s.cfg.MaxRecords)})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var expired *kdstypes.ExpiredIteratorException
			if errors.As(err, &expired) {
				iter = nil // read again from the checkpoint
				continue
			}
			log.Warn("kinesis read failed; retrying", "err", err)
			if !s.wait(ctx, backoff) {
				return nil
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = s.cfg.PollInterval
		if out.MillisBehindLatest != nil {
			s.metrics.behind.WithLabelValues(sh.id).Set(float64(*out.MillisBehindLatest))
		}
		if len(out.Records) > 0 {
			s.metrics.records.WithLabelValues(sh.id).Add(float64(len(out.Records)))
			if !s.holdFor(ctx, sh) {
				return nil
			}
			for _, b := range s.decode(log, out.Records) {
				if err := handle(ctx, b); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("handle records of shard %s from log group %q: %w", l.ShardID, b.Origin, err)
				}
			}
			last := aws.ToString(out.Records[len(out.Records)-1].SequenceNumber)
			if !s.checkpoint(ctx, sh, last, log) {
				return nil
			}
		}
		if out.NextShardIterator == nil {
			// The shard is closed and read to its end: its children may
			// now be read (by whoever takes them).
			if s.checkpoint(ctx, sh, CheckpointShardEnd, log) {
				log.Info("shard read to its end")
				l, _ := sh.current()
				rctx, cancel := leaseWriteContext(ctx)
				if err := s.leases.Release(rctx, l); err != nil {
					log.Warn("release finished shard lease", "err", err)
				}
				cancel()
				sh.mu.Lock()
				sh.lost = true // nothing left to renew or release
				sh.mu.Unlock()
			}
			return nil
		}
		iter = out.NextShardIterator
		if len(out.Records) == 0 || aws.ToInt64(out.MillisBehindLatest) == 0 {
			if !s.wait(ctx, s.cfg.PollInterval) {
				return nil
			}
		}
	}
	return nil
}

// holdFor waits while the lease looks expired on our clock (a renewal is
// due), so that records are not handled by a worker that may no longer own
// the shard. It returns false when the lease is lost or ctx ended.
func (s *Source) holdFor(ctx context.Context, sh *shard) bool {
	for {
		l, lost := sh.current()
		if lost {
			return false
		}
		if s.opts.Now().Before(l.ExpiresAt) {
			return true
		}
		if !s.wait(ctx, s.cfg.PollInterval) {
			return false
		}
	}
}

// checkpoint records seq under the lease, even when ctx just ended (the
// batch was handled); it returns false when the lease is lost or the
// checkpoint could not be written.
func (s *Source) checkpoint(ctx context.Context, sh *shard, seq string, log *slog.Logger) bool {
	cctx, cancel := leaseWriteContext(ctx)
	defer cancel()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.lost {
		return false
	}
	l, err := s.leases.Checkpoint(cctx, sh.lease, seq)
	switch {
	case errors.Is(err, ErrLeaseLost):
		sh.lost = true
		log.Info("shard lease lost to another worker; its last batch will be read again there")
		return false
	case err != nil:
		// The next checkpoint covers this batch too; if none comes, the
		// batch is read again after a restart (at least once).
		log.Warn("checkpoint failed", "err", err)
		return ctx.Err() == nil
	}
	sh.lease = l
	return true
}

// decode turns a read's records into batches, one per run of records from
// the same log group. Records that are not subscription payloads are
// logged and skipped: reading them again cannot help.
func (s *Source) decode(log *slog.Logger, recs []kdstypes.Record) []source.Batch {
	var out []source.Batch
	for _, r := range recs {
		d, err := cwlogs.DecodeBytes(r.Data)
		if err != nil {
			s.metrics.skipped.Inc()
			log.Warn("skipped a kinesis record that is not a CloudWatch Logs subscription payload",
				"sequence_number", aws.ToString(r.SequenceNumber), "err", err)
			continue
		}
		if d.MessageType != cwlogs.MessageTypeData {
			continue
		}
		if len(out) == 0 || out[len(out)-1].Origin != d.LogGroup {
			out = append(out, source.Batch{Origin: d.LogGroup})
		}
		cwlogs.AppendRecords(&out[len(out)-1], d)
	}
	return out
}

// leaseWriteTimeout bounds a lease write that must not be cancelled with
// the run (see leaseWriteContext).
const leaseWriteTimeout = 10 * time.Second

// leaseWriteContext is ctx without its cancellation, bounded by
// leaseWriteTimeout: for lease writes whose outcome this worker must know
// even when it is stopping (a take or renew DynamoDB applied, a checkpoint
// of a batch already handled, a release).
func leaseWriteContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), leaseWriteTimeout)
}
