package dynamostate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/trailwatch/trailwatch/engine/lifecycle"
)

// LifecycleAPI is the part of the DynamoDB client LifecycleStore uses.
type LifecycleAPI interface {
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
}

// Key prefixes of the lifecycle's items in the table it shares with the
// delivery records (whose keys start with a notifier name).
const (
	entryPrefix    = "lifecycle#entry#"
	decisionPrefix = "lifecycle#decision#"
	silencesKey    = "lifecycle#silences"

	attrData    = "data"
	attrVersion = "version"
	attrKind    = "kind"
)

// LifecycleStore keeps the alert lifecycle's shared state (dedup windows,
// threshold groups, the decision taken for each alert, and the silences)
// in the delivery table: it implements lifecycle.Shared and
// lifecycle.SilenceStore. The silences are one item, without TTL. Every item carries the
// TTL attribute: decisions are kept for Options.TTL, entries for their
// window plus Options.TTL after their last change. Reads are strongly
// consistent; a decision and the entries it changed are written in one
// transaction, on condition that the entries still have the versions read
// and that no decision for the alert exists yet.
type LifecycleStore struct {
	api   LifecycleAPI
	table string
	ttl   time.Duration
	now   func() time.Time
	retry *retrier
}

var (
	_ lifecycle.Shared       = (*LifecycleStore)(nil)
	_ lifecycle.SilenceStore = (*LifecycleStore)(nil)
)

// NewLifecycleStore returns a LifecycleStore on table. Options.Lease is
// not used. A call that fails for a reason that passes is tried again in
// place (see Store).
func NewLifecycleStore(api LifecycleAPI, table string, opts Options) (*LifecycleStore, error) {
	if table == "" {
		return nil, errors.New("open lifecycle store: table name is empty")
	}
	if opts.TTL < 0 {
		return nil, errors.New("open lifecycle store: ttl must not be negative")
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r, err := newRetrier(table, opts)
	if err != nil {
		return nil, fmt.Errorf("open lifecycle store: %w", err)
	}
	return &LifecycleStore{api: api, table: table, ttl: opts.TTL, now: opts.Now, retry: r}, nil
}

// Client is the part of the DynamoDB client Open uses; *dynamodb.Client
// has it.
type Client interface {
	API
	TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
}

// Open returns the delivery ledger and the lifecycle store on table
// through client, sharing one retry policy (its log lines and metric).
// It does not call DynamoDB: a process that must not start without the
// table calls LifecycleStore.Check.
func Open(client Client, table string, opts Options) (*Store, *LifecycleStore, error) {
	store, err := New(client, table, opts)
	if err != nil {
		return nil, nil, err
	}
	shared, err := NewLifecycleStore(client, table, opts)
	if err != nil {
		return nil, nil, err
	}
	shared.retry = store.retry
	return store, shared, nil
}

// hashed keeps item keys short and free of whatever a dedup key
// expression produced (event fields, attacker-controlled).
func hashed(prefix, key string) string {
	sum := sha256.Sum256([]byte(key))
	return prefix + hex.EncodeToString(sum[:])
}

func (ls *LifecycleStore) get(ctx context.Context, pk string) (map[string]types.AttributeValue, error) {
	return getItem(ctx, ls.retry, ls.api, ls.table, pk)
}

// Check verifies that the table exists and can be read with the
// configured credentials: one strongly consistent read of the silences
// item, tried once (a start-up check fails fast rather than waiting for a
// table that is not there).
func (ls *LifecycleStore) Check(ctx context.Context) error {
	_, err := ls.api.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(ls.table),
		Key:            map[string]types.AttributeValue{AttrKey: s(silencesKey)},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return fmt.Errorf("check shared state table %q: %w", ls.table, err)
	}
	return nil
}

// Decision implements lifecycle.Shared.
func (ls *LifecycleStore) Decision(ctx context.Context, idem string) ([]byte, bool, error) {
	item, err := ls.get(ctx, hashed(decisionPrefix, idem))
	if err != nil {
		return nil, false, fmt.Errorf("get alert decision from %s: %w", ls.table, err)
	}
	if item == nil {
		return nil, false, nil
	}
	return []byte(str(item[attrData])), true, nil
}

// Entry implements lifecycle.Shared.
func (ls *LifecycleStore) Entry(ctx context.Context, key string) ([]byte, int64, error) {
	item, err := ls.get(ctx, hashed(entryPrefix, key))
	if err != nil {
		return nil, 0, fmt.Errorf("get lifecycle entry from %s: %w", ls.table, err)
	}
	if item == nil {
		return nil, 0, nil
	}
	return []byte(str(item[attrData])), num(item[attrVersion]), nil
}

