// Package dynamostate keeps trailwatch's delivery records in a DynamoDB
// table, so that several processes working on the same alerts (Lambda
// invocations, retried batches, more than one `run`) never send one alert
// to one notifier twice once it is known to be delivered.
//
// One item per (alert key, notifier) goes through three steps:
//
//  1. Claim: a conditional PutItem (attribute_not_exists) writes the item
//     as "claimed" with an owner token and a lease. It fails when the item
//     is already delivered, or claimed by someone else whose lease has
//     not yet run out.
//  2. Send: the claimant notifies, inside the lease.
//  3. Delivered: a conditional UpdateItem (only the owner) marks it
//     delivered. On a failed send, Release deletes the claim instead so a
//     retry can take it at once.
//
// A call that fails for a reason that passes (throttling, a 5xx answer, a
// dropped connection) is tried again in place, after a bounded, jittered
// wait, until it succeeds or its context ends (retry.go); a failure that
// cannot pass (a missing table, a refused permission) is returned at once.
//
// A claim whose holder died mid-send (a Lambda timeout, a crash) may be
// retaken once its lease has run out. The alert may then reach the
// notifier twice (the first send may have gone through before the crash):
// delivery is at least once, and duplicates are confined to that window.
// Every item carries a TTL attribute (Unix seconds) so the table cleans
// itself; an item past its TTL that DynamoDB has not yet removed counts
// as absent.
//
// LifecycleStore (lifecycle.go) keeps, in the same table, what the alert
// lifecycle shares between processes: dedup windows, threshold groups, the
// decision taken for each alert, and the silences. Storm control stays in
// each process's memory (engine/lifecycle).
package dynamostate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailwatch/trailwatch/internal/awsconf"
)

// Attribute names of a delivery item.
const (
	// AttrKey is the table's partition key (a string): the delivery id,
	// "<notifier>#<alert key>".
	AttrKey = "pk"
	// AttrTTL is the TTL attribute (a number, Unix seconds) that the
	// table's Time to Live setting must name.
	AttrTTL = "expires_at"

	attrState    = "state"
	attrOwner    = "owner"
	attrLease    = "lease_until" // Unix milliseconds
	attrNotifier = "notifier"
	attrAlertKey = "alert_key"
	attrRule     = "rule_id"
	attrUpdated  = "updated_at"

	stateClaimed   = "claimed"
	stateDelivered = "delivered"
)

// Defaults for the zero values of Options.
const (
	DefaultLease = 60 * time.Second
	DefaultTTL   = 7 * 24 * time.Hour
)

// LeaseMargin is how much longer than the longest send a claim's lease
// must be: after the send, the sender still marks the delivery done, and
// the processes compare the lease with their own clocks. A shorter lease
// may run out while a slow notifier is still sending, and another process
// then retakes the claim and sends the alert again.
const LeaseMargin = 10 * time.Second

// MinLease is the shortest lease that covers a send bounded by
// sendTimeout (sendTimeout plus LeaseMargin). Every process that claims
// deliveries refuses a shorter one at start.
func MinLease(sendTimeout time.Duration) time.Duration { return sendTimeout + LeaseMargin }

