package s3sqs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailwatch/trailwatch/engine/awslogs"
	"github.com/trailwatch/trailwatch/engine/files"
	"github.com/trailwatch/trailwatch/engine/s3files"
	"github.com/trailwatch/trailwatch/engine/source"
	"github.com/trailwatch/trailwatch/internal/awsconf"
	"github.com/trailwatch/trailwatch/internal/s3bundle"
)

// SQS is the part of the SQS client the source uses.
type SQS interface {
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, opts ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

var _ SQS = (*sqs.Client)(nil)

// Options adjust a Source. The zero value is ready for production.
type Options struct {
	// Logger receives what happens to messages and objects; nil discards.
	Logger *slog.Logger
	// Now is the clock of the lag and age metrics; nil means time.Now.
	Now func() time.Time
	// After waits, like time.After (the default), between visibility
	// extensions, retries and queue depth polls.
	After func(time.Duration) <-chan time.Time
	// Registerer, if set, receives the source's metrics.
	Registerer prometheus.Registerer
	// Alive, if set, is called whenever the source shows it works: a
	// successful ReceiveMessage or visibility extension, a batch handed
	// over (readiness: the queue answers, or every worker is busy
	// reading).
	Alive func()
	// DepthInterval is how often the depths of the queue and its
	// dead-letter queue are read for the metrics (0: a minute).
	DepthInterval time.Duration
}

// Source reads the notifications of new CloudTrail log files from an SQS
// queue, which any number of instances may share: SQS hands each message
// to one of them at a time.
type Source struct {
	sqs     SQS
	s3      s3files.Client
	cfg     Config
	opts    Options
	log     *slog.Logger
	metrics *metrics

	queueURL, dlqURL string
	maxReceives      int
}

// New returns a source reading the queue of cfg through q and the objects
// through s3c. cfg must have passed Validate.
func New(q SQS, s3c s3files.Client, cfg Config, opts Options) (*Source, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("s3sqs source: %w", err)
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
	if opts.DepthInterval <= 0 {
		opts.DepthInterval = time.Minute
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	ref, _ := parseQueue(cfg.Queue)
	return &Source{
		sqs: q, s3: s3files.FollowRegion(s3c), cfg: cfg, opts: opts, metrics: m,
		log: opts.Logger.With("queue", ref.name()),
	}, nil
}

// NewClients returns SQS and S3 clients from the SDK's default
// configuration chain, SQS in cfg.Region when it is set
// (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SQS and AWS_ENDPOINT_URL_S3 are
// honoured), with the SDK's log lines sent to logger (nil:
// slog.Default(); see internal/awsconf).
func NewClients(ctx context.Context, cfg Config, logger *slog.Logger) (*sqs.Client, *s3.Client, error) {
	awsCfg, err := awsconf.Load(ctx, cfg.Region, logger)
	if err != nil {
		return nil, nil, fmt.Errorf("sqs client: %w", err)
	}
	s3c, err := s3bundle.NewClient(ctx, s3bundle.ClientOptions{Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	return sqs.NewFromConfig(awsCfg), s3c, nil
}

// Check finds the queue and its dead-letter queue with the configured
// credentials. A queue without a redrive policy is an error: an object
// that cannot be read would be received again forever.
func (s *Source) Check(ctx context.Context) error {
	if s.queueURL != "" {
		return nil
	}
	ref, err := parseQueue(s.cfg.Queue)
	if err != nil {
		return err
	}
	url := ref.URL
	if url == "" {
		if url, err = s.getQueueURL(ctx, ref.Name, ref.Account); err != nil {
			return fmt.Errorf("check sqs queue %s: %w", s.cfg.Queue, err)
		}
	}
	out, err := s.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameRedrivePolicy},
	})
	if err != nil {
		return fmt.Errorf("check sqs queue %s: %w", s.cfg.Queue, err)
	}
	policy := out.Attributes[string(sqstypes.QueueAttributeNameRedrivePolicy)]
	if policy == "" {
		return fmt.Errorf("sqs queue %s has no redrive policy: give it a dead-letter queue, where trailwatch moves the notifications of objects it cannot read (see examples/deploy/s3sqs)", s.cfg.Queue)
	}
	var rp struct {
		Target string          `json:"deadLetterTargetArn"`
		Max    json.RawMessage `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(policy), &rp); err != nil {
		return fmt.Errorf("sqs queue %s: redrive policy %q: %w", s.cfg.Queue, policy, err)
	}
	dlq, err := parseQueue(rp.Target)
	if err != nil || dlq.Name == "" {
		return fmt.Errorf("sqs queue %s: redrive policy names no dead-letter queue ARN: %q", s.cfg.Queue, policy)
	}
	s.maxReceives, _ = strconv.Atoi(strings.Trim(string(rp.Max), `"`))
	if s.dlqURL, err = s.getQueueURL(ctx, dlq.Name, dlq.Account); err != nil {
		return fmt.Errorf("check dead-letter queue %s: %w", rp.Target, err)
	}
	s.queueURL = url
	return nil
}

func (s *Source) getQueueURL(ctx context.Context, name, account string) (string, error) {
	in := &sqs.GetQueueUrlInput{QueueName: aws.String(name)}
	if account != "" {
		in.QueueOwnerAWSAccountId = aws.String(account)
	}
	out, err := s.sqs.GetQueueUrl(ctx, in)
	if err != nil {
		return "", err
	}
	return aws.ToString(out.QueueUrl), nil
}

// Run receives the queue's messages and, for each CloudTrail log file
// they announce, calls handle with its records, in batches of at most
// batch_records whose Origin is the object (s3://bucket/key) and whose
// records say their place in it; up to Workers objects are read at once,
// and each object's batches are handled in order. A message is deleted
// only after handle returned nil for every batch of every object it
// names. Run returns nil when ctx ends, after making the
// messages it had not finished visible again; it returns an error when
// handle fails (the message is then read again, by this instance or
// another, once its visibility timeout runs out).
func (s *Source) Run(ctx context.Context, handle source.Handler) error {
	if err := s.Check(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.pollDepths(runCtx) })

	free := make(chan struct{}, s.cfg.Workers)
	for range s.cfg.Workers {
		free <- struct{}{}
	}
	errc := make(chan error, 1)
	backoff := time.Second
	s.log.Info("s3sqs source started", "dead_letter_queue", s.dlqURL, "workers", s.cfg.Workers)
	for {
		// One worker free at least, and as many as are (SQS gives up to
		// ten messages a call): a message waits for no one.
		select {
		case <-free:
		case err := <-errc:
			return err
		case <-runCtx.Done():
			return firstError(errc)
		}
		n := 1
	take:
		for n < min(10, s.cfg.Workers) {
			select {
			case <-free:
				n++
			default:
				break take
			}
		}
		msgs, err := s.receive(runCtx, n)
		for range n - len(msgs) {
			free <- struct{}{}
		}
		if err != nil {
			if runCtx.Err() != nil {
				return firstError(errc)
			}
			s.log.Warn("sqs receive failed; retrying", "err", err)
			select {
			case <-s.opts.After(backoff):
			case <-runCtx.Done():
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		for _, m := range msgs {
			wg.Go(func() {
				defer func() { free <- struct{}{} }()
				if err := s.process(runCtx, m, handle); err != nil {
					select {
					case errc <- err:
					default:
					}
					cancel()
				}
			})
		}
	}
}

func firstError(errc chan error) error {
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// receive takes up to n messages, hidden for the visibility timeout.
func (s *Source) receive(ctx context.Context, n int) ([]sqstypes.Message, error) {
	out, err := s.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:            aws.String(s.queueURL),
		MaxNumberOfMessages: int32(n),
		VisibilityTimeout:   int32(s.cfg.VisibilityTimeout / time.Second),
		WaitTimeSeconds:     int32(s.cfg.WaitTime / time.Second),
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{
			sqstypes.MessageSystemAttributeNameSentTimestamp, sqstypes.MessageSystemAttributeNameApproximateReceiveCount,
		},
	})
	if err != nil {
		return nil, err
	}
	s.alive()
	now := s.opts.Now()
	oldest := 0.0
	for _, m := range out.Messages {
		if ms, err := strconv.ParseInt(m.Attributes[string(sqstypes.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
			oldest = max(oldest, now.Sub(time.UnixMilli(ms)).Seconds())
		}
	}
	s.metrics.messageAge.Set(oldest)
	return out.Messages, nil
}

// alive tells Options.Alive that the source works.
func (s *Source) alive() {
	if s.opts.Alive != nil {
		s.opts.Alive()
	}
}

// outcome is what became of a message.
type outcome string

// The outcomes of a message, the label of trailwatch_s3sqs_messages_total.
const (
	outcomeDone     outcome = "done"          // read and deleted
	outcomeTest     outcome = "test"          // s3:TestEvent, deleted
	outcomeIgnored  outcome = "ignored"       // names no CloudTrail log file, deleted
	outcomeDead     outcome = "dead_lettered" // moved to the dead-letter queue
	outcomeRetry    outcome = "retried"       // left for a later attempt
	outcomeReleased outcome = "released"      // made visible again at shutdown
)

var outcomes = []outcome{outcomeDone, outcomeTest, outcomeIgnored, outcomeDead, outcomeRetry, outcomeReleased}

// errHandle marks the pipeline's failure to take a batch.
type errHandle struct{ err error }

func (e errHandle) Error() string { return e.err.Error() }
func (e errHandle) Unwrap() error { return e.err }

// process reads the objects one message names and settles the message.
// It returns an error only when handle failed.
func (s *Source) process(ctx context.Context, m sqstypes.Message, handle source.Handler) error {
	log := s.log.With("message_id", aws.ToString(m.MessageId))
	n, err := ParseMessage(aws.ToString(m.Body))
	if err != nil {
		s.deadLetter(ctx, m, log, fmt.Sprintf("not an S3 event notification: %v", err))
		return nil
	}
	if n.Test {
		log.Debug("s3 test event")
		s.settle(ctx, m, log, outcomeTest)
		return nil
	}
	var objs []Object
	for _, o := range n.Objects {
		if kind := awslogs.Classify(o.Key); kind != awslogs.Log {
			// The documented filter: digests, Insights and other keys
			// carry no records to evaluate.
			s.metrics.objects.WithLabelValues("skipped_" + kind.String()).Inc()
			log.Debug("object skipped: not a CloudTrail log file", "object", o.URI(), "kind", kind.String())
			continue
		}
		objs = append(objs, o)
	}
	if len(objs) == 0 {
		s.settle(ctx, m, log, outcomeIgnored)
		return nil
	}

	stop := s.hold(ctx, m, log)
	defer stop()
	var problems []string
	for _, o := range objs {
		problem, err := s.read(ctx, o, handle)
		if ctx.Err() != nil {
			// Stopping: another instance, or this one when it starts
			// again, reads the whole message.
			s.release(m, log)
			return nil
		}
		var he errHandle
		switch {
		case errors.As(err, &he):
			return fmt.Errorf("handle records of %s: %w", o.URI(), he.err)
		case err != nil:
			s.metrics.objects.WithLabelValues("failed").Inc()
			s.retry(ctx, m, log, o, err)
			return nil
		case problem != "":
			s.metrics.objects.WithLabelValues("unreadable").Inc()
			problems = append(problems, o.URI()+": "+problem)
		default:
			s.metrics.objects.WithLabelValues("read").Inc()
		}
	}
	if len(problems) > 0 {
		s.deadLetter(ctx, m, log, strings.Join(problems, "; "))
		return nil
	}
	s.settle(ctx, m, log, outcomeDone)
	return nil
}

// read streams one object through engine/files' reader and hands its
// records to handle in batches. problem says what in the object could not
// be read (its records before were handled); err is a failure to get the
// object that a later attempt may not meet, or an errHandle.
func (s *Source) read(ctx context.Context, o Object, handle source.Handler) (problem string, err error) {
	body, err := s3files.Open(ctx, s.s3, s3files.Object{Bucket: o.Bucket, Key: o.Key})
	if err != nil {
		if isGone(err) {
			return err.Error(), nil
		}
		return "", err
	}
	defer body.Close()
	obj := body.Object()
	uri := o.URI()
	b := source.Batch{Origin: uri}
	flush := func() error {
		if len(b.Records) == 0 {
			return nil
		}
		if err := handle(ctx, b); err != nil {
			return errHandle{err}
		}
		s.alive()
		s.metrics.records.Add(float64(len(b.Records)))
		b.Records = nil
		return nil
	}
	var bad []string
	err = files.ReadStream(ctx, uri, body, func(r files.Record) error {
		b.Records = append(b.Records, source.Record{
			Data: bytes.Clone(r.Data), Place: source.Place{Object: uri, Line: r.Line, Index: r.Index},
		})
		if len(b.Records) >= s.cfg.BatchRecords {
			return flush()
		}
		return nil
	}, func(p *files.BadInput) {
		// The place within the object: ":12" (a line) or ": record 3".
		at := strings.TrimPrefix(strings.TrimPrefix(p.Place, uri), ": ")
		if n, ok := strings.CutPrefix(at, ":"); ok {
			at = "line " + n
		}
		if at != "" {
			at += ": "
		}
		bad = append(bad, at+p.Err.Error())
	})
	if err != nil {
		return "", err
	}
	if terr := body.Err(); terr != nil {
		// The transfer failed, not the content: the records read so far
		// were handled, the message is read again later.
		return "", terr
	}
	if err := flush(); err != nil {
		return "", err
	}
	s.metrics.bytes.Add(float64(body.Offset()))
	s.metrics.lag.Set(s.opts.Now().Sub(obj.LastModified).Seconds())
	return strings.Join(bad, "; "), nil
}

// isGone reports whether a GET failed because the object is not there
// (deleted, or never written): reading it again cannot help.
func isGone(err error) bool {
	return errors.Is(err, s3files.ErrNoSuchObject) || errors.Is(err, s3files.ErrNoSuchBucket)
}

// hold keeps m hidden from the other instances while its objects are
// read: every third of the visibility timeout it extends the timeout by
// as much. stop ends it.
func (s *Source) hold(ctx context.Context, m sqstypes.Message, log *slog.Logger) (stop func()) {
	hctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-hctx.Done():
				return
			case <-s.opts.After(s.cfg.VisibilityTimeout / 3):
			}
			_, err := s.sqs.ChangeMessageVisibility(hctx, &sqs.ChangeMessageVisibilityInput{
				QueueUrl: aws.String(s.queueURL), ReceiptHandle: m.ReceiptHandle,
				VisibilityTimeout: int32(s.cfg.VisibilityTimeout / time.Second),
			})
			switch {
			case err == nil:
				s.metrics.extensions.Inc()
				s.alive()
			case hctx.Err() == nil:
				// Another instance may get the message meanwhile; the
				// shared state keeps a second read from alerting twice.
				log.Warn("could not extend the message's visibility timeout", "err", err)
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// settleContext is for the calls that settle a message whose work is
// done: they must happen even when the run is stopping.
func settleContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
}

// settle deletes m, its work done.
func (s *Source) settle(ctx context.Context, m sqstypes.Message, log *slog.Logger, o outcome) {
	dctx, cancel := settleContext(ctx)
	defer cancel()
	if _, err := s.sqs.DeleteMessage(dctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(s.queueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
		// Its objects are read again when it comes back; the alerts
		// they raise are already in the outbox (and the shared ledger).
		log.Warn("could not delete a handled message; it will be read again", "err", err)
	}
	s.metrics.messages.WithLabelValues(string(o)).Inc()
}

// deadLetter moves m to the dead-letter queue, with why in its
// trailwatch-error attribute, and reports it.
func (s *Source) deadLetter(ctx context.Context, m sqstypes.Message, log *slog.Logger, why string) {
	dctx, cancel := settleContext(ctx)
	defer cancel()
	if len(why) > 4096 {
		why = why[:4096] + "…"
	}
	_, err := s.sqs.SendMessage(dctx, &sqs.SendMessageInput{
		QueueUrl: aws.String(s.dlqURL), MessageBody: m.Body,
		MessageAttributes: map[string]sqstypes.MessageAttributeValue{
			"trailwatch-error":   {DataType: aws.String("String"), StringValue: aws.String(why)},
			"trailwatch-message": {DataType: aws.String("String"), StringValue: m.MessageId},
		},
	})
	if err != nil {
		// Left in the queue: the redrive policy moves it after
		// maxReceiveCount receives.
		log.Error("could not move a message to the dead-letter queue; it stays in the queue", "problem", why, "err", err)
		s.metrics.messages.WithLabelValues(string(outcomeRetry)).Inc()
		return
	}
	log.Error("notification moved to the dead-letter queue: its objects cannot be read (the records before a problem were evaluated)", "problem", why)
	s.settle(ctx, m, log, outcomeDead)
}

// retry leaves m for a later attempt, sooner than its visibility
// timeout: a few seconds more for each time it was received.
func (s *Source) retry(ctx context.Context, m sqstypes.Message, log *slog.Logger, o Object, err error) {
	count, _ := strconv.Atoi(m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)])
	delay := min(time.Duration(max(count, 1))*5*time.Second, s.cfg.VisibilityTimeout)
	log.Warn("could not read an object; its message is read again later", "object", o.URI(), "err", err,
		"receive_count", count, "max_receive_count", s.maxReceives, "retry_in", delay.String())
	s.setVisibility(ctx, m, log, delay)
	s.metrics.messages.WithLabelValues(string(outcomeRetry)).Inc()
}

// release makes m visible again at once: the run is stopping.
func (s *Source) release(m sqstypes.Message, log *slog.Logger) {
	s.setVisibility(context.Background(), m, log, 0)
	s.metrics.messages.WithLabelValues(string(outcomeReleased)).Inc()
}

func (s *Source) setVisibility(ctx context.Context, m sqstypes.Message, log *slog.Logger, d time.Duration) {
	vctx, cancel := settleContext(ctx)
	defer cancel()
	if _, err := s.sqs.ChangeMessageVisibility(vctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(s.queueURL), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: int32(d / time.Second),
	}); err != nil {
		log.Debug("could not change the message's visibility timeout; it comes back when the timeout runs out", "err", err)
	}
}

// pollDepths reads the depths of the queue and the dead-letter queue for
// the metrics until ctx ends.
func (s *Source) pollDepths(ctx context.Context) {
	for {
		for _, q := range []struct{ url, name string }{{s.queueURL, "queue"}, {s.dlqURL, "dead_letter"}} {
			out, err := s.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
				QueueUrl: aws.String(q.url), AttributeNames: []sqstypes.QueueAttributeName{
					sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
				},
			})
			if err != nil {
				if ctx.Err() == nil {
					s.log.Debug("could not read the queue depth", "queue", q.name, "err", err)
				}
				continue
			}
			for state, attr := range map[string]sqstypes.QueueAttributeName{
				"visible": sqstypes.QueueAttributeNameApproximateNumberOfMessages, "in_flight": sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			} {
				if v, err := strconv.Atoi(out.Attributes[string(attr)]); err == nil {
					s.metrics.depth.WithLabelValues(q.name, state).Set(float64(v))
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.opts.After(s.opts.DepthInterval):
		}
	}
}