// Apply implements lifecycle.Shared.
func (ls *LifecycleStore) Apply(ctx context.Context, idem string, decision []byte, writes []lifecycle.SharedWrite) error {
	now := ls.now()
	updated := s(now.UTC().Format(time.RFC3339Nano))
	items := []types.TransactWriteItem{{Put: &types.Put{
		TableName: aws.String(ls.table),
		Item: map[string]types.AttributeValue{
			AttrKey: s(hashed(decisionPrefix, idem)), attrKind: s("decision"), attrData: s(string(decision)),
			attrUpdated: updated, AttrTTL: n(now.Add(ls.ttl).Unix()),
		},
		ConditionExpression:      aws.String("attribute_not_exists(#pk)"),
		ExpressionAttributeNames: map[string]string{"#pk": AttrKey},
	}}}
	for _, w := range writes {
		pk := s(hashed(entryPrefix, w.Key))
		cond, names, vals := "attribute_not_exists(#pk)", map[string]string{"#pk": AttrKey}, map[string]types.AttributeValue(nil)
		if w.Version > 0 {
			cond, names, vals = "#ver = :ver", map[string]string{"#ver": attrVersion}, map[string]types.AttributeValue{":ver": n(w.Version)}
		}
		if w.Data == nil {
			items = append(items, types.TransactWriteItem{Delete: &types.Delete{
				TableName: aws.String(ls.table), Key: map[string]types.AttributeValue{AttrKey: pk},
				ConditionExpression: aws.String(cond), ExpressionAttributeNames: names, ExpressionAttributeValues: vals,
			}})
			continue
		}
		keep := max(w.Keep, 0)
		items = append(items, types.TransactWriteItem{Put: &types.Put{
			TableName: aws.String(ls.table),
			Item: map[string]types.AttributeValue{
				AttrKey: pk, attrKind: s("entry"), attrData: s(string(w.Data)), attrVersion: n(w.Version + 1),
				attrUpdated: updated, AttrTTL: n(now.Add(keep + ls.ttl).Unix()),
			},
			ConditionExpression: aws.String(cond), ExpressionAttributeNames: names, ExpressionAttributeValues: vals,
		}})
	}
	// The same input on every try: the SDK gives it one ClientRequestToken,
	// so DynamoDB applies a transaction whose answer was lost only once
	// (and a store that ignores the token finds the decision recorded: a
	// conflict, after which the lifecycle reads it back).
	in := &dynamodb.TransactWriteItemsInput{TransactItems: items}
	err := ls.retry.do(ctx, opApply, func() error {
		_, err := ls.api.TransactWriteItems(ctx, in)
		return err
	})
	if err == nil {
		return nil
	}
	var tce *types.TransactionCanceledException
	if errors.As(err, &tce) && conflictOnly(tce.CancellationReasons) {
		return fmt.Errorf("apply alert decision: %w", lifecycle.ErrConflict)
	}
	var tcf *types.TransactionConflictException
	if errors.As(err, &tcf) {
		return fmt.Errorf("apply alert decision: %w", lifecycle.ErrConflict)
	}
	return fmt.Errorf("apply alert decision to %s: %w", ls.table, err)
}

// conflictOnly reports whether a transaction was cancelled because a
// condition failed or another transaction held an item (whether or not
// other items were throttled): the caller reads again and decides again.
// Any other reason (validation, a size limit) is a failure of its own; a
// transaction cancelled only by throttling is tried again as it is (see
// transient).
func conflictOnly(reasons []types.CancellationReason) bool {
	seen := false
	for _, r := range reasons {
		switch code := aws.ToString(r.Code); {
		case code == "" || strings.EqualFold(code, "None") || throttleReason(code):
		case code == "ConditionalCheckFailed" || code == "TransactionConflict":
			seen = true
		default:
			return false
		}
	}
	return seen
}

// SilenceList implements lifecycle.SilenceStore.
func (ls *LifecycleStore) SilenceList(ctx context.Context) ([]byte, int64, error) {
	item, err := ls.get(ctx, silencesKey)
	if err != nil {
		return nil, 0, fmt.Errorf("get silences from %s: %w", ls.table, err)
	}
	if item == nil {
		return nil, 0, nil
	}
	return []byte(str(item[attrData])), num(item[attrVersion]), nil
}

// PutSilenceList implements lifecycle.SilenceStore.
func (ls *LifecycleStore) PutSilenceList(ctx context.Context, data []byte, version int64) error {
	in := &dynamodb.PutItemInput{
		TableName: aws.String(ls.table),
		Item: map[string]types.AttributeValue{
			AttrKey: s(silencesKey), attrKind: s("silences"), attrData: s(string(data)),
			attrVersion: n(version + 1), attrUpdated: s(ls.now().UTC().Format(time.RFC3339Nano)),
		},
		ConditionExpression:                 aws.String("attribute_not_exists(#pk)"),
		ExpressionAttributeNames:            map[string]string{"#pk": AttrKey},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
	if version > 0 {
		in.ConditionExpression = aws.String("#ver = :ver")
		in.ExpressionAttributeNames = map[string]string{"#ver": attrVersion}
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":ver": n(version)}
	}
	err := ls.retry.do(ctx, opPutSilences, func() error {
		_, err := ls.api.PutItem(ctx, in)
		return err
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		if it := ccf.Item; it != nil && num(it[attrVersion]) == version+1 && str(it[attrData]) == string(data) {
			return nil // an earlier try wrote it; its answer was lost
		}
		return fmt.Errorf("put silences: %w", lifecycle.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("put silences to %s: %w", ls.table, err)
	}
	return nil
}