// API is the part of the DynamoDB client the store uses.
type API interface {
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

// Options adjust a Store.
type Options struct {
	// Lease is how long a claim holds before another process may retake
	// it (default 60s). A sender must finish within it: Claim.Until says
	// when it ends.
	Lease time.Duration
	// TTL is how long a record is kept (default 7 days). It must outlast
	// every redelivery of the same batch: Lambda's asynchronous retries
	// (at most 6 hours of event age) and CloudTrail's late duplicates.
	TTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// Logger receives the start and end of a time the table does not
	// answer; nil discards.
	Logger *slog.Logger
	// Registerer, if set, receives trailwatch_shared_state_retries_total.
	Registerer prometheus.Registerer
	// After waits, like time.After (the default), between two tries of a
	// call that failed for a reason that passes.
	After func(time.Duration) <-chan time.Time
	// Rand returns a uniform number in [0, 1) to spread those waits;
	// nil means math/rand/v2.Float64.
	Rand func() float64
}

// Store is the delivery ledger in one DynamoDB table. It is safe for
// concurrent use.
type Store struct {
	api   API
	table string
	opts  Options
	retry *retrier
}

// New returns a Store on table through api.
func New(api API, table string, opts Options) (*Store, error) {
	if table == "" {
		return nil, errors.New("open delivery store: table name is empty")
	}
	if opts.Lease < 0 || opts.TTL < 0 {
		return nil, errors.New("open delivery store: lease and ttl must not be negative")
	}
	if opts.Lease == 0 {
		opts.Lease = DefaultLease
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.TTL < opts.Lease {
		return nil, errors.New("open delivery store: ttl must not be shorter than the lease")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r, err := newRetrier(table, opts)
	if err != nil {
		return nil, fmt.Errorf("open delivery store: %w", err)
	}
	return &Store{api: api, table: table, opts: opts, retry: r}, nil
}

// NewClient returns a DynamoDB client from the SDK's default configuration
// chain (AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_DYNAMODB are honoured), in
// region when it is set, with the SDK's log lines sent to logger (nil:
// slog.Default(); see internal/awsconf).
func NewClient(ctx context.Context, region string, logger *slog.Logger) (*dynamodb.Client, error) {
	cfg, err := awsconf.Load(ctx, region, logger)
	if err != nil {
		return nil, fmt.Errorf("dynamodb client: %w", err)
	}
	return dynamodb.NewFromConfig(cfg), nil
}

// Status is the outcome of a Claim.
type Status int

const (
	// Claimed means the caller holds the claim and must send, then call
	// Delivered or Release.
	Claimed Status = iota
	// AlreadyDelivered means the alert already reached the notifier: do
	// not send it again.
	AlreadyDelivered
	// Busy means another process holds an unexpired claim (it is sending
	// now, or died and its lease has not yet run out): the caller cannot
	// know whether the alert will be delivered and should retry later.
	Busy
)

// String returns the status's name.
func (s Status) String() string {
	switch s {
	case Claimed:
		return "claimed"
	case AlreadyDelivered:
		return "delivered"
	case Busy:
		return "busy"
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// Claim is the result of claiming one (alert key, notifier) delivery.
type Claim struct {
	// Key and Notifier name the delivery.
	Key, Notifier string
	// Status says what the caller may do.
	Status Status
	// Until is when the lease ends: the caller's own when Claimed, the
	// other holder's when Busy.
	Until time.Time

	token string
}

// ErrLeaseLost is returned by Delivered when the claim was retaken by
// another process after the lease ran out: the alert was sent, and may be
// sent again by the new holder (at least once).
var ErrLeaseLost = errors.New("delivery lease lost to another process")

func deliveryID(key, notifier string) string { return notifier + "#" + key }

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func n(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}

// Claim tries to take the delivery of the alert key to notifier. ruleID is
// kept on the record for people reading the table.
func (st *Store) Claim(ctx context.Context, key, notifier, ruleID string) (Claim, error) {
	c := Claim{Key: key, Notifier: notifier}
	id := deliveryID(key, notifier)
	// One token for every try: a put that DynamoDB applied but whose
	// answer was lost is found again as this caller's own claim.
	tok, err := newToken()
	if err != nil {
		return c, fmt.Errorf("claim delivery: %w", err)
	}
	// A second attempt covers a claim released between our failed put and
	// our read.
	for attempt := 0; attempt < 3; attempt++ {
		var until time.Time
		err := st.retry.do(ctx, opClaim, func() error {
			// The lease counts from this try, not from the first.
			now := st.opts.Now()
			until = now.Add(st.opts.Lease)
			_, err := st.api.PutItem(ctx, &dynamodb.PutItemInput{
				TableName: aws.String(st.table),
				Item: map[string]types.AttributeValue{
					AttrKey:      s(id),
					attrState:    s(stateClaimed),
					attrOwner:    s(tok),
					attrLease:    n(until.UnixMilli()),
					attrNotifier: s(notifier),
					attrAlertKey: s(key),
					attrRule:     s(ruleID),
					attrUpdated:  s(now.UTC().Format(time.RFC3339Nano)),
					AttrTTL:      n(now.Add(st.opts.TTL).Unix()),
				},
				// Absent, past its TTL (not yet swept), or a claim whose
				// lease ran out: ours to take.
				ConditionExpression: aws.String("attribute_not_exists(#pk) OR #ttl < :nowsec OR (#state = :claimed AND #lease < :nowms)"),
				ExpressionAttributeNames: map[string]string{
					"#pk": AttrKey, "#ttl": AttrTTL, "#state": attrState, "#lease": attrLease,
				},
				ExpressionAttributeValues: map[string]types.AttributeValue{
					":nowsec":  n(now.Unix()),
					":nowms":   n(now.UnixMilli()),
					":claimed": s(stateClaimed),
				},
				ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
			})
			return err
		})
		if err == nil {
			c.Status, c.Until, c.token = Claimed, until, tok
			return c, nil
		}
		var ccf *types.ConditionalCheckFailedException
		if !errors.As(err, &ccf) {
			return c, fmt.Errorf("claim delivery to %q: put item: %w", notifier, err)
		}
		item := ccf.Item
		if item == nil {
			if item, err = st.get(ctx, id); err != nil {
				return c, fmt.Errorf("claim delivery to %q: get item: %w", notifier, err)
			}
		}
		if item == nil {
			continue
		}
		switch str(item[attrState]) {
		case stateDelivered:
			c.Status = AlreadyDelivered
			return c, nil
		case stateClaimed:
			if str(item[attrOwner]) == tok {
				// Our own put, applied by an earlier try.
				c.Status, c.Until, c.token = Claimed, time.UnixMilli(num(item[attrLease])), tok
				return c, nil
			}
			c.Status = Busy
			c.Until = time.UnixMilli(num(item[attrLease]))
			return c, nil
		default:
			return c, fmt.Errorf("claim delivery to %q: record has unknown state %q", notifier, str(item[attrState]))
		}
	}
	return c, fmt.Errorf("claim delivery to %q: record kept changing under us", notifier)
}

// getter is the read both stores make.
type getter interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
}

// getItem reads the item pk of table with a strongly consistent read,
// tried again while it fails for a reason that passes; nil when there is
// none.
func getItem(ctx context.Context, r *retrier, api getter, table, pk string) (map[string]types.AttributeValue, error) {
	var out *dynamodb.GetItemOutput
	err := r.do(ctx, opRead, func() error {
		var err error
		out, err = api.GetItem(ctx, &dynamodb.GetItemInput{
			TableName:      aws.String(table),
			Key:            map[string]types.AttributeValue{AttrKey: s(pk)},
			ConsistentRead: aws.Bool(true),
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out.Item, nil
}

// get reads a delivery record; nil when there is none.
func (st *Store) get(ctx context.Context, id string) (map[string]types.AttributeValue, error) {
	return getItem(ctx, st.retry, st.api, st.table, id)
}

// Delivered marks a claimed delivery done. It returns ErrLeaseLost when
// the claim is no longer the caller's. A failure that passes is tried
// again for at most the lease (after it, another process may have
// retaken the claim anyway).
func (st *Store) Delivered(ctx context.Context, c Claim) error {
	if c.Status != Claimed || c.token == "" {
		return errors.New("mark delivered: not a held claim")
	}
	ctx, cancel := context.WithTimeout(ctx, st.opts.Lease)
	defer cancel()
	id := deliveryID(c.Key, c.Notifier)
	err := st.retry.do(ctx, opDelivered, func() error {
		now := st.opts.Now()
		_, err := st.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:           aws.String(st.table),
			Key:                 map[string]types.AttributeValue{AttrKey: s(id)},
			UpdateExpression:    aws.String("SET #state = :delivered, #ttl = :ttl, #updated = :updated REMOVE #lease"),
			ConditionExpression: aws.String("#owner = :token AND #state = :claimed"),
			ExpressionAttributeNames: map[string]string{
				"#state": attrState, "#ttl": AttrTTL, "#updated": attrUpdated, "#lease": attrLease, "#owner": attrOwner,
			},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":delivered": s(stateDelivered),
				":claimed":   s(stateClaimed),
				":ttl":       n(now.Add(st.opts.TTL).Unix()),
				":updated":   s(now.UTC().Format(time.RFC3339Nano)),
				":token":     s(c.token),
			},
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		})
		return err
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &ccf):
		item := ccf.Item
		if item == nil {
			item, _ = st.get(ctx, id)
		}
		if str(item[attrOwner]) == c.token && str(item[attrState]) == stateDelivered {
			return nil // an earlier try did it; its answer was lost
		}
		return fmt.Errorf("mark delivered to %q: %w", c.Notifier, ErrLeaseLost)
	case err != nil:
		return fmt.Errorf("mark delivered to %q: update item: %w", c.Notifier, err)
	}
	return nil
}

// Release gives a claim up after a failed send, so that a retry may take
// it without waiting for the lease. Releasing a claim that is no longer
// the caller's does nothing. A failure that passes is tried again for at
// most the lease, after which the claim lapses by itself.
func (st *Store) Release(ctx context.Context, c Claim) error {
	if c.Status != Claimed || c.token == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, st.opts.Lease)
	defer cancel()
	err := st.retry.do(ctx, opRelease, func() error {
		_, err := st.api.DeleteItem(ctx, &dynamodb.DeleteItemInput{
			TableName:           aws.String(st.table),
			Key:                 map[string]types.AttributeValue{AttrKey: s(deliveryID(c.Key, c.Notifier))},
			ConditionExpression: aws.String("#owner = :token AND #state = :claimed"),
			ExpressionAttributeNames: map[string]string{
				"#owner": attrOwner, "#state": attrState,
			},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":token":   s(c.token),
				":claimed": s(stateClaimed),
			},
		})
		return err
	})
	var ccf *types.ConditionalCheckFailedException
	if err != nil && !errors.As(err, &ccf) {
		return fmt.Errorf("release delivery to %q: delete item: %w", c.Notifier, err)
	}
	return nil
}

// CreateTable creates a delivery table (on-demand capacity, partition key
// AttrKey, Time to Live on AttrTTL) and waits until it is active. Tests
// and first-time setups use it; production tables come from the
// CloudFormation template in examples/deploy/lambda.
func CreateTable(ctx context.Context, client *dynamodb.Client, table string) error {
	_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(AttrKey), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(AttrKey), KeyType: types.KeyTypeHash}},
	})
	if err != nil {
		return fmt.Errorf("create table %q: %w", table, err)
	}
	w := dynamodb.NewTableExistsWaiter(client)
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, 2*time.Minute); err != nil {
		return fmt.Errorf("create table %q: wait until active: %w", table, err)
	}
	_, err = client.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(AttrTTL), Enabled: aws.Bool(true)},
	})
	if err != nil {
		return fmt.Errorf("create table %q: enable ttl: %w", table, err)
	}
	return nil
}

func str(v types.AttributeValue) string {
	if sv, ok := v.(*types.AttributeValueMemberS); ok {
		return sv.Value
	}
	return ""
}

func num(v types.AttributeValue) int64 {
	if nv, ok := v.(*types.AttributeValueMemberN); ok {
		x, _ := strconv.ParseInt(nv.Value, 10, 64)
		return x
	}
	return 0
}

func newToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new claim token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
